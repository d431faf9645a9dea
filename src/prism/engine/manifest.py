"""Writing `.compiled/manifest.json`, in the shape Prism 0.2.x wrote it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from prism.engine.graph import Graph

__all__ = ["build_manifest", "read_targets", "record_targets", "write_manifest"]


def build_manifest(graph: Graph, project_file_text: str) -> dict[str, Any]:
    """Return the manifest: targets, project file text, tasks by folder, and refs.

    `tasks` nests modules in sub-folders under `"folder/"` keys; `targets` and
    `refs` are keyed by module path, then task name.
    """
    tasks: dict[str, Any] = {}
    targets: dict[str, dict[str, list[str]]] = {}
    refs: dict[str, dict[str, list[str]]] = {}
    for task in graph.tasks.values():
        *folders, leaf = task.module.split("/")
        level = tasks
        for folder in folders:
            level = level.setdefault(f"{folder}/", {})
        level.setdefault(leaf, []).append(task.name)
        targets.setdefault(task.module, {})[task.name] = list(task.target_locs)
        refs.setdefault(task.module, {})[task.name] = list(graph.upstream[task.id])
    return {
        "targets": targets,
        "prism_project": project_file_text,
        "tasks": tasks,
        "refs": refs,
    }


def write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest atomically to `root/.compiled/manifest.json`."""
    folder = root / ".compiled"
    folder.mkdir(exist_ok=True)
    path = folder / "manifest.json"
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix=".manifest-", suffix=".json"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(manifest, stream, indent=2)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


def read_targets(root: Path) -> list[Path]:
    """Return the target paths runs of this project wrote, as recorded."""
    path = root / ".compiled" / "targets.json"
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [root / name for name in names if isinstance(name, str)]


def record_targets(root: Path, written: set[str]) -> None:
    """Add the target paths a run wrote inside the project to `targets.json`.

    Agents ship these files when a run selects tasks, so a selected task can read
    its upstream outputs on the agent as it would here.
    """
    names = {
        str(Path(path).relative_to(root))
        for path in written
        if Path(path).is_relative_to(root)
    }
    if not names:
        return
    known = {str(path.relative_to(root)) for path in read_targets(root)}
    if names <= known:
        return
    folder = root / ".compiled"
    folder.mkdir(exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".targets-", suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(sorted(known | names), stream, indent=1)
    os.replace(temporary, folder / "targets.json")
