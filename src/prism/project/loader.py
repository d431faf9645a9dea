"""Find the project folder and load `prism_project.py` as the `prism_project` module."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from prism.errors import ProjectError

__all__ = [
    "PROJECT_FILE",
    "Project",
    "apply_sys_paths",
    "find_project",
    "find_tasks_dir",
    "load_project",
]

logger = logging.getLogger(__name__)

PROJECT_FILE = "prism_project.py"
TRIGGER_KINDS = ("on_success", "on_failure")


@dataclass(frozen=True)
class Project:
    """A loaded project: its folder, its `prism_project` module and its settings."""

    root: Path
    tasks_dir: Path
    module: ModuleType
    run_id: str
    slug: str
    threads: int
    sys_paths: tuple[Path, ...]
    triggers_path: Path
    triggers: dict[str, list[str]] = field(default_factory=dict)
    profile_path: Path | None = None
    profile: str = ""

    def relative(self, path: str | Path) -> str:
        """Return `path` relative to the project root when it is inside it."""
        try:
            return Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


def find_project(start: Path) -> Path:
    """Return the nearest folder, from `start` upwards, that has `prism_project.py`.

    The filesystem root itself is never a project, as in Prism 0.2.x.
    """
    start = start.resolve()
    for folder in (start, *start.parents):
        if folder.parent == folder:
            break
        if (folder / PROJECT_FILE).is_file():
            return folder
    raise ProjectError(
        f"No {PROJECT_FILE} found in {start} or any folder above it",
        hint="Run prism from inside a project folder, or create one with `prism init`.",
    )


def load_project(root: Path, overrides: dict[str, Any] | None = None) -> Project:
    """Import `prism_project.py`, apply `overrides` to it and read its settings.

    Overrides are set as attributes of the module after it ran and before the
    settings are read, as in Prism 0.2.x, so a value the file derives from an
    overridden one keeps the file's value.
    """
    tasks_dir = find_tasks_dir(root)
    module = _import_project_file(root)
    for key, value in (overrides or {}).items():
        setattr(module, key, value)

    from prism.admin import generate_run_id, generate_run_slug

    project = Project(
        root=root,
        tasks_dir=tasks_dir,
        module=module,
        run_id=str(getattr(module, "RUN_ID", None) or generate_run_id()),
        slug=str(getattr(module, "SLUG", None) or generate_run_slug()),
        threads=_read_threads(module),
        sys_paths=_read_sys_paths(module, root),
        triggers_path=_read_path(module, "TRIGGERS_YML_PATH", root)
        or root / "triggers.yml",
        triggers=_read_triggers(module),
        profile_path=_read_path(module, "PROFILE_YML_PATH", root),
        profile=_read_profile_name(module),
    )
    for key, value in (("RUN_ID", project.run_id), ("SLUG", project.slug)):
        if not hasattr(module, key):
            setattr(module, key, value)
    return project


def read_triggers_path(root: Path) -> Path:
    """Return the triggers file that `TRIGGERS_YML_PATH` names, or the default.

    The value is read from the file's syntax tree, so nothing is executed. A plain
    string and `Path(__file__).parent / "name"` are understood; any other value
    falls back to `triggers.yml` beside prism_project.py.
    """
    import ast

    tree = ast.parse((root / PROJECT_FILE).read_text(encoding="utf-8"))
    for node in tree.body:
        if not (
            isinstance(node, ast.Assign)
            and any(
                isinstance(target, ast.Name) and target.id == "TRIGGERS_YML_PATH"
                for target in node.targets
            )
        ):
            continue
        value = node.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            path = Path(value.value)
            return path if path.is_absolute() else root / path
        if (
            isinstance(value, ast.BinOp)
            and isinstance(value.op, ast.Div)
            and ast.unparse(value.left) == "Path(__file__).parent"
            and isinstance(value.right, ast.Constant)
            and isinstance(value.right.value, str)
        ):
            return root / value.right.value
    return root / "triggers.yml"


def apply_sys_paths(project: Project) -> None:
    """Put the project folder and `SYS_PATH_CONF` at the front of `sys.path`."""
    for path in reversed((project.root, *project.sys_paths)):
        text = str(path)
        if text in sys.path:
            sys.path.remove(text)
        sys.path.insert(0, text)


def find_tasks_dir(root: Path) -> Path:
    """Return the project's tasks folder (or the deprecated modules folder)."""
    if (root / "tasks").is_dir():
        return root / "tasks"
    if (root / "modules").is_dir():
        logger.warning(
            "The modules/ folder is deprecated; rename it to tasks/ (project %s)",
            root,
        )
        return root / "modules"
    raise ProjectError(
        f"Project {root} has no tasks/ folder",
        hint="Create tasks/ beside prism_project.py and put your task modules in it.",
    )


