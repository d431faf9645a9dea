"""Reading task modules statically: which tasks they define and what they refer to.

Nothing here runs project code. A task is either a top-level class whose direct
bases include `PrismTask` (or `something.PrismTask`), or a top-level function
decorated with `task` (or `something.decorators.task`), with or without
arguments. References are the calls written literally as `tasks.ref(...)` inside
the class or function, at any depth.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prism.errors import TaskDefinitionError

__all__ = ["ModuleSpec", "RefCall", "TaskSpec", "parse_module", "parse_tasks"]

TASK_PARAMETERS = frozenset({"tasks", "hooks"})
_REF_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/*."
)


@dataclass(frozen=True)
class RefCall:
    """One literal `tasks.ref(target, local)` call."""

    target: str
    local: bool
    line: int


@dataclass(frozen=True)
class TaskSpec:
    """A task as read from its module's source."""

    id: str
    module: str
    name: str
    kind: Literal["class", "function"]
    file: str
    line: int
    refs: tuple[RefCall, ...]
    target_locs: tuple[str, ...]
    has_targets: bool


@dataclass(frozen=True)
class ModuleSpec:
    """A task module: its name relative to `tasks/` without `.py`, and its tasks."""

    name: str
    path: Path
    file: str
    tasks: tuple[TaskSpec, ...]


def parse_tasks(tasks_dir: Path, root: Path) -> list[ModuleSpec]:
    """Parse every `*.py` file under `tasks_dir`, in sorted path order.

    Modules without tasks (helpers) are kept, with an empty `tasks`, so a syntax
    error in a helper is still reported before anything runs.
    """
    modules = []
    for path in _find_python_files(tasks_dir):
        name = path.relative_to(tasks_dir).with_suffix("").as_posix()
        file = path.relative_to(root).as_posix()
        source = path.read_text(encoding="utf-8")
        modules.append(parse_module(source, name=name, path=path, file=file))
    return modules


def _find_python_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda item: item.name):
            if entry.name.startswith(".") or entry.name == "__pycache__":
                continue
            if entry.is_dir():
                found.extend(_find_python_files(Path(entry.path)))
            elif entry.name.endswith(".py"):
                found.append(Path(entry.path))
    return found


def parse_module(source: str, *, name: str, path: Path, file: str) -> ModuleSpec:
    """Parse one task module's source.

    Raises:
        TaskDefinitionError: the source is not valid Python, or defines a task
            Prism cannot run.
    """
    try:
        tree = ast.parse(source, filename=file)
    except SyntaxError as error:
        raise TaskDefinitionError(
            f"Syntax error in {file}:{error.lineno}: {error.msg}",
            hint="Fix the line; every .py file under tasks/ is read before a run.",
        ) from None

    tasks = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and _is_task_class(node):
            tasks.append(_parse_class_task(node, module=name, file=file))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            decorator = _find_task_decorator(node)
            if decorator is not None:
                tasks.append(
                    _parse_function_task(node, decorator, module=name, file=file)
                )
    return ModuleSpec(name=name, path=path, file=file, tasks=tuple(tasks))


