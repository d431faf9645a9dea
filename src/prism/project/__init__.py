"""Finding a project, loading `prism_project.py` and reading its settings."""

from prism.project.loader import (
    PROJECT_FILE,
    Project,
    apply_sys_paths,
    find_project,
    find_tasks_dir,
    load_project,
)
from prism.project.overrides import parse_context, parse_vars

__all__ = [
    "PROJECT_FILE",
    "Project",
    "apply_sys_paths",
    "find_project",
    "find_tasks_dir",
    "load_project",
    "parse_context",
    "parse_vars",
]
