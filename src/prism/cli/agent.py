"""`prism agent`: create, run and remove the environments a project runs in."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from prism.cli.main import handle_errors, log_options, report_error
from prism.cli.run import emit_failure, run_options, selectors_from
from prism.errors import ConfigError, PrismError, UsageError

if TYPE_CHECKING:
    from prism.agents.base import Agent
    from prism.agents.remote import RemoteRun
    from prism.engine.events import EventSink

__all__ = ["agent"]

F = TypeVar("F", bound=Callable[..., Any])


def file_option(func: F) -> F:
    """Add `-f/--file`, the agent file every agent command takes."""
    return click.option(
        "--file",
        "-f",
        "agent_file",
        required=True,
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The agent file (YAML); its name up to the first dot names the agent.",
    )(func)


@click.group()
def agent() -> None:
    """Run the project inside a virtual environment or a Docker container."""


@agent.command()
@file_option
@log_options
@handle_errors
def apply(agent_file: Path, log_level: str, full_tb: bool) -> None:
    """Create or update the agent's environment; do nothing if it is up to date."""
    with _rendering(log_level, "text", full_tb), _loaded(agent_file) as target:
        click.echo(target.apply().summary)


@agent.command(name="run")
@file_option
@run_options
@log_options
@handle_errors
def run_(agent_file: Path, log_level: str, full_tb: bool, **flags: Any) -> None:
    """Ship the project to the agent and run it there, with `prism run`'s flags."""
    sys.exit(_run_on_agent(agent_file, flags, log_level, full_tb, apply_first=False))


@agent.command()
@file_option
@run_options
@log_options
@handle_errors
def build(agent_file: Path, log_level: str, full_tb: bool, **flags: Any) -> None:
    """Apply the agent, then run the project on it."""
    sys.exit(_run_on_agent(agent_file, flags, log_level, full_tb, apply_first=True))


@agent.command()
@file_option
@log_options
@handle_errors
def delete(agent_file: Path, log_level: str, full_tb: bool) -> None:
    """Remove everything the agent created."""
    with (
        _rendering(log_level, "text", full_tb),
        _loaded(agent_file, need_env=False) as target,
    ):
        removed = target.delete()
    for line in removed:
        click.echo(f"Agent {target.name}: {line}")
    if not removed:
        click.echo(f"Agent {target.name}: nothing to delete.")


@agent.command()
@file_option
@log_options
@handle_errors
def status(agent_file: Path, log_level: str, full_tb: bool) -> None:
    """Show what exists for the agent and how its last run ended."""
    with _loaded(agent_file, need_env=False) as target:
        report = target.status()
    state = "applied" if report.exists else "not applied"
    click.echo(f"Agent {report.name} ({report.type}): {state}")
    for label, value in report.fields:
        click.echo(f"  {label + ':':<20} {value}")


@agent.command(name="list")
@log_options
@handle_errors
def list_(log_level: str, full_tb: bool) -> None:
    """List the agents this project has applied."""
    from prism.agents.state import State
    from prism.project import find_project

    records = State(find_project(Path.cwd())).agents()
    if not records:
        click.echo("No agents applied in this project.")
        return
    for record in records:
        click.echo(f"{record.name:<20} {record.type:<8} {record.file}")


@contextlib.contextmanager
def _loaded(agent_file: Path, *, need_env: bool = True) -> Iterator[Agent]:
    """Load the agent, and release its connections when the command ends.

    SIGTERM is handled like Ctrl-C for the command's duration, so stopping the
    client by its process id also stops what it started on the agent.
    """
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    target = _load(agent_file, need_env=need_env)
    try:
        yield target
    finally:
        target.close()


def _load(agent_file: Path, *, need_env: bool = True) -> Agent:
    from prism.agents import create_agent
    from prism.agents.config import load_agent_file
    from prism.agents.state import State
    from prism.project import find_project

    root = find_project(Path.cwd())
    if not agent_file.is_file():
        raise UsageError(
            f"Agent file {agent_file} does not exist",
            hint="Create one with `prism create agent --type venv`.",
        )
    config = load_agent_file(agent_file, State(root), need_env=need_env)
    return create_agent(config, root)


def _run_on_agent(
    agent_file: Path,
    flags: dict[str, Any],
    log_level: str,
    full_tb: bool,
    *,
    apply_first: bool,
) -> int:
    log_format = flags["log_format"]
    try:
        return _run_checked(agent_file, flags, log_level, full_tb, apply_first)
    except PrismError as error:
        if log_format == "json":
            emit_failure(error.exit_code, str(error))
        raise


def _run_checked(
    agent_file: Path,
    flags: dict[str, Any],
    log_level: str,
    full_tb: bool,
    apply_first: bool,
) -> int:
    request = _remote_run(flags, log_level, full_tb)
    log_format = flags["log_format"]
    early = None
    if not apply_first:
        from prism.agents.venv import launch_early
        from prism.project import find_project

        early = launch_early(find_project(Path.cwd()), agent_file)
    try:
        return _follow_run(
            agent_file,
            request,
            log_level,
            log_format,
            full_tb,
            apply_first=apply_first,
            early=early,
        )
    finally:
        if early is not None:
            early.release()


def _follow_run(
    agent_file: Path,
    request: RemoteRun,
    log_level: str,
    log_format: str,
    full_tb: bool,
    *,
    apply_first: bool,
    early: Any,
) -> int:
    with _loaded(agent_file) as target:
        if apply_first:
            with _rendering(log_level, log_format, full_tb, agent_file):
                click.echo(target.apply().summary, err=log_format == "json")
        started = target.start(request, early)

        # Imported once the far side is starting, so the two overlap.
        from prism.engine.events import RunFinished

        finished: list[RunFinished] = []
        with _rendering(log_level, log_format, full_tb, agent_file) as sink:

            def record(event: Any) -> None:
                if isinstance(event, RunFinished):
                    finished.append(event)
                sink(event)

            exit_code = started.wait(record)
    if finished and finished[-1].error:
        report_error(ConfigError(finished[-1].error), full_tb=False)
    return exit_code


def _remote_run(flags: dict[str, Any], log_level: str, full_tb: bool) -> RemoteRun:
    """Parse and check the `prism run` flags here, before anything starts."""
    from prism.agents.remote import RemoteRun
    from prism.project.overrides import parse_context, parse_vars

    overrides = {**parse_context(flags["context"]), **parse_vars(flags["variables"])}
    return RemoteRun(
        selectors=selectors_from(flags["tasks"]),
        all_upstream=flags["all_upstream"],
        all_downstream=flags["all_downstream"],
        full_refresh=flags["full_refresh"],
        overrides=overrides,
        log_level=log_level,
        full_tb=full_tb,
    )


@contextlib.contextmanager
def _rendering(
    log_level: str, log_format: str, full_tb: bool, agent_file: Path | None = None
) -> Iterator[EventSink]:
    """Render events and Prism's log records for the duration of a command."""
    from prism.agents.config import agent_name
    from prism.console import JsonRenderer, TextRenderer, level_from_name, route_logging

    level = level_from_name(log_level)
    prefix = f"[{agent_name(agent_file)}] " if agent_file is not None else ""
    with open(Path.cwd() / "logs.log", "a", encoding="utf-8") as log_file:
        text = TextRenderer(
            sys.stdout if log_format == "text" else None,
            level=level,
            full_tb=full_tb,
            log_file=log_file,
            prefix=prefix,
        )
        json = JsonRenderer(sys.stdout) if log_format == "json" else None

        def sink(event: Any) -> None:
            text(event)
            if json is not None:
                json(event)

        with route_logging(sink, level):
            yield sink
