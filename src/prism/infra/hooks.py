"""`load_hooks()`, which notebooks written for Prism 0.2.x use."""

from __future__ import annotations

from pathlib import Path

from prism.connectors.hooks import Hooks
from prism.project import find_project, load_project

__all__ = ["Hooks", "load_hooks"]

PrismHooks = Hooks


def load_hooks(project_dir: Path | None = None) -> Hooks:
    """Return the `hooks` object of the project at `project_dir` or around the cwd."""
    root = project_dir.resolve() if project_dir else find_project(Path.cwd())
    project = load_project(root)
    return Hooks(project.profile_path, project.profile)
