"""Rendering run events as lines for people: `HH:MM:SS | LEVEL | message`.

Colour comes from rich and is used only on a terminal, never when `NO_COLOR` is
set. Without colour, lines are written straight to the stream, because that
keeps large runs cheap. Every line also goes, without colour, to the log file.
"""

from __future__ import annotations

import linecache
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from prism.console.secrets import mask_event
from prism.engine.events import (
    ErrorInfo,
    Event,
    LogMessage,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskOutput,
    TaskRetry,
    TaskStarted,
    TriggerFinished,
)

__all__ = ["TextRenderer", "wants_colour"]

_LEVEL_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO ",
    logging.WARNING: "WARN ",
    logging.ERROR: "ERROR",
}
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
_STYLES = {
    "RUN": "cyan",
    "DONE": "green",
    "SKIP": "yellow",
    "ERROR": "bold red",
    "RETRY": "yellow",
    "STOP": "bold red",
}
_WIDTH = 80


def wants_colour(stream: TextIO) -> bool:
    """Return True when `stream` is a terminal and colour is not turned off."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    is_tty = getattr(stream, "isatty", lambda: False)()
    return bool(is_tty) and os.environ.get("TERM") != "dumb"


class TextRenderer:
    """An event sink that prints events for people.

    With `stream` None, lines go only to `log_file`.
    """

    def __init__(
        self,
        stream: TextIO | None,
        *,
        level: int = logging.INFO,
        full_tb: bool = False,
        log_file: TextIO | None = None,
        prefix: str = "",
        colour: bool | None = None,
    ) -> None:
        self._stream = stream
        self._level = level
        self._full_tb = full_tb
        self._log_file = log_file
        self._prefix = prefix
        self._lock = threading.Lock()
        self._errors: dict[str, ErrorInfo] = {}
        self._project: Path | None = None
        self._slug = ""
        self._console: Any = None
        self._event_time = time.time()
        if stream is not None and (
            colour if colour is not None else wants_colour(stream)
        ):
            from rich.console import Console

            self._console = Console(file=stream, highlight=False, soft_wrap=True)

    def __call__(self, event: Event) -> None:
        event = mask_event(event)
        with self._lock:
            # Lines show when the event happened, which for an agent's events is
            # the far side's clock.
            self._event_time = event.time
            handler = getattr(self, f"_on_{event.kind}", None)
            if handler is not None:
                handler(event)

    def _on_run_started(self, event: RunStarted) -> None:
        self._project = Path(event.project)
        self._slug = event.slug
        threads = "1 thread" if event.threads == 1 else f"{event.threads} threads"
        tasks = "1 task" if event.total == 1 else f"{event.total} tasks"
        self._line(
            logging.INFO,
            f"Running {tasks} of {self._project.name} (run {event.slug}, {threads})",
        )

    def _on_log(self, event: LogMessage) -> None:
        level = _LEVELS.get(event.level, logging.INFO)
        for number, text in enumerate(event.message.splitlines() or [""]):
            self._line(level, text if number == 0 else f"  {text}")

    def _on_task_output(self, event: TaskOutput) -> None:
        self._raw(event.line)

    def _on_task_started(self, event: TaskStarted) -> None:
        self._status_line(
            logging.INFO, event.index, event.total, "RUN", event.task, "RUN"
        )

    def _on_task_retry(self, event: TaskRetry) -> None:
        delay = f"in {event.delay:g}s" if event.delay else "now"
        error = f"{event.error.type}: {_first_line(event.error.message)}"
        self._line(
            logging.WARNING,
            f"{event.task} failed on attempt {event.attempt} ({error}); "
            f"retrying {delay}",
            style=_STYLES["RETRY"],
        )

    def _on_task_finished(self, event: TaskFinished) -> None:
        seconds = f"{event.duration:.2f}s"
        if event.status == "done":
            self._status_line(
                logging.INFO,
                event.index,
                event.total,
                "DONE",
                event.task,
                f"DONE in {seconds}",
            )
        elif event.status == "skipped":
            detail = (
                f"SKIP: upstream {event.upstream} failed"
                if event.reason == "upstream_failed"
                else "SKIP: done() returned True"
            )
            self._status_line(
                logging.INFO, event.index, event.total, "SKIP", event.task, detail
            )
        elif event.status == "interrupted":
            self._status_line(
                logging.ERROR,
                event.index,
                event.total,
                "STOP",
                event.task,
                f"INTERRUPTED after {seconds}",
            )
        else:
            self._status_line(
                logging.ERROR,
                event.index,
                event.total,
                "ERROR",
                event.task,
                f"ERROR in {seconds}",
            )
            if event.error is not None:
                self._errors[event.task] = event.error
                self._error_details(event.error)

    def _on_trigger_finished(self, event: TriggerFinished) -> None:
        name = f"trigger {event.name} ({event.when})"
        if event.status == "done":
            self._status_line(
                logging.INFO, None, None, "DONE", name, f"DONE in {event.duration:.2f}s"
            )
            return
        self._status_line(
            logging.ERROR, None, None, "ERROR", name, f"ERROR in {event.duration:.2f}s"
        )
        if event.error is not None:
            self._errors[name] = event.error
            self._error_details(event.error)

    def _on_run_finished(self, event: RunFinished) -> None:
        if event.error:
            return
        counts = event.counts
        parts = [
            f"{counts.get('done', 0)} done",
            f"{counts.get('failed', 0)} failed",
            f"{counts.get('skipped', 0)} skipped",
        ]
        if counts.get("not_run"):
            parts.append(f"{counts['not_run']} not run")
        summary = f"{', '.join(parts)} in {event.duration:.2f}s"
        if event.exit_code == 0:
            self._line(
                logging.INFO, f"Finished run {self._slug}: {summary}", style="green"
            )
            return
        if event.exit_code == 130:
            self._line(
                logging.ERROR,
                f"Interrupted run {self._slug}: {summary}",
                style=_STYLES["ERROR"],
            )
            return
        self._line(
            logging.ERROR, f"Run {self._slug} failed: {summary}", style=_STYLES["ERROR"]
        )
        for name, error in self._errors.items():
            location = f" ({error.file}:{error.line})" if error.file else ""
            self._line(
                logging.ERROR,
                f"  {name}: {error.type}: {_first_line(error.message)}{location}",
            )

    def _error_details(self, error: ErrorInfo) -> None:
        if self._full_tb and error.traceback:
            for text in error.traceback.rstrip().splitlines():
                self._line(logging.ERROR, f"  {text}")
            return
        lines = error.message.splitlines() or [""]
        self._line(logging.ERROR, f"  {error.type}: {lines[0]}")
        for text in lines[1:]:
            self._line(logging.ERROR, f"  {text}")
        if error.file and error.line:
            source = ""
            if self._project is not None:
                path = self._project / error.file
                source = linecache.getline(str(path), error.line).strip()
            code = f": {source}" if source else ""
            self._line(logging.ERROR, f"  at {error.file}:{error.line}{code}")
            self._line(logging.ERROR, "  (run with --full-tb for the full traceback)")

    def _status_line(
        self,
        level: int,
        index: int | None,
        total: int | None,
        status: str,
        name: str,
        detail: str,
    ) -> None:
        counter = f"[{index} of {total}] " if index is not None else ""
        head = f"{counter}{status:<5} {name} "
        tail = f" [{detail}]"
        dots = "." * max(3, _WIDTH - 19 - len(head) - len(tail))
        self._line(level, f"{head}{dots}{tail}", style=_STYLES.get(status), styled=tail)

    def _line(
        self,
        level: int,
        message: str,
        *,
        style: str | None = None,
        styled: str | None = None,
    ) -> None:
        if level < self._level:
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(self._event_time))
        head = f"{self._prefix}{stamp} | {_LEVEL_NAMES.get(level, 'INFO ')} | "
        if self._log_file is not None:
            self._log_file.write(f"{head}{message}\n")
        if self._stream is None:
            return
        if self._console is None:
            self._stream.write(f"{head}{message}\n")
            self._stream.flush()
            return
        from rich.text import Text

        text = Text(head, style="dim")
        if styled and message.endswith(styled):
            text.append(message[: -len(styled)])
            text.append(styled, style=style)
        else:
            text.append(message, style=style if level >= logging.WARNING else None)
        self._console.print(text)

    def _raw(self, line: str) -> None:
        if self._log_file is not None:
            self._log_file.write(f"{self._prefix}{line}\n")
        if self._stream is not None:
            self._stream.write(f"{self._prefix}{line}\n")
            self._stream.flush()


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def level_from_name(name: str) -> int:
    """Return the logging level for a `--log-level` value."""
    return _LEVELS[name.lower()]
