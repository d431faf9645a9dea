"""The bundle shipped to an agent: the project's files and the folders it imports.

The bundle is the project folder minus what `.gitignore` and `.prismignore` (at
the project root) exclude and minus Prism's own folders, plus each folder outside
the project that `SYS_PATH_CONF` names. Every file keeps its absolute path, so
both relative and absolute paths in the project mean the same thing on the agent.

`SYS_PATH_CONF` is read from `prism_project.py`'s syntax tree, so the client never
runs project code, which may need packages only the agent has. Paths built from
string literals, `__file__`, `Path(...)`, `.parent` and `/` are understood,
including through earlier top-level assignments such as `WKDIR`.
"""

from __future__ import annotations

import ast
import hashlib
import io
import logging
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Bundle", "collect_bundle", "external_folders", "output_paths"]

logger = logging.getLogger(__name__)

# Never shipped: Prism's state and run files, version control, caches, and the
# usual names of local virtual environments.
ALWAYS_EXCLUDED = (
    ".prism/",
    ".git/",
    ".compiled/",
    "__pycache__/",
    ".ipynb_checkpoints/",
    ".venv/",
    "logs.log",
)


@dataclass(frozen=True)
class Bundle:
    """Files to ship, as absolute paths, and a hash of their contents."""

    root: Path
    files: tuple[Path, ...]
    folders: tuple[Path, ...]
    digest: str

    def to_tar(self) -> bytes:
        """Return the bundle as an uncompressed tar of absolute paths without '/'."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for folder in self.folders:
                info = archive.gettarinfo(str(folder), arcname=str(folder).lstrip("/"))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                archive.addfile(info)
            for path in self.files:
                info = archive.gettarinfo(str(path), arcname=str(path).lstrip("/"))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with path.open("rb") as stream:
                    archive.addfile(info, stream)
        return buffer.getvalue()


def collect_bundle(root: Path, *, with_targets: bool = False) -> Bundle:
    """List the files to ship for the project at `root`.

    With `with_targets`, the target files earlier runs wrote are shipped too,
    even when ignored, so selected tasks can read their upstream outputs.
    """
    from prism.engine.manifest import read_targets

    roots = [root, *external_folders(root)]
    files: list[Path] = []
    for folder in roots:
        files.extend(_walk(folder, _ignore_spec(folder)))
    if with_targets:
        shipped = set(files)
        for target in read_targets(root):
            if target.is_dir():
                extra = [path for path in target.rglob("*") if path.is_file()]
            else:
                extra = [target] if target.is_file() else []
            files.extend(path for path in extra if path not in shipped)
    folders = sorted({parent for path in files for parent in _parents(path)})
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return Bundle(
        root=root, files=tuple(files), folders=tuple(folders), digest=digest.hexdigest()
    )


def _parents(path: Path) -> Iterator[Path]:
    for parent in path.parents:
        if parent == Path(parent.anchor):
            return
        yield parent


def _ignore_spec(folder: Path) -> Any:
    import pathspec

    lines = list(ALWAYS_EXCLUDED)
    for name in (".gitignore", ".prismignore"):
        path = folder / name
        if path.is_file():
            lines.extend(path.read_text(encoding="utf-8").splitlines())
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _walk(folder: Path, spec: Any) -> list[Path]:
    found: list[Path] = []
    for current, directories, names in os.walk(folder):
        relative = Path(current).relative_to(folder)
        directories[:] = sorted(
            name
            for name in directories
            if not spec.match_file(f"{(relative / name).as_posix()}/")
        )
        for name in sorted(names):
            path = Path(current) / name
            if path.is_file() and not spec.match_file((relative / name).as_posix()):
                found.append(path)
    return found


def external_folders(root: Path) -> list[Path]:
    """Return the existing `SYS_PATH_CONF` folders that lie outside the project."""
    project_file = root / "prism_project.py"
    try:
        tree = ast.parse(project_file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return []
    names: dict[str, Any] = {"__file__": project_file}
    folders: list[Path] = []
    for node in tree.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Name):
            continue
        value = _evaluate(node.value, names)
        if value is not None:
            names[target.id] = value
        if target.id == "SYS_PATH_CONF" and isinstance(
            node.value, (ast.List, ast.Tuple)
        ):
            folders = _outside(root, node.value, names)
    return folders


def _outside(
    root: Path, node: ast.List | ast.Tuple, names: dict[str, Any]
) -> list[Path]:
    found = []
    for element in node.elts:
        value = _evaluate(element, names)
        if value is None:
            logger.warning(
                "SYS_PATH_CONF entry %r in prism_project.py cannot be read without "
                "running the file, so it is not shipped to the agent",
                ast.unparse(element),
            )
            continue
        path = Path(value)
        path = (path if path.is_absolute() else root / path).resolve()
        if (
            path.is_dir()
            and not path.is_relative_to(root)
            and not root.is_relative_to(path)
        ):
            found.append(path)
    return found


def _evaluate(node: ast.expr, names: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        base = _evaluate(node.value, names)
        return Path(base).parent if base is not None else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left, right = _evaluate(node.left, names), _evaluate(node.right, names)
        if left is None or right is None:
            return None
        return Path(left) / right
    if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
        callee = ast.unparse(node.func)
        argument = _evaluate(node.args[0], names)
        if argument is None:
            return None
        if callee in ("Path", "pathlib.Path", "PurePath"):
            return Path(argument)
        if callee == "str":
            return str(argument)
        if callee in ("os.path.dirname",):
            return os.path.dirname(argument)
    return None


def output_paths(
    root: Path, written: set[str], artifacts: tuple[str, ...] = ()
) -> list[Path]:
    """Return what to copy back after a run: target folders and `artifacts`.

    Each target's folder comes back, unless that folder is the project itself:
    then only the target, so local edits made during the run survive. Paths
    outside the project are never copied back.
    """
    paths: set[Path] = set()
    for text in written:
        path = Path(text)
        parent = path.parent
        paths.add(parent if parent != root and parent.is_relative_to(root) else path)
    paths.update((root / artifact).resolve() for artifact in artifacts)
    inside = set()
    for path in paths:
        if path.is_relative_to(root):
            inside.add(path)
        else:
            logger.warning("Not copying %s back: it is outside the project", path)
    return sorted(
        path
        for path in inside
        if not any(other != path and path.is_relative_to(other) for other in inside)
    )
