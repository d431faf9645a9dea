"""Rendering run events as JSON lines, and capturing everything else a run prints.

In JSON mode standard output must carry nothing but events. `capture_output`
moves the real standard output to a private descriptor for the events, points
file descriptors 1 and 2 at pipes, and turns what arrives on them, and what
Python code writes to `sys.stdout` and `sys.stderr`, into `task_output` events.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

from prism.console.secrets import mask_event
from prism.engine.events import Event, EventSink, TaskOutput, event_to_json
from prism.engine.execution import current_task, running_tasks

__all__ = ["JsonRenderer", "capture_output"]


class JsonRenderer:
    """An event sink that writes one JSON object per line and flushes each."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = event_to_json(mask_event(event))
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


class _ThreadLineWriter(io.TextIOBase):
    """A `sys.stdout` replacement that sends each complete line as an event.

    Text is buffered per thread and kept with the task that wrote it, so a task
    that ends without a newline does not glue its text to the next task's line.
    `fileno()` is the redirected descriptor, so a subprocess given `sys.stdout`
    still writes into the event stream, and `buffer` accepts bytes.
    """

    def __init__(self, sink: EventSink, stream: str, fd: int) -> None:
        self._sink = sink
        self._stream = stream
        self._fd = fd
        self._pending: dict[int, tuple[str | None, str]] = {}
        self.buffer = _BytesAdapter(self)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "replace"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        key = threading.get_ident()
        task = current_task()
        owner, pending = self._pending.get(key, (task, ""))
        if owner != task and pending:
            self._emit(owner, pending)
            pending = ""
        *lines, rest = (pending + text).split("\n")
        self._pending[key] = (task, rest)
        for line in lines:
            self._emit(task, line)
        return len(text)

    def _emit(self, task: str | None, line: str) -> None:
        line = line.removesuffix("\r")
        self._sink(TaskOutput(task=task, stream=self._stream, line=line))  # type: ignore[arg-type]

    def drain(self) -> None:
        for key, (task, rest) in list(self._pending.items()):
            if rest:
                self._emit(task, rest)
            del self._pending[key]


class _BytesAdapter:
    """The `buffer` of `_ThreadLineWriter`: bytes are decoded as UTF-8."""

    def __init__(self, writer: _ThreadLineWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> int:
        self._writer.write(bytes(data).decode("utf-8", "replace"))
        return len(data)

    def flush(self) -> None:
        pass


def _read_pipe(descriptor: int, stream: str, sink: EventSink) -> None:
    with open(descriptor, "rb", closefd=True) as pipe:
        for raw in pipe:
            active = set(running_tasks())
            task = active.pop() if len(active) == 1 else None
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            sink(TaskOutput(task=task, stream=stream, line=line))  # type: ignore[arg-type]


@contextlib.contextmanager
def capture_output(renderer: JsonRenderer) -> Iterator[None]:
    """Route all output of the process into `renderer` as `task_output` events."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    events = os.fdopen(os.dup(saved[1]), "w", encoding="utf-8", buffering=1)
    original_stream = renderer.stream
    renderer.stream = events
    readers = []
    for fd, name in ((1, "stdout"), (2, "stderr")):
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        reader = threading.Thread(
            target=_read_pipe, args=(read_end, name, renderer), daemon=True
        )
        reader.start()
        readers.append(reader)
    writers = (
        _ThreadLineWriter(renderer, "stdout", 1),
        _ThreadLineWriter(renderer, "stderr", 2),
    )
    original = (sys.stdout, sys.stderr)
    sys.stdout, sys.stderr = writers
    try:
        yield
    finally:
        sys.stdout, sys.stderr = original
        for writer in writers:
            writer.drain()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        # A process the run started may still hold a pipe open; don't wait for it.
        for reader in readers:
            reader.join(timeout=1.0)
        renderer.stream = original_stream
        events.close()
