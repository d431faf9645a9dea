"""`load_hooks()`, which notebooks written for Prism 0.2.x use."""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from prism.connectors.hooks import Hooks
from prism.project import find_project, load_project

__all__ = ["Hooks", "PrismHooks", "load_hooks"]

PrismHooks = Hooks


def load_hooks(
    project_dir: Path | None = None, overrides: dict[str, Any] | None = None
) -> Hooks:
    """Return the `hooks` of the project at `project_dir`, or around the cwd.

    The profile is validated at once; connections open on first use and are
    closed when the interpreter exits, or earlier with `hooks.close()`.
    `overrides` set prism_project values, as `prism run -v KEY=VALUE` does.
    """
    root = project_dir.resolve() if project_dir else find_project(Path.cwd())
    project = load_project(root, overrides)
    hooks = Hooks.for_project(project)
    atexit.register(hooks.close)
    return hooks
