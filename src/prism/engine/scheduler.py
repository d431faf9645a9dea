"""Running the planned tasks in dependency order on `THREADS` workers.

A task becomes ready the moment its last upstream task finishes, and the next
free worker takes it. The main thread only waits for the end, so Ctrl-C reaches
it at once. With one thread, tasks run in the main thread itself. When a task
fails after its retries, its downstream tasks are reported as skipped and
independent tasks keep running.
"""

from __future__ import annotations

import heapq
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prism.engine.events import (
    ErrorInfo,
    EventSink,
    TaskFinished,
    TaskRetry,
    TaskStarted,
)
from prism.engine.execution import (
    MISSING,
    LoadedTask,
    ModuleLoader,
    describe_error,
    load_targets,
    run_attempt,
    set_current_task,
)
from prism.engine.graph import Graph, resolve_ref
from prism.engine.parser import RefCall, TaskSpec
from prism.engine.selection import Plan
from prism.errors import PrismError, TaskError

__all__ = ["Outcome", "Scheduler", "TaskRefs"]


@dataclass
class Outcome:
    """The result of a run: task counts, failed tasks, whether it was interrupted."""

    counts: dict[str, int] = field(
        default_factory=lambda: {"done": 0, "failed": 0, "skipped": 0, "not_run": 0}
    )
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False


@dataclass(frozen=True)
class _Result:
    task: str
    status: str
    duration: float
    attempts: int
    output: Any = None
    reason: str | None = None
    error: ErrorInfo | None = None
    written: tuple[str, ...] = ()


class TaskRefs:
    """The `tasks` argument of a task: `tasks.ref(name)` returns an upstream output."""

    def __init__(self, scheduler: Scheduler, spec: TaskSpec) -> None:
        self._scheduler = scheduler
        self._spec = spec

    def ref(self, task: str, local: bool = False) -> Any:
        """Return the output of the task `task` names, as `tasks.ref` in the source."""
        return self._scheduler.output_of(self._spec, str(task).strip(), bool(local))


