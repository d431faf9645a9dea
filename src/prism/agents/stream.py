"""Reading the far side's event stream, and masking secrets in events."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from prism.engine.events import (
    ErrorInfo,
    Event,
    EventSink,
    RunFinished,
    TaskOutput,
    event_from_dict,
)

__all__ = ["EventReader", "mask_secrets"]

MASK = "****"


class EventReader:
    """Turns lines of `prism run --log-format json` output into events.

    Standard output lines that are not events (a crash before the stream
    started, a message from the agent's shell) become `task_output` lines. The
    far side's standard error is not read here: agents keep it for the message
    of a run that ends without a closing event.
    """

    def __init__(self, sink: EventSink, stream: str = "stdout") -> None:
        self._sink = sink
        self._stream = stream
        self.finished: RunFinished | None = None

    def feed(self, lines: Iterable[str | bytes]) -> None:
        for raw in lines:
            self.feed_line(raw)

    def feed_line(self, raw: str | bytes) -> None:
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = line.rstrip("\r\n")
        if not line:
            return
        event = _parse(line)
        if event is None:
            self._sink(TaskOutput(task=None, stream=self._stream, line=line))  # type: ignore[arg-type]
            return
        if isinstance(event, RunFinished):
            # The caller emits the closing event once outputs are back.
            self.finished = event
            return
        self._sink(event)


def _parse(line: str) -> Event | None:
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event_from_dict(data) if isinstance(data, dict) else None


def mask_secrets(sink: EventSink, secrets: frozenset[str]) -> EventSink:
    """Wrap `sink` so every secret value in an event's text is replaced by `****`."""
    if not secrets:
        return sink
    ordered = sorted(secrets, key=len, reverse=True)

    def mask_text(text: str) -> str:
        for secret in ordered:
            text = text.replace(secret, MASK)
        return text

    def mask_value(value: Any) -> Any:
        if isinstance(value, str):
            return mask_text(value)
        if isinstance(value, ErrorInfo):
            return dataclasses.replace(
                value,
                message=mask_text(value.message),
                traceback=mask_text(value.traceback),
            )
        return value

    def masked(event: Event) -> None:
        changes = {
            field.name: mask_value(getattr(event, field.name))
            for field in dataclasses.fields(event)
            if isinstance(getattr(event, field.name), (str, ErrorInfo))
        }
        sink(dataclasses.replace(event, **changes))

    return masked
