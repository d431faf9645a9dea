"""Writing `.compiled/manifest.json`, in the shape Prism 0.2.x wrote it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from prism.engine.graph import Graph

__all__ = ["build_manifest", "write_manifest"]


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
