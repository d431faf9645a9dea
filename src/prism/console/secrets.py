"""Masking secret values, such as passwords read from the environment, in output.

Configuration loaders register the values they consider secret with
`register_secret()`. Everything Prism prints goes through `mask()`: run events
(`mask_events`), error messages and tracebacks, and, during a run, what tasks
write to `sys.stdout` and `sys.stderr` (`masked_streams`).

The registry is process-wide, because one process runs one command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from prism.engine.events import Event, EventSink

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "clear_secrets",
    "mask",
    "mask_event",
    "mask_events",
    "masked_streams",
    "register_secret",
]

MASK = "****"

# Shorter values (a port such as "1", a flag such as "on") would garble ordinary
# output without hiding anything worth hiding.
MIN_SECRET_LENGTH = 3

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def register_secret(value: object) -> None:
    """Add `value` (as text) to the values masked in all output from now on."""
    global _secrets
    text = str(value)
    if len(text) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if text in _secrets:
            return
        # Longer values first, so a secret that contains another is masked whole.
        _secrets = tuple(sorted((*_secrets, text), key=len, reverse=True))


def clear_secrets() -> None:
    """Forget every registered value (for tests and long-lived processes)."""
    global _secrets
    with _lock:
        _secrets = ()


def mask(text: str) -> str:
    """Return `text` with every registered secret value replaced by `****`."""
    secrets = _secrets
    if not secrets:
        return text
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_events(sink: EventSink) -> EventSink:
    """Wrap `sink` so that every text field of an event is masked when it is sent."""

    def masked(event: Event) -> None:
        sink(mask_event(event))

    return masked


def mask_event(event: Event) -> Event:
    """Return `event` with every registered secret masked in its text fields."""
    if not _secrets:
        return event
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        masked = _mask_value(value)
        if masked is not value:
            changes[field.name] = masked
    return dataclasses.replace(event, **changes) if changes else event


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        masked = mask(value)
        return value if masked == value else masked
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for field in dataclasses.fields(value):
            inner = getattr(value, field.name)
            if isinstance(inner, str) and mask(inner) != inner:
                changes[field.name] = mask(inner)
        return dataclasses.replace(value, **changes) if changes else value
    if isinstance(value, tuple) and any(isinstance(item, str) for item in value):
        masked_items = tuple(_mask_value(item) for item in value)
        return value if masked_items == value else masked_items
    return value


class _MaskingStream(io.TextIOBase):
    """A text stream that masks secrets in what is written, then passes it on.

    NOTE: masking works on each `write()` call, so a secret split across two
    writes by the caller is not masked. `print()` writes its arguments whole.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding

    @property
    def buffer(self) -> Any:
        return self._stream.buffer

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def write(self, text: str) -> int:
        self._stream.write(mask(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def masked_streams() -> Iterator[None]:
    """Mask secrets in everything written to `sys.stdout` and `sys.stderr` inside.

    Without registered secrets the streams stay as they are: a Python-level
    wrapper would give Ctrl-C more places to land inside a task's `print()`.
    """
    if not _secrets:
        yield
        return
    original = (sys.stdout, sys.stderr)
    sys.stdout = _MaskingStream(original[0])
    sys.stderr = _MaskingStream(original[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = original
