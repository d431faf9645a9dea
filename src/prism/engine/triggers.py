"""Triggers: functions from `triggers.yml` called after a run succeeds or fails.

The file is read and checked before any task runs, so a misconfigured trigger
stops the run with exit code 2 instead of surfacing after the work is done.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prism.engine.events import EventSink, TriggerFinished
from prism.engine.execution import describe_error
from prism.errors import ConfigError
from prism.project import Project

__all__ = ["Trigger", "TriggerPlan", "load_triggers", "run_triggers"]

logger = logging.getLogger(__name__)

_KEYS = ("include", "triggers")


@dataclass(frozen=True)
class Trigger:
    """One trigger: the dotted path of a function and its keyword arguments."""

    name: str
    function: str
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class TriggerPlan:
    """The triggers to call on success and on failure, and paths to import them from."""

    on_success: tuple[Trigger, ...] = ()
    on_failure: tuple[Trigger, ...] = ()
    include: tuple[Path, ...] = ()


def load_triggers(project: Project) -> TriggerPlan:
    """Read and check the triggers that `TRIGGERS` in prism_project.py names.

    Raises:
        ConfigError: the file is missing or invalid, or names an unknown trigger.
    """
    requested = {kind: names for kind, names in project.triggers.items() if names}
    if not requested:
        return TriggerPlan()

    from prism.project.templating import render_yaml_file

    path = project.triggers_path
    if not path.is_file():
        raise ConfigError(
            f"TRIGGERS in prism_project.py names triggers, but {path} does not exist",
            hint="Create it with `prism create trigger`, or set TRIGGERS_YML_PATH.",
        )
    data = render_yaml_file(path)
    for key in data:
        if key not in _KEYS:
            logger.warning("%s: unknown top-level key %r is ignored", path, key)
    definitions = data.get("triggers")
    if not isinstance(definitions, dict):
        raise ConfigError(
            f"{path}: the top-level key 'triggers' is missing or not a mapping",
            hint="Define triggers as `triggers: {name: {type: function, function: "
            "module.function}}`.",
        )
    include = tuple(_read_include(path, data.get("include")))
    plan = TriggerPlan(
        on_success=tuple(
            _read_trigger(path, name, definitions)
            for name in requested.get("on_success", ())
        ),
        on_failure=tuple(
            _read_trigger(path, name, definitions)
            for name in requested.get("on_failure", ())
        ),
        include=include,
    )
    _check_importable(path, plan)
    return plan


def _check_importable(path: Path, plan: TriggerPlan) -> None:
    # A trigger that cannot be imported would only fail after every task ran.
    for folder in plan.include:
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    for trigger in (*plan.on_success, *plan.on_failure):
        try:
            _import_function(trigger.function)
        except (ImportError, AttributeError) as error:
            raise ConfigError(
                f"{path}: trigger {trigger.name!r}: cannot import "
                f"{trigger.function} ({type(error).__name__}: {error})",
                hint="Check the dotted path, and that its module is in a folder "
                "listed under `include:` or in SYS_PATH_CONF.",
            ) from None


def _read_include(path: Path, value: Any) -> list[Path]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{path}: 'include' must be a list of folders")
    folders = []
    for item in value:
        folder = Path(str(item))
        folders.append(folder if folder.is_absolute() else path.parent / folder)
    return folders


def _read_trigger(path: Path, name: str, definitions: dict[str, Any]) -> Trigger:
    where = f"{path}: trigger {name!r}"
    spec = definitions.get(name)
    if spec is None:
        known = ", ".join(map(str, definitions)) or "none"
        raise ConfigError(
            f"{where} is named in TRIGGERS but not defined",
            hint=f"Defined triggers: {known}.",
        )
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping with type and function")
    kind = spec.get("type")
    if kind != "function":
        raise ConfigError(
            f"{where} has type {kind!r}; the only supported type is 'function'",
            hint="Write `type: function` and `function: package.module.function`.",
        )
    function = spec.get("function")
    if not isinstance(function, str) or "." not in function:
        raise ConfigError(
            f"{where}: 'function' must be a dotted import path such as "
            "'package.module.function'"
        )
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{where}: 'kwargs' must be a mapping")
    unknown = set(spec) - {"type", "function", "kwargs"}
    if unknown:
        raise ConfigError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    return Trigger(name=name, function=function, kwargs=kwargs)


def run_triggers(plan: TriggerPlan, when: str, sink: EventSink, root: Path) -> bool:
    """Call every trigger for `when`, even after one fails; return True if all pass."""
    triggers = plan.on_success if when == "on_success" else plan.on_failure
    for folder in plan.include:
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    passed = True
    for trigger in triggers:
        started = time.perf_counter()
        try:
            _import_function(trigger.function)(**trigger.kwargs)
        except Exception as error:
            passed = False
            sink(
                TriggerFinished(
                    name=trigger.name,
                    when=when,
                    status="failed",
                    duration=time.perf_counter() - started,
                    error=describe_error(error, root),
                )
            )
            continue
        sink(
            TriggerFinished(
                name=trigger.name,
                when=when,
                status="done",
                duration=time.perf_counter() - started,
            )
        )
    return passed


def _import_function(path: str) -> Callable[..., Any]:
    module_name, _, attribute = path.rpartition(".")
    module = importlib.import_module(module_name)
    function: Callable[..., Any] = getattr(module, attribute)
    return function