def _import_project_file(root: Path) -> ModuleType:
    path = root / PROJECT_FILE
    text_root = str(root)
    if text_root not in sys.path:
        sys.path.insert(0, text_root)
    spec = importlib.util.spec_from_file_location("prism_project", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["prism_project"] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        del sys.modules["prism_project"]
        raise ProjectError(
            f"Syntax error in {PROJECT_FILE}:{error.lineno}: {error.msg}",
            hint="Fix the line, then run the command again.",
        ) from error
    except Exception as error:
        del sys.modules["prism_project"]
        line = _innermost_line(error, path)
        where = f"{PROJECT_FILE}:{line}" if line else PROJECT_FILE
        raise ProjectError(
            f"{where} raised {type(error).__name__}: {error}",
            hint="prism_project.py runs before any task; fix the error, or run "
            "with --full-tb to see the traceback.",
        ) from error
    return module


def _innermost_line(error: BaseException, path: Path) -> int | None:
    line = None
    target = str(path.resolve())
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename == target or frame.filename == str(path):
            line = frame.lineno
    return line


def _read_threads(module: ModuleType) -> int:
    value = getattr(module, "THREADS", 1)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProjectError(
            f"THREADS in {PROJECT_FILE} must be a whole number, not {value!r}",
            hint="Set THREADS = 1 to run one task at a time, or a larger number to "
            "run independent tasks in parallel.",
        )
    return max(value, 1)


def _read_sys_paths(module: ModuleType, root: Path) -> tuple[Path, ...]:
    value = getattr(module, "SYS_PATH_CONF", None)
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ProjectError(
            f"SYS_PATH_CONF in {PROJECT_FILE} must be a list of paths, not "
            f"{type(value).__name__}",
            hint="Write it as SYS_PATH_CONF = [Path(__file__).parent].",
        )
    paths = []
    for item in value:
        if not isinstance(item, (str, os.PathLike)):
            raise ProjectError(
                f"SYS_PATH_CONF in {PROJECT_FILE} contains {item!r}, which is not a "
                "path",
                hint="List folders as strings or pathlib.Path objects.",
            )
        path = Path(item)
        paths.append((path if path.is_absolute() else root / path).resolve())
    return tuple(paths)


def _read_path(module: ModuleType, name: str, root: Path) -> Path | None:
    value = getattr(module, name, None)
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        return None
    path = Path(value)
    return path if path.is_absolute() else root / path


def _read_profile_name(module: ModuleType) -> str:
    value = getattr(module, "PROFILE", "")
    return value if isinstance(value, str) else ""


def _read_triggers(module: ModuleType) -> dict[str, list[str]]:
    value = getattr(module, "TRIGGERS", None)
    if value is None:
        return {}
    hint = "Write it as TRIGGERS = {'on_success': [...], 'on_failure': [...]}."
    if not isinstance(value, dict):
        raise ProjectError(
            f"TRIGGERS in {PROJECT_FILE} must be a dict, not {type(value).__name__}",
            hint=hint,
        )
    triggers: dict[str, list[str]] = {}
    for kind, names in value.items():
        if kind not in TRIGGER_KINDS:
            raise ProjectError(
                f"TRIGGERS in {PROJECT_FILE} has an unknown key {kind!r}; the keys "
                "are on_success and on_failure",
                hint=hint,
            )
        if not isinstance(names, (list, tuple)) or not all(
            isinstance(name, str) for name in names
        ):
            raise ProjectError(
                f"TRIGGERS[{kind!r}] in {PROJECT_FILE} must be a list of trigger names",
                hint=hint,
            )
        triggers[kind] = list(names)
    return triggers
