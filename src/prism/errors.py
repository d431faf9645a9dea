"""Every error Prism raises, each with the exit code the CLI gives it.

    PrismError                  exit 2 unless stated otherwise
    ├── UsageError              a bad flag or flag value
    ├── ProjectError            the project cannot be found or loaded
    │   ├── TaskDefinitionError a task module that does not define a valid task
    │   └── GraphError          a bad `tasks.ref`, a cycle, an unknown selection
    ├── ConfigError             a YAML file (triggers, profile, agent) that is invalid
    ├── TaskError               raised inside a task by Prism's own helpers (exit 1)
    └── RunInterrupted          Ctrl-C (exit 130)

Library code only raises these. The CLI prints the message on one line and exits
with `exit_code`; the traceback is shown only with `--full-tb`.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "GraphError",
    "PrismError",
    "ProjectError",
    "RunInterrupted",
    "TaskDefinitionError",
    "TaskError",
    "UsageError",
]


class PrismError(Exception):
    """Base of all Prism errors; `exit_code` is what the CLI exits with."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  {self.hint}"
        return self.message


class UsageError(PrismError):
    """A command-line flag or its value is invalid."""


class ProjectError(PrismError):
    """The project cannot be found, or `prism_project.py` is invalid."""


class TaskDefinitionError(ProjectError):
    """A task module does not define a valid task."""


class GraphError(ProjectError):
    """The task graph is invalid, or a selection names no task."""


class ConfigError(PrismError):
    """A YAML configuration file is invalid."""


class TaskError(PrismError):
    """An error Prism raises in a running task, such as a missing upstream output."""

    exit_code = 1


class RunInterrupted(PrismError):
    """The run was interrupted with Ctrl-C."""

    exit_code = 130
