"""The `prism` command: parse flags, call the layer below, map errors to exit codes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

import prism
from prism.errors import PrismError

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

LOG_LEVELS = ("info", "warn", "error", "debug")


def log_options(func: F) -> F:
    """Add `--log-level` and `--full-tb`, which every command takes."""
    func = click.option(
        "--full-tb",
        is_flag=True,
        help="Show the full traceback of errors, including Prism's own frames.",
    )(func)
    func = click.option(
        "--log-level",
        "-l",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default="info",
        show_default=True,
        help="Minimum level of the messages to show.",
    )(func)
    return func


def handle_errors(func: F) -> F:
    """Print a `PrismError` as one line on stderr and exit with its exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        full_tb = bool(kwargs.get("full_tb"))
        try:
            return func(*args, **kwargs)
        except PrismError as error:
            report_error(error, full_tb=full_tb)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # The reader of our output went away (e.g. `prism run | head`): stop
            # quietly, and keep Python from failing again while flushing at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)
        except OSError as error:
            # The file system refused something: a read-only or full disk, a
            # missing permission. That is the reader's to fix, not a bug.
            if full_tb:
                _exit_with_traceback(error)
            where = f": {error.filename}" if error.filename else ""
            click.echo(f"Error: {error.strerror or error}{where}", err=True)
            click.echo(
                "  Check that the folder is writable and has free space.", err=True
            )
            sys.exit(2)
        except Exception as error:
            # Anything else is a bug in Prism; keep the traceback for --full-tb.
            if full_tb:
                _exit_with_traceback(error)
            from prism.console.secrets import mask

            click.echo(
                mask(f"Error: internal error {type(error).__name__}: {error}\n")
                + "  This is a bug in Prism. Run the command again with --full-tb "
                "and report the traceback.",
                err=True,
            )
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _exit_with_traceback(error: BaseException) -> None:
    """Print the traceback of `error`, secrets masked, and exit 1."""
    import traceback

    from prism.console.secrets import mask

    sys.stderr.write(mask("".join(traceback.format_exception(error))))
    sys.stderr.flush()
    sys.exit(1)


def report_error(error: PrismError, *, full_tb: bool) -> None:
    """Write `error` to stderr with its hint, and its traceback with `full_tb`."""
    from prism.console.session import write_error

    write_error(error, full_tb=full_tb)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(prism.__version__, prog_name="prism")
def cli() -> None:
    """Run Python data pipelines locally or inside an agent."""


def _register_commands() -> None:
    from prism.cli import agent, connect, create, init, run, spark_submit
    from prism.cli import compile as compile_command

    cli.add_command(init.init)
    cli.add_command(run.run)
    cli.add_command(compile_command.compile_)
    cli.add_command(create.create)
    cli.add_command(agent.agent)
    cli.add_command(connect.connect)
    cli.add_command(spark_submit.spark_submit)


_register_commands()


def main() -> None:
    """Entry point of the `prism` console script."""
    try:
        cli.main(prog_name="prism", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        # In JSON mode every run ends with run_finished, even one whose flags
        # click rejected before Prism saw them.
        if _wants_json(sys.argv[1:]):
            from prism.cli.run import emit_failure

            emit_failure(error.exit_code, error.format_message())
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)


def _wants_json(arguments: list[str]) -> bool:
    is_run = bool(arguments) and (
        arguments[0] in ("run", "spark-submit")
        or arguments[:2] in (["agent", "run"], ["agent", "build"])
    )
    pairs = zip(arguments, [*arguments[1:], ""], strict=True)
    return is_run and any(
        word == "--log-format=json" or (word == "--log-format" and value == "json")
        for word, value in pairs
    )