def _dotted_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted_name(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _is_task_class(node: ast.ClassDef) -> bool:
    return any(_dotted_name(base).split(".")[-1] == "PrismTask" for base in node.bases)


def _is_decorator_named(node: ast.expr, name: str) -> bool:
    callee = node.func if isinstance(node, ast.Call) else node
    dotted = _dotted_name(callee)
    return dotted == name or dotted.endswith(f"decorators.{name}")


def _find_task_decorator(
    node: ast.FunctionDef | ast.AsyncFunctionDef,
) -> ast.expr | None:
    for decorator in node.decorator_list:
        if _is_decorator_named(decorator, "task"):
            return decorator
    return None


def _parse_class_task(node: ast.ClassDef, *, module: str, file: str) -> TaskSpec:
    task_id = f"{module}.{node.name}"
    run = next(
        (
            item
            for item in node.body
            if isinstance(item, ast.FunctionDef) and item.name == "run"
        ),
        None,
    )
    if run is None:
        raise TaskDefinitionError(
            f"Task {task_id} in {file}:{node.lineno} has no run method",
            hint="Define `def run(self, tasks, hooks):` returning the task's output.",
        )
    _check_parameters(run, {"self", *TASK_PARAMETERS}, task_id, file)
    for attribute in ("RETRIES", "RETRY_DELAY_SECONDS"):
        _check_class_number(node, attribute, task_id, file)

    target_locs = tuple(
        loc
        for decorator in run.decorator_list
        if _is_decorator_named(decorator, "target")
        or _is_decorator_named(decorator, "target_iterator")
        for loc in [_keyword_source(decorator, "loc")]
        if loc is not None
    )
    return TaskSpec(
        id=task_id,
        module=module,
        name=node.name,
        kind="class",
        file=file,
        line=node.lineno,
        refs=_find_refs(node, task_id, file),
        target_locs=target_locs,
        has_targets=bool(target_locs),
    )


def _parse_function_task(
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    decorator: ast.expr,
    *,
    module: str,
    file: str,
) -> TaskSpec:
    task_id = f"{module}.{node.name}"
    if isinstance(node, ast.AsyncFunctionDef):
        raise TaskDefinitionError(
            f"Task {task_id} in {file}:{node.lineno} is an async function",
            hint="Define task functions with `def`, not `async def`.",
        )
    _check_parameters(node, set(TASK_PARAMETERS), task_id, file)

    target_locs: list[str] = []
    has_targets = False
    if isinstance(decorator, ast.Call):
        for keyword in decorator.keywords:
            if keyword.arg in ("retries", "retry_delay_seconds"):
                _check_number(keyword.value, keyword.arg, task_id, file)
            elif keyword.arg == "targets":
                has_targets = not _is_empty_literal(keyword.value)
                if isinstance(keyword.value, (ast.List, ast.Tuple)):
                    for element in keyword.value.elts:
                        loc = _keyword_source(element, "loc")
                        if loc is not None:
                            target_locs.append(loc)
    for other in node.decorator_list:
        if _is_decorator_named(other, "target") or _is_decorator_named(
            other, "target_iterator"
        ):
            has_targets = True
            loc = _keyword_source(other, "loc")
            if loc is not None:
                target_locs.append(loc)

    return TaskSpec(
        id=task_id,
        module=module,
        name=node.name,
        kind="function",
        file=file,
        line=node.lineno,
        refs=_find_refs(node, task_id, file),
        target_locs=tuple(target_locs),
        has_targets=has_targets,
    )


def _check_parameters(
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    expected: set[str],
    task_id: str,
    file: str,
) -> None:
    arguments = node.args
    names = [argument.arg for argument in (*arguments.posonlyargs, *arguments.args)]
    extra = arguments.vararg or arguments.kwarg or arguments.kwonlyargs
    if set(names) != expected or len(names) != len(expected) or extra:
        required = ", ".join(sorted(expected, key=["self", "tasks", "hooks"].index))
        found = ", ".join(names) or "none"
        raise TaskDefinitionError(
            f"Task {task_id} in {file}:{node.lineno}: {node.name}() must take the "
            f"parameters ({required}), not ({found})",
            hint="Prism passes `tasks` (to read upstream outputs) and `hooks` "
            "(databases, Spark) to every task.",
        )


def _check_class_number(
    node: ast.ClassDef, attribute: str, task_id: str, file: str
) -> None:
    for item in node.body:
        if isinstance(item, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == attribute
            for target in item.targets
        ):
            _check_number(item.value, attribute, task_id, file)


def _check_number(value: ast.expr, name: str, task_id: str, file: str) -> None:
    if not isinstance(value, ast.Constant):
        return
    number = value.value
    if isinstance(number, str) and number.strip().isdigit():
        return
    if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
        raise TaskDefinitionError(
            f"Task {task_id} in {file}:{value.lineno}: {name} must be a "
            f"non-negative number, not {number!r}",
            hint=f"Write it as a number, e.g. {name}=2.",
        )


def _is_empty_literal(value: ast.expr) -> bool:
    if isinstance(value, ast.Constant):
        return value.value is None
    if isinstance(value, (ast.List, ast.Tuple)):
        return not value.elts
    return False


def _keyword_source(node: ast.expr, name: str) -> str | None:
    if not isinstance(node, ast.Call):
        return None
    for keyword in node.keywords:
        if keyword.arg == name:
            return ast.unparse(keyword.value)
    return None


def _find_refs(node: ast.AST, task_id: str, file: str) -> tuple[RefCall, ...]:
    refs = []
    for child in ast.walk(node):
        if (
            isinstance(child, ast.Call)
            and isinstance(child.func, ast.Attribute)
            and child.func.attr == "ref"
            and isinstance(child.func.value, ast.Name)
            and child.func.value.id == "tasks"
        ):
            refs.append(_parse_ref(child, task_id, file))
    refs.sort(key=lambda ref: ref.line)
    return tuple(refs)


def _parse_ref(call: ast.Call, task_id: str, file: str) -> RefCall:
    where = f"{file}:{call.lineno}"
    arguments: dict[str, ast.expr] = dict(
        zip(("task", "local"), call.args[:2], strict=False)
    )
    if len(call.args) > 2:
        raise _ref_error(where, task_id, "takes at most two arguments (task, local)")
    for keyword in call.keywords:
        if keyword.arg not in ("task", "local") or keyword.arg in arguments:
            raise _ref_error(
                where, task_id, f"has an unexpected argument {keyword.arg!r}"
            )
        arguments[keyword.arg] = keyword.value

    target = arguments.get("task")
    if not (isinstance(target, ast.Constant) and isinstance(target.value, str)):
        raise _ref_error(
            where,
            task_id,
            "needs a string literal as the task, such as tasks.ref('extract')",
            hint="Prism reads references before running anything, so it cannot "
            "follow a variable or an expression.",
        )
    local = arguments.get("local")
    if local is not None and not (
        isinstance(local, ast.Constant) and isinstance(local.value, bool)
    ):
        raise _ref_error(where, task_id, "needs local=True or local=False literally")

    text = target.value.strip()
    bad = sorted(set(text) - _REF_CHARACTERS)
    if not text or bad:
        raise _ref_error(
            where,
            task_id,
            f"refers to {target.value!r}, which is not a task name",
            hint="Name a module ('extract'), a task in it ('extract.Load') or, with "
            "local=True, a task in the same module.",
        )
    return RefCall(
        target=text,
        local=bool(local.value) if isinstance(local, ast.Constant) else False,
        line=call.lineno,
    )


def _ref_error(
    where: str, task_id: str, problem: str, hint: str | None = None
) -> TaskDefinitionError:
    return TaskDefinitionError(
        f"tasks.ref in {where} (task {task_id}) {problem}", hint=hint
    )
