"""The task graph: resolving `tasks.ref` targets, finding cycles, ordering tasks."""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prism.engine.parser import ModuleSpec, RefCall, TaskSpec
from prism.errors import GraphError

__all__ = ["Graph", "build_graph", "resolve_ref"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Graph:
    """Tasks with their resolved upstream and downstream ids.

    `order` lists every task in a valid run order. Among tasks that are ready at
    the same time, the one defined first (by module path, then line) comes first.
    """

    tasks: dict[str, TaskSpec]
    modules: dict[str, ModuleSpec]
    upstream: dict[str, tuple[str, ...]]
    downstream: dict[str, tuple[str, ...]]
    order: tuple[str, ...]
    resolved_refs: dict[str, dict[tuple[str, bool], str]]

    def ancestors(self, ids: Iterable[str]) -> set[str]:
        return _closure(ids, self.upstream)

    def descendants(self, ids: Iterable[str]) -> set[str]:
        return _closure(ids, self.downstream)


def _closure(start: Iterable[str], edges: dict[str, tuple[str, ...]]) -> set[str]:
    seen: set[str] = set()
    stack = [neighbour for node in start for neighbour in edges[node]]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(edges[node])
    return seen


def build_graph(modules: Sequence[ModuleSpec]) -> Graph:
    """Resolve every reference and order the tasks.

    Raises:
        GraphError: a project without tasks, two tasks with one id, a reference
            that names no task or the task itself, or a cycle.
    """
    tasks = {task.id: task for module in modules for task in module.tasks}
    if not tasks:
        raise GraphError(
            "The project has no tasks",
            hint="Add a task to tasks/, e.g. with `prism create task --name "
            "first_task`.",
        )
    by_module = {module.name: module for module in modules}

    upstream: dict[str, tuple[str, ...]] = {}
    resolved: dict[str, dict[tuple[str, bool], str]] = {}
    for task in tasks.values():
        mapping = {
            (ref.target, ref.local): resolve_ref(ref, task, by_module)
            for ref in task.refs
        }
        resolved[task.id] = mapping
        upstream[task.id] = tuple(dict.fromkeys(mapping.values()))

    downstream_lists: dict[str, list[str]] = {task_id: [] for task_id in tasks}
    for task_id, parents in upstream.items():
        for parent in parents:
            downstream_lists[parent].append(task_id)
    downstream = {key: tuple(value) for key, value in downstream_lists.items()}

    order = _topological_order(list(tasks), upstream, downstream, tasks)
    return Graph(
        tasks=tasks,
        modules=by_module,
        upstream=upstream,
        downstream=downstream,
        order=order,
        resolved_refs=resolved,
    )


def resolve_ref(ref: RefCall, task: TaskSpec, modules: dict[str, ModuleSpec]) -> str:
    """Return the id of the task that `ref`, written in `task`, refers to."""
    where = f"{task.file}:{ref.line}"
    target = ref.target

    if ref.local:
        if "." in target or "/" in target:
            raise GraphError(
                f"tasks.ref({target!r}, local=True) in {where} must name a task in "
                "the same module, without a module or a dot",
                hint="Drop local=True to refer to a task in another module.",
            )
        return _resolve_in_module(target, modules[task.module], task, ref, where)

    if target.endswith(".py"):
        target = target[: -len(".py")]
        logger.warning(
            "tasks.ref(%r) in %s: the .py suffix is deprecated; write tasks.ref(%r)",
            ref.target,
            where,
            target,
        )
    if target in modules:
        if target == task.module:
            raise GraphError(
                f"tasks.ref({ref.target!r}) in {where} refers to the module of "
                f"task {task.id} itself",
                hint="To use another task in the same module, write "
                "tasks.ref('TaskName', local=True).",
            )
        return _single_task(modules[target], where)

    module_name, _, task_name = target.rpartition(".")
    if module_name in modules:
        return _resolve_in_module(task_name, modules[module_name], task, ref, where)

    raise GraphError(
        f"tasks.ref({ref.target!r}) in {where} refers to an unknown module {target!r}",
        hint=_suggest(target, modules),
    )


def _resolve_in_module(
    name: str, module: ModuleSpec, task: TaskSpec, ref: RefCall, where: str
) -> str:
    names = {candidate.name: candidate.id for candidate in module.tasks}
    call = f"tasks.ref({ref.target!r}{', local=True' if ref.local else ''})"
    if name not in names:
        listing = ", ".join(names) or "none"
        raise GraphError(
            f"{call} in {where}: module {module.name!r} has no task {name!r}",
            hint=_suggest(name, names) or f"Its tasks are: {listing}.",
        )
    if names[name] == task.id:
        raise GraphError(
            f"{call} in {where}: task {task.id} self-references",
            hint="A task cannot use its own output; refer to another task.",
        )
    return names[name]


def _single_task(module: ModuleSpec, where: str) -> str:
    if len(module.tasks) == 1:
        return module.tasks[0].id
    if not module.tasks:
        raise GraphError(
            f"tasks.ref({module.name!r}) in {where}: module {module.file} defines no "
            "task"
        )
    example = module.tasks[0].id
    ids = ", ".join(task.id for task in module.tasks)
    raise GraphError(
        f"tasks.ref({module.name!r}) in {where} is ambiguous: module {module.file} "
        f"defines several tasks ({ids})",
        hint=f"Name one of them, e.g. tasks.ref({example!r}).",
    )


def _suggest(name: str, known: Iterable[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(name, list(known), n=1)
    return f"Did you mean {matches[0]!r}?" if matches else None


def _topological_order(
    ids: list[str],
    upstream: dict[str, tuple[str, ...]],
    downstream: dict[str, tuple[str, ...]],
    tasks: dict[str, TaskSpec],
) -> tuple[str, ...]:
    position = {task_id: index for index, task_id in enumerate(ids)}
    waiting = {task_id: len(upstream[task_id]) for task_id in ids}
    ready = [position[task_id] for task_id in ids if waiting[task_id] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        task_id = ids[heapq.heappop(ready)]
        order.append(task_id)
        for child in downstream[task_id]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, position[child])
    if len(order) < len(ids):
        left = [task_id for task_id in ids if waiting[task_id] > 0]
        raise _cycle_error(left, upstream, tasks)
    return tuple(order)


def _cycle_error(
    left: list[str], upstream: dict[str, tuple[str, ...]], tasks: dict[str, TaskSpec]
) -> GraphError:
    # Walking upstream from any task left over must revisit a task, because every
    # leftover task still waits on another leftover task.
    remaining = set(left)
    path: list[str] = []
    seen: dict[str, int] = {}
    node = left[0]
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(parent for parent in upstream[node] if parent in remaining)
    cycle = path[seen[node] :]
    cycle.reverse()
    cycle.append(cycle[0])
    chain = " -> ".join(cycle)
    files = ", ".join(dict.fromkeys(f"{tasks[task_id].file}" for task_id in cycle))
    return GraphError(
        f"The tasks form a cycle: {chain} (in {files})",
        hint="Each arrow is a tasks.ref from the task on its right; remove one of "
        "them so the tasks can run in order.",
    )
