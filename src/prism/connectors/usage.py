"""Checking, before any task runs, that the adapters tasks name are in the profile.

Only calls written literally are checked: `hooks.sql("name", ...)`,
`hooks.get_connection("name")`, `hooks.get_cursor("name")` and
`hooks.dbt_ref("name", ...)`, also as `self.hooks.<call>`. A name computed at run
time is checked when the call runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

from prism.connectors.hooks import not_configured_hint, not_configured_message
from prism.connectors.profile import Profile
from prism.errors import ConfigError

__all__ = ["check_adapter_names"]

ADAPTER_CALLS = frozenset({"sql", "get_connection", "get_cursor", "dbt_ref"})


def check_adapter_names(profile: Profile, sources: Iterable[tuple[Path, str]]) -> None:
    """Raise ConfigError for the first literal adapter name not in `profile`.

    `sources` are (path, label) pairs of task modules; the label names the file
    in the message. Without a profile file nothing is checked: tasks that use
    `hooks` then fail when they run, and a project that does not is fine.
    """
    if profile.path is None or not profile.path.is_file() or not profile.name:
        return
    for path, label in sources:
        try:
            source = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if "hooks" not in source:
            continue
        for call, name, line in _adapter_calls(source):
            if name in profile.adapters:
                continue
            message = not_configured_message(profile, name, f"hooks.{call}")
            raise ConfigError(
                f"{label}:{line}: {message}",
                hint=not_configured_hint(profile, name),
            )


def _adapter_calls(source: str) -> list[tuple[str, str, int]]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if not (
            isinstance(function, ast.Attribute)
            and function.attr in ADAPTER_CALLS
            and _is_hooks(function.value)
        ):
            continue
        name = _adapter_argument(node)
        if name is not None:
            found.append((function.attr, name, node.lineno))
    return found


def _is_hooks(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "hooks"
    return isinstance(node, ast.Attribute) and node.attr == "hooks"


def _adapter_argument(call: ast.Call) -> str | None:
    argument: ast.expr | None = call.args[0] if call.args else None
    for keyword in call.keywords:
        if keyword.arg == "adapter_name":
            argument = keyword.value
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return argument.value
    return None
