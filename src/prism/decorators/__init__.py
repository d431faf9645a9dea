"""The `task`, `target` and `target_iterator` decorators.

The decorators only attach metadata to the function; the engine reads it, calls
the function and saves its result to the targets, so a decorated function stays
an ordinary function that can be called directly in a notebook or a test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prism.targets import PrismTarget

__all__ = ["TargetSpec", "TaskOptions", "target", "target_iterator", "task"]

F = TypeVar("F", bound=Callable[..., Any])

TARGETS_ATTRIBUTE = "__prism_targets__"
TASK_ATTRIBUTE = "__prism_task__"


@dataclass(frozen=True)
class TargetSpec:
    """The location and target type of one output of a task.

    With `iterator`, the task returns a `{name: object}` dict, each object is saved
    to `loc/name` and the task's output is the folder `loc`.
    """

    type: type[PrismTarget]
    loc: str | Path
    kwargs: dict[str, Any] = field(default_factory=dict)
    iterator: bool = False

    def __call__(self, func: F) -> F:
        # Decorators apply bottom-up; inserting at the front keeps the list in the
        # order the decorators are written, which is the order of the returned tuple.
        specs: list[TargetSpec] = list(getattr(func, TARGETS_ATTRIBUTE, []))
        specs.insert(0, self)
        setattr(func, TARGETS_ATTRIBUTE, specs)
        return func


@dataclass(frozen=True)
class TaskOptions:
    """Settings of a function task, from the arguments of `@task(...)`."""

    retries: int = 0
    retry_delay_seconds: float = 0
    targets: tuple[TargetSpec, ...] = ()


def target(*, type: type[PrismTarget], loc: str | Path, **kwargs: Any) -> TargetSpec:
    """Save the task's output to `loc` with the target class `type`.

    Extra keyword arguments are passed to the target's `save` method.
    """
    return TargetSpec(type=type, loc=loc, kwargs=kwargs)


def target_iterator(
    *, type: type[PrismTarget], loc: str | Path, **kwargs: Any
) -> TargetSpec:
    """Save each item of the `{name: object}` dict the task returns to `loc/name`."""
    return TargetSpec(type=type, loc=loc, kwargs=kwargs, iterator=True)


def task(
    func: F | None = None,
    /,
    *,
    retries: int = 0,
    retry_delay_seconds: float | None = None,
    targets: list[TargetSpec] | None = None,
) -> Any:
    """Turn a function with the parameters `tasks, hooks` into a Prism task.

    Both `@task` and `@task(...)` work; Prism 0.2.x required the parentheses.
    """
    options = TaskOptions(
        retries=retries,
        retry_delay_seconds=retry_delay_seconds or 0,
        targets=tuple(targets or ()),
    )

    def decorate(function: F) -> F:
        setattr(function, TASK_ATTRIBUTE, options)
        return function

    if func is not None:
        return decorate(func)
    return decorate
