"""Running one task: importing its module, calling it, saving and reading targets."""

from __future__ import annotations

import importlib.util
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from prism.decorators import TARGETS_ATTRIBUTE, TASK_ATTRIBUTE, TargetSpec, TaskOptions
from prism.engine.events import ErrorInfo
from prism.engine.parser import ModuleSpec, TaskSpec
from prism.errors import TaskError
from prism.task import PrismTask

__all__ = [
    "MISSING",
    "current_task",
    "running_tasks",
    "set_current_task",
    "Attempt",
    "LoadedTask",
    "ModuleLoader",
    "describe_error",
    "load_targets",
    "run_attempt",
]

_current = threading.local()
_running: dict[int, str] = {}


def current_task() -> str | None:
    """Return the id of the task the calling thread is running, if any."""
    return getattr(_current, "task", None)


def running_tasks() -> list[str]:
    """Return the ids of the tasks running in any thread right now."""
    return list(_running.values())


def set_current_task(task_id: str | None) -> None:
    """Record which task the calling thread runs, or None when it finished."""
    _current.task = task_id
    if task_id is None:
        _running.pop(threading.get_ident(), None)
    else:
        _running[threading.get_ident()] = task_id


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class LoadedTask:
    """A task's callable object with its run settings, read after its module ran."""

    spec: TaskSpec
    obj: Any
    targets: tuple[TargetSpec, ...]
    retries: int
    retry_delay: float


