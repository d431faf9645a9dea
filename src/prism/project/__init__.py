"""Finding a project, loading `prism_project.py` and reading its settings.

Names are imported from their modules on first use, so a command that needs only
`parse_vars` does not pay for the loader's imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULES = {
    "parse_context": "prism.project.overrides",
    "parse_vars": "prism.project.overrides",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'prism.project' has no attribute {name!r}")
    module = importlib.import_module(_MODULES.get(name, "prism.project.loader"))
    return getattr(module, name)
