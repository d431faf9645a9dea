"""Typed run events, their JSON form, and the sink they are sent to.

`docs/events.md` documents the JSON form field by field; `SCHEMA` is its version.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

__all__ = [
    "SCHEMA",
    "ErrorInfo",
    "Event",
    "EventSink",
    "LogMessage",
    "RunFinished",
    "RunStarted",
    "TaskFinished",
    "TaskOutput",
    "TaskRetry",
    "TaskStarted",
    "TriggerFinished",
    "event_from_dict",
    "event_to_json",
]

SCHEMA = 1

TaskStatus = Literal["done", "skipped", "failed", "interrupted"]


@dataclass(frozen=True)
class ErrorInfo:
    """An exception, with the innermost line of the project's own code it passed."""

    type: str
    message: str
    file: str | None = None
    line: int | None = None
    traceback: str = ""


@dataclass(frozen=True)
class RunStarted:
    kind: ClassVar[str] = "run_started"
    prism_version: str
    project: str
    run_id: str
    slug: str
    threads: int
    total: int
    tasks: tuple[str, ...]
    schema: int = SCHEMA
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class LogMessage:
    kind: ClassVar[str] = "log"
    level: str
    message: str
    task: str | None = None
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class TaskStarted:
    kind: ClassVar[str] = "task_started"
    task: str
    index: int
    total: int
    attempt: int = 1
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class TaskOutput:
    kind: ClassVar[str] = "task_output"
    task: str | None
    stream: Literal["stdout", "stderr"]
    line: str
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class TaskRetry:
    kind: ClassVar[str] = "task_retry"
    task: str
    attempt: int
    delay: float
    error: ErrorInfo
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class TaskFinished:
    kind: ClassVar[str] = "task_finished"
    task: str
    index: int
    total: int
    status: TaskStatus
    duration: float
    attempts: int
    reason: str | None = None
    upstream: str | None = None
    error: ErrorInfo | None = None
    targets: tuple[str, ...] = ()
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class TriggerFinished:
    kind: ClassVar[str] = "trigger_finished"
    name: str
    when: str
    status: Literal["done", "failed"]
    duration: float
    error: ErrorInfo | None = None
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class RunFinished:
    kind: ClassVar[str] = "run_finished"
    exit_code: int
    duration: float
    counts: dict[str, int] = field(
        default_factory=lambda: {"done": 0, "failed": 0, "skipped": 0, "not_run": 0}
    )
    failed: tuple[str, ...] = ()
    error: str | None = None
    time: float = field(default_factory=time.time)


Event = (
    RunStarted
    | LogMessage
    | TaskStarted
    | TaskOutput
    | TaskRetry
    | TaskFinished
    | TriggerFinished
    | RunFinished
)
EventSink = Callable[[Event], None]

_EVENT_TYPES: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (
        RunStarted,
        LogMessage,
        TaskStarted,
        TaskOutput,
        TaskRetry,
        TaskFinished,
        TriggerFinished,
        RunFinished,
    )
}


def event_to_json(event: Event) -> str:
    """Serialise an event to one line of JSON."""
    data = {"event": event.kind, **dataclasses.asdict(event)}
    return json.dumps(data, separators=(",", ":"), default=str)


def event_from_dict(data: dict[str, Any]) -> Event | None:
    """Rebuild an event from its JSON form; unknown event types give None.

    Fields this version does not know are dropped, so a newer Prism on the far
    side of an agent can add fields without breaking an older client.
    """
    cls = _EVENT_TYPES.get(str(data.get("event")))
    if cls is None:
        return None
    names = {item.name for item in dataclasses.fields(cls)}
    values = {key: value for key, value in data.items() if key in names}
    for key in ("error",):
        if isinstance(values.get(key), dict):
            error_fields = {item.name for item in dataclasses.fields(ErrorInfo)}
            values[key] = ErrorInfo(
                **{k: v for k, v in values[key].items() if k in error_fields}
            )
    for key in ("tasks", "failed", "targets"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    event: Event = cls(**values)
    return event
