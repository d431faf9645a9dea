"""One `prism run` from request to exit code, rendered for people or machines.

Shared by the `prism run` command and by the far side of an agent run
(`prism.agents.remote`), which calls it without the command line's parser.
"""

from __future__ import annotations

import sys
import time
import traceback
from typing import TYPE_CHECKING, TextIO

from prism.errors import PrismError

if TYPE_CHECKING:
    from prism.engine.events import Event
    from prism.engine.run import RunRequest

__all__ = ["run_session", "write_error"]


def write_error(
    error: PrismError, *, full_tb: bool, stream: TextIO | None = None
) -> None:
    """Write `error` with its hint, and with `full_tb` its traceback, to stderr.

    Registered secret values are masked in all of it.
    """
    from prism.console.secrets import mask

    out = stream or sys.stderr
    if full_tb:
        out.write(mask("".join(traceback.format_exception(error)).rstrip()) + "\n")
    out.write(mask(f"Error: {error.message}") + "\n")
    if error.hint:
        out.write(mask(f"  {error.hint}") + "\n")
    out.flush()


def run_session(
    request: RunRequest,
    *,
    log_format: str,
    log_level: str,
    full_tb: bool,
    log_file: TextIO | None,
) -> int:
    """Prepare and execute a run, rendering its events; return the exit code.

    SIGTERM ends the run the way Ctrl-C does: `docker stop`, `kill` and an agent
    stopping a remote run send it, and the interrupted tasks are still reported.
    """
    from prism.console import (
        JsonRenderer,
        TextRenderer,
        capture_output,
        level_from_name,
        route_logging,
    )
    from prism.console.secrets import masked_streams
    from prism.engine.events import RunFinished
    from prism.engine.run import execute_run, prepare_run

    _stop_on_sigterm()
    level = level_from_name(log_level)
    text = TextRenderer(
        sys.stdout if log_format == "text" else None,
        level=level,
        full_tb=full_tb,
        log_file=log_file,
    )
    json = JsonRenderer(sys.stdout) if log_format == "json" else None

    def sink(event: Event) -> None:
        text(event)
        if json is not None:
            json(event)

    started = time.perf_counter()
    with route_logging(sink, level):
        try:
            prepared = prepare_run(request)
        except PrismError as error:
            if json is not None:
                json(
                    RunFinished(
                        exit_code=error.exit_code,
                        duration=time.perf_counter() - started,
                        error=str(error),
                    )
                )
            write_error(error, full_tb=full_tb)
            return error.exit_code
        try:
            if json is not None:
                with capture_output(json):
                    finished = execute_run(prepared, sink)
            else:
                with masked_streams():
                    finished = execute_run(prepared, sink)
        except KeyboardInterrupt:
            finished = RunFinished(
                exit_code=130, duration=time.perf_counter() - started
            )
        sink(finished)
    return finished.exit_code


def _stop_on_sigterm() -> None:
    # The first Ctrl-C or SIGTERM interrupts the run, which reports what was
    # running. A second one ends the process at once, even if a task caught the
    # first.
    import os
    import signal

    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            sys.stderr.write("Stopped at once: a second interrupt arrived.\n")
            sys.stderr.flush()
            os._exit(130)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
