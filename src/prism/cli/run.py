"""`prism run`: run the project's tasks here."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from prism.cli.main import handle_errors, log_options
from prism.errors import PrismError

__all__ = ["emit_failure", "run", "run_options", "selectors_from"]

F = TypeVar("F", bound=Callable[..., Any])


def run_options(func: F) -> F:
    """Add the flags of `prism run`; agents reuse them for `prism agent run`."""
    options = [
        click.option(
            "--task",
            "-t",
            "tasks",
            multiple=True,
            metavar="TASK",
            help="Run only this task: a module (`extract`), a task (`extract.Load`), "
            "or the modules in a folder (`staging/*`). Repeatable.",
        ),
        click.option(
            "--all-upstream",
            is_flag=True,
            help="Also run every task the selected tasks depend on.",
        ),
        click.option(
            "--all-downstream",
            is_flag=True,
            help="Also run every task that depends on the selected tasks, and "
            "what those depend on.",
        ),
        click.option(
            "--full-refresh",
            is_flag=True,
            help="Run every selected task even when its done() returns True.",
        ),
        click.option(
            "--vars",
            "-v",
            "variables",
            multiple=True,
            metavar="KEY=VALUE",
            help="Set prism_project.KEY to the string VALUE for this run. Repeatable.",
        ),
        click.option(
            "--context",
            metavar="JSON",
            help="A JSON object whose keys are set on prism_project for this run.",
        ),
        click.option(
            "--log-format",
            type=click.Choice(("text", "json")),
            default="text",
            show_default=True,
            help="`json` writes one JSON event per line to stdout (see "
            "docs/events.md).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command()
@run_options
@log_options
@handle_errors
def run(
    tasks: tuple[str, ...],
    all_upstream: bool,
    all_downstream: bool,
    full_refresh: bool,
    variables: tuple[str, ...],
    context: str | None,
    log_format: str,
    log_level: str,
    full_tb: bool,
) -> None:
    """Run the project's tasks in dependency order."""
    from prism.console.session import run_session
    from prism.engine.run import RunRequest
    from prism.project import parse_context, parse_vars

    try:
        overrides = {**parse_context(context), **parse_vars(variables)}
    except PrismError as error:
        if log_format == "json":
            emit_failure(error.exit_code, str(error))
        raise
    request = RunRequest(
        cwd=Path.cwd(),
        selectors=selectors_from(tasks),
        all_upstream=all_upstream,
        all_downstream=all_downstream,
        full_refresh=full_refresh,
        overrides=overrides,
    )
    # An agent's far side sets PRISM_NO_LOG_FILE: the client keeps the log, with
    # secrets masked, so no copy is left on the agent.
    log_path = None if os.environ.get("PRISM_NO_LOG_FILE") else Path.cwd() / "logs.log"
    with _open_log_file(log_path) as log_file:
        exit_code = run_session(
            request,
            log_format=log_format,
            log_level=log_level,
            full_tb=full_tb,
            log_file=log_file,
        )
    sys.exit(exit_code)


@contextlib.contextmanager
def _open_log_file(path: Path | None) -> Iterator[TextIO | None]:
    # The log file is a convenience, so a folder that is not writable must not
    # stop the run.
    if path is None:
        yield None
        return
    try:
        stream = path.open("a", encoding="utf-8")
    except OSError:
        yield None
        return
    with stream:
        yield stream


def selectors_from(values: tuple[str, ...]) -> tuple[str, ...]:
    """Return the non-empty `-t` values, in order, without duplicates."""
    return tuple(dict.fromkeys(value.strip() for value in values if value.strip()))


def emit_failure(exit_code: int, message: str) -> None:
    """Write the `run_finished` event of a run that failed before it started."""
    from prism.engine.events import RunFinished, event_to_json

    event = RunFinished(exit_code=exit_code, duration=0.0, error=message)
    sys.stdout.write(event_to_json(event) + "\n")
    sys.stdout.flush()