class Scheduler:
    """Runs a plan once; create one per run."""

    def __init__(
        self,
        graph: Graph,
        plan: Plan,
        *,
        root: Path,
        hooks: Any,
        sink: EventSink,
        threads: int,
        full_refresh: bool,
    ) -> None:
        self._graph = graph
        self._plan = plan
        self._root = root
        self._hooks = hooks
        self._sink = sink
        self._threads = threads
        self._full_refresh = full_refresh
        self._loader = ModuleLoader(root)
        self._planned = set(plan.execute)
        self._position = {task_id: i for i, task_id in enumerate(plan.execute)}
        self._outputs: dict[str, Any] = {}
        self._outputs_lock = threading.Lock()
        self._load_locks = {task_id: threading.Lock() for task_id in plan.load_only}
        self._stop = threading.Event()
        self._lock = threading.Condition()
        self._finished: set[str] = set()
        self._running: dict[str, int] = {}
        self._started_at: dict[str, float] = {}
        self._last_index = 0
        self.outcome = Outcome()

    def run(self) -> Outcome:
        """Run every planned task, or until Ctrl-C; return what happened."""
        waiting = {
            task_id: sum(1 for p in self._graph.upstream[task_id] if p in self._planned)
            for task_id in self._plan.execute
        }
        ready = [self._position[t] for t, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        try:
            if self._threads == 1:
                self._run_inline(ready, waiting)
            else:
                self._run_pool(ready, waiting)
        except KeyboardInterrupt:
            self._interrupt()
        self.outcome.counts["not_run"] = len(self._planned - self._finished)
        return self.outcome

    def _run_inline(self, ready: list[int], waiting: dict[str, int]) -> None:
        while ready:
            task_id = self._plan.execute[heapq.heappop(ready)]
            if task_id in self._finished:
                continue
            self._start(task_id)
            self._finish(self._execute(task_id), ready, waiting)

    def _run_pool(self, ready: list[int], waiting: dict[str, int]) -> None:
        # Workers take ready tasks themselves and record results under one lock,
        # so no task waits for the main thread. The main thread waits for the end
        # in short slices, which lets Ctrl-C through.
        finished = threading.Event()
        errors: list[BaseException] = []
        workers = [
            threading.Thread(
                target=self._work,
                args=(ready, waiting, finished, errors),
                name=f"prism-worker-{i}",
                daemon=True,
            )
            for i in range(min(self._threads, len(self._plan.execute)))
        ]
        for worker in workers:
            worker.start()
        while not finished.wait(timeout=0.5):
            pass
        if errors:
            # A failure outside any task, such as output to a closed pipe, ends
            # the run as it would with one thread.
            self._stop.set()
            raise errors[0]

    def _work(
        self,
        ready: list[int],
        waiting: dict[str, int],
        finished: threading.Event,
        errors: list[BaseException],
    ) -> None:
        try:
            self._work_until_done(ready, waiting, finished)
        except BaseException as error:
            errors.append(error)
            with self._lock:
                self._stop.set()
                finished.set()
                self._lock.notify_all()

    def _work_until_done(
        self, ready: list[int], waiting: dict[str, int], finished: threading.Event
    ) -> None:
        while True:
            with self._lock:
                task_id = self._take_ready(ready)
                while task_id is None and self._running and not self._stop.is_set():
                    self._lock.wait()
                    task_id = self._take_ready(ready)
                if task_id is None or self._stop.is_set():
                    finished.set()
                    self._lock.notify_all()
                    return
                self._start(task_id)
            result = self._execute(task_id)
            with self._lock:
                if result.task in self._running:
                    self._finish(result, ready, waiting)
                self._lock.notify_all()

    def _take_ready(self, ready: list[int]) -> str | None:
        while ready:
            task_id = self._plan.execute[heapq.heappop(ready)]
            if task_id not in self._finished:
                return task_id
        return None

    def _start(self, task_id: str) -> None:
        self._last_index += 1
        self._running[task_id] = self._last_index
        self._started_at[task_id] = time.perf_counter()
        self._sink(TaskStarted(task_id, self._last_index, len(self._plan.execute)))

    def _finish(
        self, result: _Result, ready: list[int], waiting: dict[str, int]
    ) -> None:
        index = self._running.pop(result.task)
        self._finished.add(result.task)
        if result.status == "failed":
            self.outcome.counts["failed"] += 1
            self.outcome.failed.append(result.task)
        else:
            self.outcome.counts[result.status] += 1
            with self._outputs_lock:
                self._outputs[result.task] = result.output
        self._sink(
            TaskFinished(
                task=result.task,
                index=index,
                total=len(self._plan.execute),
                status=result.status,  # type: ignore[arg-type]
                duration=result.duration,
                attempts=result.attempts,
                reason=result.reason,
                error=result.error,
                targets=result.written,
            )
        )
        if result.status == "failed":
            self._skip_downstream(result.task)
            return
        for child in self._graph.downstream[result.task]:
            if child in waiting:
                waiting[child] -= 1
                if waiting[child] == 0 and child not in self._finished:
                    heapq.heappush(ready, self._position[child])

    def _skip_downstream(self, failed: str) -> None:
        descendants = self._graph.descendants([failed])
        for task_id in self._plan.execute:
            if task_id in self._finished or task_id not in descendants:
                continue
            self._finished.add(task_id)
            self._last_index += 1
            self.outcome.counts["skipped"] += 1
            self._sink(
                TaskFinished(
                    task=task_id,
                    index=self._last_index,
                    total=len(self._plan.execute),
                    status="skipped",
                    duration=0.0,
                    attempts=0,
                    reason="upstream_failed",
                    upstream=failed,
                )
            )

    def _interrupt(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
            self._report_interrupted()

    def _report_interrupted(self) -> None:
        self.outcome.interrupted = True
        now = time.perf_counter()
        for task_id, index in list(self._running.items()):
            self._running.pop(task_id)
            self._sink(
                TaskFinished(
                    task=task_id,
                    index=index,
                    total=len(self._plan.execute),
                    status="interrupted",
                    duration=now - self._started_at[task_id],
                    attempts=1,
                )
            )

    def _execute(self, task_id: str) -> _Result:
        spec = self._graph.tasks[task_id]
        started = time.perf_counter()
        set_current_task(task_id)
        try:
            loaded = self._loader.load(spec, self._graph.modules[spec.module])
        except (Exception, SystemExit) as error:
            return self._failed(task_id, started, 1, _as_failure(error))
        finally:
            set_current_task(None)
        attempts = 0
        while True:
            attempts += 1
            set_current_task(task_id)
            try:
                attempt = run_attempt(
                    loaded,
                    TaskRefs(self, spec),
                    self._hooks,
                    full_refresh=self._full_refresh,
                )
            except (Exception, SystemExit) as caught:
                # sys.exit() in a task must not end the run or a worker thread.
                failure = _as_failure(caught)
                if attempts > loaded.retries or self._stop.is_set():
                    return self._failed(task_id, started, attempts, failure)
                self._announce_retry(loaded, attempts, failure)
                if self._stop.wait(loaded.retry_delay):
                    return self._failed(task_id, started, attempts, failure)
                self._sink(
                    TaskStarted(
                        task_id,
                        self._running[task_id],
                        len(self._plan.execute),
                        attempt=attempts + 1,
                    )
                )
                continue
            finally:
                set_current_task(None)
            return _Result(
                task=task_id,
                status=attempt.status,
                duration=time.perf_counter() - started,
                attempts=attempts if attempt.status == "done" else 0,
                output=attempt.output,
                reason="done" if attempt.status == "skipped" else None,
                written=attempt.written,
            )

    def _announce_retry(
        self, task: LoadedTask, attempt: int, error: BaseException
    ) -> None:
        self._sink(
            TaskRetry(
                task=task.spec.id,
                attempt=attempt,
                delay=float(task.retry_delay),
                error=describe_error(error, self._root),
            )
        )

    def _failed(
        self, task_id: str, started: float, attempts: int, error: BaseException
    ) -> _Result:
        return _Result(
            task=task_id,
            status="failed",
            duration=time.perf_counter() - started,
            attempts=attempts,
            error=describe_error(error, self._root),
        )

    def output_of(self, requester: TaskSpec, target: str, local: bool) -> Any:
        """Return the output of the task that `requester` refers to as `target`."""
        upstream = self._graph.resolved_refs[requester.id].get((target, local))
        if upstream is None:
            upstream = self._resolve_unlisted(requester, target, local)
        with self._outputs_lock:
            value = self._outputs.get(upstream, MISSING)
            known = upstream in self._outputs
        if known and value is MISSING:
            raise TaskError(
                f"Task {requester.id} needs the output of {upstream}, which was "
                "skipped because its done() returned True and it has no target to "
                "read its output from",
                hint="Add a target to it, or run with --full-refresh.",
            )
        if known:
            return value
        if upstream in self._planned:
            raise TaskError(
                f"Task {requester.id} asked for the output of {upstream} before it ran",
                hint="Call tasks.ref with a string literal inside the task itself so "
                "Prism can see the dependency and run the tasks in order.",
            )
        return self._load_upstream(requester, upstream)

    def _resolve_unlisted(self, requester: TaskSpec, target: str, local: bool) -> str:
        # A reference made outside the task's own code, e.g. in a helper function,
        # was not seen when the graph was built; resolve it now.
        try:
            return resolve_ref(
                RefCall(target=target, local=local, line=requester.line),
                requester,
                self._graph.modules,
            )
        except PrismError as error:
            raise TaskError(error.message, hint=error.hint) from None

    def _load_upstream(self, requester: TaskSpec, upstream: str) -> Any:
        spec = self._graph.tasks[upstream]
        lock = self._load_locks.setdefault(upstream, threading.Lock())
        hint = (
            f"Run it in the same command with --all-upstream, or on its own first "
            f"with -t {upstream}."
        )
        with lock:
            with self._outputs_lock:
                if upstream in self._outputs:
                    return self._outputs[upstream]
            loaded = self._loader.load(spec, self._graph.modules[spec.module])
            if not loaded.targets:
                raise TaskError(
                    f"Task {requester.id} needs the output of {upstream}, which is "
                    "not selected and has no target to read its output from",
                    hint=hint,
                )
            try:
                value = load_targets(loaded.targets, self._hooks)
            except FileNotFoundError as error:
                raise TaskError(
                    f"Task {requester.id} needs the output of {upstream}, but its "
                    f"target {error.args[0]} does not exist",
                    hint=hint,
                ) from None
            with self._outputs_lock:
                self._outputs[upstream] = value
            return value


class TaskExitError(Exception):
    """A task called `sys.exit()`."""


def _as_failure(error: BaseException) -> BaseException:
    if isinstance(error, SystemExit):
        failure = TaskExitError(
            f"the task called sys.exit({error.code!r}); return from run() or raise "
            "an exception instead"
        )
        failure.__traceback__ = error.__traceback__
        return failure
    return error
