"""Choosing which tasks run (`-t`, `--all-upstream`, `--all-downstream`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from prism.engine.graph import Graph
from prism.errors import GraphError

__all__ = ["Plan", "plan_run", "select_tasks"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """The tasks a run executes, in order, and the tasks it only reads from targets."""

    execute: tuple[str, ...]
    load_only: frozenset[str]


def plan_run(
    graph: Graph,
    selectors: Sequence[str] = (),
    *,
    all_upstream: bool = False,
    all_downstream: bool = False,
) -> Plan:
    """Work out the tasks a run executes and the upstream outputs it reads from targets.

    Without selectors every task runs. With them, only the selected tasks run,
    plus their ancestors with `all_upstream`, plus their descendants and every
    ancestor of those with `all_downstream`.

    Raises:
        GraphError: a selector names no task, or a selected task needs the output
            of an upstream task that will not run and has no target to read.
    """
    if not selectors:
        return Plan(execute=graph.order, load_only=frozenset())

    chosen = select_tasks(graph, selectors)
    if all_downstream:
        chosen |= graph.descendants(chosen)
        chosen |= graph.ancestors(chosen)
    elif all_upstream:
        chosen |= graph.ancestors(chosen)

    execute = tuple(task_id for task_id in graph.order if task_id in chosen)
    load_only = frozenset(
        parent
        for task_id in execute
        for parent in graph.upstream[task_id]
        if parent not in chosen
    )
    for parent in sorted(load_only):
        if not graph.tasks[parent].has_targets:
            child = next(t for t in execute if parent in graph.upstream[t])
            raise GraphError(
                f"Task {child} needs the output of {parent}, which is not selected "
                "and has no target to read its output from",
                hint="Add --all-upstream to run it too, or select it with "
                f"-t {parent}.",
            )
    return Plan(execute=execute, load_only=load_only)


def select_tasks(graph: Graph, selectors: Sequence[str]) -> set[str]:
    """Return the ids of the tasks that the `-t` values name."""
    chosen: set[str] = set()
    for selector in selectors:
        chosen |= _select_one(graph, selector.strip())
    return chosen


def _select_one(graph: Graph, selector: str) -> set[str]:
    modules = graph.modules
    if selector.endswith("/*"):
        folder = selector[:-2].rstrip("/")
        prefix = f"{folder}/" if folder else ""
        found = {
            task.id
            for name, module in modules.items()
            if name.startswith(prefix) and "/" not in name[len(prefix) :]
            for task in module.tasks
        }
        if not found:
            raise GraphError(
                f"-t {selector}: no task modules directly inside tasks/{prefix}",
                hint="Check the folder name; `dir/*` selects the modules directly "
                "inside tasks/dir/.",
            )
        return found

    name = selector
    if name.endswith(".py"):
        name = name[: -len(".py")]
        logger.warning(
            "-t %s: the .py suffix is deprecated; write -t %s", selector, name
        )
    if name in modules:
        return _tasks_of(graph, name, selector)
    if name in graph.tasks:
        return {name}
    raise _unknown_selector(graph, selector, name)


def _tasks_of(graph: Graph, module: str, selector: str) -> set[str]:
    found = {task.id for task in graph.modules[module].tasks}
    if not found:
        raise GraphError(
            f"-t {selector}: module {graph.modules[module].file} defines no task"
        )
    return found


def _unknown_selector(graph: Graph, selector: str, name: str) -> GraphError:
    if name.startswith("tasks/"):
        return GraphError(
            f"-t {selector}: task names are relative to the tasks/ folder",
            hint=f"Write -t {name[len('tasks/') :]}.",
        )
    if any(module.startswith(f"{name.rstrip('/')}/") for module in graph.modules):
        return GraphError(
            f"-t {selector} names a folder, not a task module",
            hint=f"Write -t {name.rstrip('/')}/* to select the modules in it.",
        )
    module, _, task_name = name.rpartition(".")
    if module in graph.modules:
        names = [task.name for task in graph.modules[module].tasks]
        return GraphError(
            f"-t {selector}: module {module!r} has no task {task_name!r}",
            hint=f"Its tasks are: {', '.join(names)}." if names else None,
        )
    import difflib

    matches = difflib.get_close_matches(name, [*graph.modules, *graph.tasks], n=1)
    return GraphError(
        f"-t {selector} names no task module or task",
        hint=f"Did you mean {matches[0]!r}?"
        if matches
        else "Run `prism compile` to list the project's tasks in "
        ".compiled/manifest.json.",
    )