class ModuleLoader:
    """Imports task modules once each, on first use, from any thread."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._modules: dict[str, ModuleType | BaseException] = {}

    def load(self, spec: TaskSpec, module: ModuleSpec) -> LoadedTask:
        loaded = self._import(module)
        obj = getattr(loaded, spec.name, None)
        if obj is None:
            raise TaskError(
                f"Task {spec.id}: {module.file} no longer defines {spec.name} when it "
                "runs",
                hint="Define the task unconditionally at the top level of the module.",
            )
        return _describe_task(spec, obj)

    def _import(self, module: ModuleSpec) -> ModuleType:
        with self._lock:
            cached = self._modules.get(module.name)
            if cached is None:
                cached = self._exec_module(module)
                self._modules[module.name] = cached
        if isinstance(cached, BaseException):
            raise cached
        return cached

    def _exec_module(self, module: ModuleSpec) -> ModuleType | BaseException:
        # Modules are named after their path under tasks/, as `tasks.extract.a`,
        # and registered in sys.modules so pickling and dataclasses can find them.
        name = "tasks." + module.name.replace("/", ".")
        spec = importlib.util.spec_from_file_location(name, module.path)
        assert spec is not None and spec.loader is not None
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        try:
            spec.loader.exec_module(loaded)
        except Exception as error:
            sys.modules.pop(name, None)
            return error
        return loaded


def _describe_task(spec: TaskSpec, obj: Any) -> LoadedTask:
    if spec.kind == "class":
        if not (isinstance(obj, type) and issubclass(obj, PrismTask)):
            raise TaskError(f"Task {spec.id} is not a PrismTask subclass when it runs")
        targets = tuple(getattr(obj.run, TARGETS_ATTRIBUTE, ()))
        return LoadedTask(
            spec=spec,
            obj=obj,
            targets=targets,
            retries=_as_number(getattr(obj, "RETRIES", 0), "RETRIES", spec),
            retry_delay=_as_number(
                getattr(obj, "RETRY_DELAY_SECONDS", 0), "RETRY_DELAY_SECONDS", spec
            ),
        )
    options: TaskOptions = getattr(obj, TASK_ATTRIBUTE, TaskOptions())
    targets = options.targets + tuple(getattr(obj, TARGETS_ATTRIBUTE, ()))
    return LoadedTask(
        spec=spec,
        obj=obj,
        targets=targets,
        retries=_as_number(options.retries, "retries", spec),
        retry_delay=_as_number(
            options.retry_delay_seconds, "retry_delay_seconds", spec
        ),
    )


def _as_number(value: Any, name: str, spec: TaskSpec) -> Any:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise TaskError(
            f"Task {spec.id}: {name} must be a non-negative number, not {value!r}"
        )
    return value


@dataclass(frozen=True)
class Attempt:
    """The result of one call of a task."""

    status: Literal["done", "skipped"]
    output: Any
    written: tuple[str, ...] = ()


def run_attempt(
    task: LoadedTask, tasks_api: Any, hooks: Any, *, full_refresh: bool
) -> Attempt:
    """Call the task once and save its result to its targets.

    A class task whose `done()` returns True is skipped: its output is read from
    its targets, or is missing when it has none.
    """
    if task.spec.kind == "class":
        instance = task.obj()
        instance.tasks = tasks_api
        instance.hooks = hooks
        if not full_refresh and instance.done(tasks_api, hooks):
            output = load_targets(task.targets, hooks) if task.targets else MISSING
            return Attempt(status="skipped", output=output)
        result = instance.run(tasks_api, hooks)
    else:
        result = task.obj(tasks_api, hooks)
    output = _save_targets(task, result, hooks)
    written = tuple(str(Path(target.loc).resolve()) for target in task.targets)
    return Attempt(status="done", output=output, written=written)


def _save_targets(task: LoadedTask, result: Any, hooks: Any) -> Any:
    targets = task.targets
    if not targets:
        return result
    if len(targets) == 1:
        return _save_one(targets[0], result, hooks, task.spec)
    if not isinstance(result, (tuple, list)) or len(result) != len(targets):
        count = len(result) if isinstance(result, (tuple, list)) else 1
        raise TaskError(
            f"Task {task.spec.id} declares {len(targets)} targets but returned "
            f"{count} value(s)",
            hint="Return a tuple with one value per target, in the order the "
            "targets are declared.",
        )
    return tuple(
        _save_one(spec, value, hooks, task.spec)
        for spec, value in zip(targets, result, strict=True)
    )


def _save_one(target: TargetSpec, value: Any, hooks: Any, spec: TaskSpec) -> Any:
    location = Path(target.loc)
    if not target.iterator:
        location.parent.mkdir(parents=True, exist_ok=True)
        target.type(value, target.loc, hooks).save(**target.kwargs)
        return value
    if not isinstance(value, dict):
        raise TaskError(
            f"Task {spec.id} uses target_iterator, so it must return a dict of "
            f"{{name: object}}, not {type(value).__name__}"
        )
    location.mkdir(parents=True, exist_ok=True)
    for name, item in value.items():
        target.type(item, location / str(name), hooks).save(**target.kwargs)
    return target.loc


def load_targets(targets: tuple[TargetSpec, ...], hooks: Any) -> Any:
    """Read a task's output back from its targets; several targets give a tuple.

    Raises:
        FileNotFoundError: a target's file does not exist.
    """
    values = []
    for target in targets:
        if not Path(target.loc).exists():
            raise FileNotFoundError(target.loc)
        values.append(
            target.loc if target.iterator else target.type.open(target.loc, hooks)
        )
    return values[0] if len(values) == 1 else tuple(values)


def describe_error(error: BaseException, root: Path) -> ErrorInfo:
    """Summarise an exception, pointing at the innermost line in the project's files."""
    frames = traceback.extract_tb(error.__traceback__)
    file = line = None
    root_text = str(root) + "/"
    for frame in frames:
        if frame.filename.startswith(root_text):
            file = frame.filename[len(root_text) :]
            line = frame.lineno
    if isinstance(error, SyntaxError) and error.filename and file is None:
        file, line = error.filename, error.lineno
    return ErrorInfo(
        type=type(error).__name__,
        message=str(error),
        file=file,
        line=line,
        traceback="".join(traceback.format_exception(error)),
    )
