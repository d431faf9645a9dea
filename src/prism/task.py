"""`PrismTask`, the base class of class tasks."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prism.decorators import TargetSpec, target
from prism.targets import PrismTarget

__all__ = ["PrismTask"]


class PrismTask:
    """Base class of a task: subclass it and define `run(self, tasks, hooks)`.

    Optional class attributes `RETRIES` (extra attempts after a failure) and
    `RETRY_DELAY_SECONDS` (the pause before each). Define `done(self, tasks, hooks)`
    to return True when the work is already done: Prism then skips `run` and, if
    the task has targets, reads its output back from them.
    """

    RETRIES: int = 0
    RETRY_DELAY_SECONDS: float = 0

    def __init__(self) -> None:
        self.tasks: Any = None
        self.hooks: Any = None

    def run(self, tasks: Any, hooks: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define run()")

    def done(self, tasks: Any, hooks: Any) -> bool:
        return False

    @staticmethod
    def target(
        type: type[PrismTarget], loc: str | Path, **kwargs: Any
    ) -> Callable[[Any], Any]:
        """Deprecated since Prism 0.2: use `prism.decorators.target`."""
        warnings.warn(
            "PrismTask.target is deprecated; use prism.decorators.target",
            DeprecationWarning,
            stacklevel=2,
        )
        spec: TargetSpec = target(type=type, loc=loc, **kwargs)
        return spec
