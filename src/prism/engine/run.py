"""Compiling and running a project: the entry points the CLI calls."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prism
from prism.connectors.hooks import Hooks
from prism.engine.events import Event, EventSink, RunFinished, RunStarted, TaskFinished
from prism.engine.graph import Graph, build_graph
from prism.engine.manifest import build_manifest, record_targets, write_manifest
from prism.engine.parser import parse_tasks
from prism.engine.scheduler import Scheduler
from prism.engine.selection import Plan, plan_run
from prism.engine.triggers import TriggerPlan, load_triggers, run_triggers
from prism.project import (
    PROJECT_FILE,
    Project,
    apply_sys_paths,
    find_project,
    find_tasks_dir,
    load_project,
)

__all__ = ["Compiled", "RunRequest", "compile_project", "execute_run", "prepare_run"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class RunRequest:
    """The selection, flags and overrides of one `prism run`."""

    cwd: Path
    selectors: tuple[str, ...] = ()
    all_upstream: bool = False
    all_downstream: bool = False
    full_refresh: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Compiled:
    """A project whose tasks are parsed and whose graph is valid."""

    root: Path
    graph: Graph
    manifest_path: Path


@dataclass(frozen=True)
class PreparedRun:
    """A loaded project with its graph, plan and triggers, ready to run."""

    project: Project
    compiled: Compiled
    plan: Plan
    triggers: TriggerPlan
    request: RunRequest
    hooks: Hooks


def compile_project(cwd: Path) -> Compiled:
    """Find the project around `cwd`, parse its tasks and write the manifest.

    `prism_project.py` is read but not executed, as in Prism 0.2.x.
    """
    root = find_project(cwd)
    return _compile(root, find_tasks_dir(root))


def _compile(root: Path, tasks_dir: Path) -> Compiled:
    graph = build_graph(parse_tasks(tasks_dir, root))
    text = (root / PROJECT_FILE).read_text(encoding="utf-8")
    manifest_path = write_manifest(root, build_manifest(graph, text))
    return Compiled(root=root, graph=graph, manifest_path=manifest_path)


def prepare_run(request: RunRequest) -> PreparedRun:
    """Load the project and check everything a run needs before any task starts.

    The process changes into the project folder, as task code may rely on it.

    Raises:
        PrismError: the project, a task module, the graph, the selection or the
            triggers are invalid (exit code 2).
    """
    root = find_project(request.cwd)
    os.chdir(root)
    project = load_project(root, request.overrides)
    apply_sys_paths(project)
    compiled = _compile(root, project.tasks_dir)
    plan = plan_run(
        compiled.graph,
        request.selectors,
        all_upstream=request.all_upstream,
        all_downstream=request.all_downstream,
    )
    triggers = load_triggers(project)
    hooks = _load_hooks(project, compiled.graph, plan)
    return PreparedRun(
        project=project,
        compiled=compiled,
        plan=plan,
        triggers=triggers,
        request=request,
        hooks=hooks,
    )


def _load_hooks(project: Project, graph: Graph, plan: Plan) -> Hooks:
    from prism.connectors.usage import check_adapter_names

    hooks = Hooks.for_project(project)
    modules = {graph.tasks[task_id].module for task_id in plan.execute}
    sources = [
        (graph.modules[name].path, graph.modules[name].file) for name in sorted(modules)
    ]
    check_adapter_names(hooks.profile, sources)
    return hooks


def execute_run(prepared: PreparedRun, sink: EventSink) -> RunFinished:
    """Run the planned tasks, then the triggers, and return the closing event.

    Emits `run_started` and everything up to the last trigger. The caller emits
    the returned `run_finished` once it has flushed the run's own output, so that
    event is always the last one. Every adapter that `hooks` opened is closed at
    the end, after a failure and after Ctrl-C too.
    """
    try:
        return _execute(prepared, sink)
    finally:
        prepared.hooks.close()


def _execute(prepared: PreparedRun, sink: EventSink) -> RunFinished:
    started = time.perf_counter()
    project = prepared.project
    plan = prepared.plan
    sink(
        RunStarted(
            prism_version=prism.__version__,
            project=str(project.root),
            run_id=project.run_id,
            slug=project.slug,
            threads=project.threads,
            total=len(plan.execute),
            tasks=plan.execute,
        )
    )
    written: set[str] = set()

    def record(event: Event) -> None:
        if isinstance(event, TaskFinished):
            written.update(event.targets)
        sink(event)

    scheduler = Scheduler(
        prepared.compiled.graph,
        plan,
        root=project.root,
        hooks=prepared.hooks,
        sink=record,
        threads=project.threads,
        full_refresh=prepared.request.full_refresh,
    )
    outcome = scheduler.run()
    record_targets(project.root, written)

    if outcome.interrupted:
        exit_code = EXIT_INTERRUPTED
    else:
        succeeded = not outcome.failed
        when = "on_success" if succeeded else "on_failure"
        triggers_passed = run_triggers(prepared.triggers, when, sink, project.root)
        exit_code = EXIT_OK if succeeded and triggers_passed else EXIT_FAILED

    return RunFinished(
        exit_code=exit_code,
        duration=time.perf_counter() - started,
        counts=outcome.counts,
        failed=tuple(outcome.failed),
    )
