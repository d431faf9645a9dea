"""Parsing `--vars KEY=VALUE` and `--context JSON` into project overrides."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from prism.errors import UsageError

__all__ = ["parse_context", "parse_vars"]


def parse_vars(values: Iterable[str]) -> dict[str, str]:
    """Turn `KEY=VALUE` strings into a dict; the value is all after the first `=`."""
    result: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(
                f"Invalid value for -v/--vars: {item!r} is not KEY=VALUE",
                hint="Write it as -v KEY=VALUE, e.g. -v START_DATE=2024-01-01.",
            )
        if not key.isidentifier():
            raise UsageError(
                f"Invalid value for -v/--vars: {key!r} is not a valid Python name",
                hint="Variables become attributes of prism_project, so use letters, "
                "digits and underscores.",
            )
        result[key] = value
    return result


def parse_context(text: str | None) -> dict[str, Any]:
    """Parse `--context`, which must be a JSON object."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"Invalid value for --context: not valid JSON ({error.msg} at "
            f"character {error.pos})",
            hint="Pass a JSON object, e.g. --context '{\"THREADS\": 4}'.",
        ) from error
    if not isinstance(value, dict):
        raise UsageError(
            f"Invalid value for --context: expected a JSON object, got "
            f"{type(value).__name__}",
            hint="Pass a JSON object, e.g. --context '{\"THREADS\": 4}'.",
        )
    return value
