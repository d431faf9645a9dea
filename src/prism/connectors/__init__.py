"""SQL and Spark access for tasks, through the `hooks` argument."""

from prism.connectors.hooks import Hooks

__all__ = ["Hooks"]
