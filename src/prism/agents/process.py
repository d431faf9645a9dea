"""Streaming a local subprocess that runs `prism run --log-format json`.

Used by agents whose far side is a process this client starts: the venv agent
directly, and the SSH-based agents through the `ssh` client.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

from prism.agents.stream import EventReader
from prism.engine.events import EventSink, RunFinished

__all__ = ["GRACE_SECONDS", "closing_event", "follow_interruptibly", "stream_process"]

# How long a stopped run may take to report its interrupted tasks before it is
# killed.
GRACE_SECONDS = 10.0


def stream_process(
    process: subprocess.Popen[bytes],
    sink: EventSink,
    *,
    timeout: float | None,
    stop: Callable[[], None],
    kill: Callable[[], None],
) -> RunFinished:
    """Send the process's events to `sink` as they arrive; return its closing event.

    `stop` signals the far side to end (it reports interrupted tasks), `kill` ends it
    at once. After `timeout` seconds, or on Ctrl-C, the process is stopped, and
    killed if it has not ended `GRACE_SECONDS` later; a second Ctrl-C kills it at
    once. The function returns only once the process has ended.
    """
    started = time.perf_counter()
    reader = EventReader(sink)
    errors: list[str] = []
    error_thread = threading.Thread(
        target=_collect, args=(process.stderr, errors), daemon=True
    )
    error_thread.start()
    timed_out = threading.Event()
    timer = None
    if timeout is not None:
        timer = threading.Timer(timeout, _expire, args=(timed_out, process, stop, kill))
        timer.daemon = True
        timer.start()

    try:
        assert process.stdout is not None
        stdout = process.stdout
        interrupted = follow_interruptibly(
            lambda: reader.feed(stdout), stop=stop, kill=kill
        )
        process.wait()
    finally:
        if timer is not None:
            timer.cancel()
        if process.poll() is None:
            _end(process, stop, kill)
        error_thread.join(timeout=2)

    return closing_event(
        reader,
        duration=time.perf_counter() - started,
        timeout=timeout if timed_out.is_set() else None,
        interrupted=interrupted,
        status=process.returncode,
        errors=errors,
    )


def closing_event(
    reader: EventReader,
    *,
    duration: float,
    timeout: float | None,
    interrupted: bool,
    status: int,
    errors: list[str],
) -> RunFinished:
    """Return the run's closing event, making one up if the far side sent none.

    `timeout` is the limit when the run timed out, else None; `status` is the far
    side's exit status and `errors` its standard error lines.
    """
    if timeout is not None:
        return RunFinished(
            exit_code=1,
            duration=duration,
            error=f"The run timed out after {timeout:g}s and was stopped",
        )
    if reader.finished is not None:
        return reader.finished
    if interrupted:
        return RunFinished(exit_code=130, duration=duration)
    detail = "\n".join(errors[-20:]).strip()
    return RunFinished(
        exit_code=status if status > 0 else 1,
        duration=duration,
        error=detail
        or f"The run ended with exit code {status} without reporting a result",
    )


def follow_interruptibly(
    read: Callable[[], None], *, stop: Callable[[], None], kill: Callable[[], None]
) -> bool:
    """Run `read` in a thread until it returns; return True if Ctrl-C came.

    The first Ctrl-C calls `stop` in the background and keeps reading, so the
    far side's report of its interrupted tasks still arrives. `kill` follows if
    the far side has not ended `GRACE_SECONDS` later, or at a second Ctrl-C.
    An exception raised by `read` is raised here.
    """
    failures: list[BaseException] = []

    def target() -> None:
        try:
            read()
        except BaseException as error:
            failures.append(error)

    reader = threading.Thread(target=target, name="prism-agent-reader", daemon=True)
    reader.start()
    interrupted = False
    killer: threading.Timer | None = None
    while reader.is_alive():
        try:
            reader.join(timeout=0.2)
        except KeyboardInterrupt:
            if interrupted:
                kill()
                continue
            interrupted = True
            threading.Thread(target=stop, daemon=True).start()
            killer = threading.Timer(GRACE_SECONDS, kill)
            killer.daemon = True
            killer.start()
    if killer is not None:
        killer.cancel()
    if failures:
        raise failures[0]
    return interrupted


def _collect(stream: object, lines: list[str]) -> None:
    for raw in stream:  # type: ignore[attr-defined]
        lines.append(raw.decode("utf-8", "replace").rstrip("\n"))


def _expire(
    flag: threading.Event,
    process: subprocess.Popen[bytes],
    stop: Callable[[], None],
    kill: Callable[[], None],
) -> None:
    flag.set()
    _end(process, stop, kill)


def _end(
    process: subprocess.Popen[bytes], stop: Callable[[], None], kill: Callable[[], None]
) -> None:
    stop()
    try:
        process.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        kill()
        process.wait()
