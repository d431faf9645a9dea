"""Adding a template adapter to profile.yml, for `prism connect --type T`.

The file is edited as text, never loaded and dumped again, so its comments, its
formatting, its other profiles and its Jinja (a `jinja:` block, `{{ env(...) }}`)
stay as they were. The edited text is parsed again before it is written, and a
file this module cannot edit safely is left alone with an error.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prism.connectors.base import ADAPTER_TYPES
from prism.errors import ConfigError

__all__ = ["Added", "TEMPLATES", "add_adapter"]

DEFAULT_PROFILE = "default"

# Template settings for each adapter type, as YAML lines below the adapter's name.
# Empty values are placeholders: a run stops with "no value given" until they are
# filled in.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "postgres": (
        "type: postgres",
        "host: localhost",
        "port: 5432",
        "database:",
        "user:",
        "password: \"{{ env('POSTGRES_PASSWORD') }}\"",
        "autocommit: true",
    ),
    "redshift": (
        "type: redshift",
        "host:",
        "port: 5439",
        "database:",
        "user:",
        "password: \"{{ env('REDSHIFT_PASSWORD') }}\"",
        "autocommit: true",
    ),
    "sqlite": ("type: sqlite", "database: data.sqlite"),
    "duckdb": ("type: duckdb", "database: data.duckdb"),
    "sqlalchemy": (
        "type: sqlalchemy",
        "url: \"{{ env('DATABASE_URL') }}\"  # dialect+driver://user:password@host/db",
    ),
    "snowflake": (
        "type: snowflake",
        "account:",
        "user:",
        "password: \"{{ env('SNOWFLAKE_PASSWORD') }}\"",
        "role:",
        "warehouse:",
        "database:",
        "schema:",
    ),
    "bigquery": ("type: bigquery", "creds:  # path to a service-account key file"),
    "trino": (
        "type: trino",
        "host:",
        "port: 443",
        "http_scheme: https",
        "user:",
        "password: \"{{ env('TRINO_PASSWORD') }}\"",
        "catalog:",
        "schema:",
    ),
    "presto": (
        "type: presto",
        "host:",
        "port: 443",
        "http_scheme: https",
        "user:",
        "password: \"{{ env('PRESTO_PASSWORD') }}\"",
        "catalog:",
        "schema:",
    ),
    "pyspark": (
        "type: pyspark",
        "alias: spark",
        "loglevel: WARN",
        "config:",
        "  spark.driver.memory: 1g",
    ),
    "dbt": (
        "type: dbt",
        "project_dir:  # folder with dbt_project.yml",
        "profiles_dir:  # folder with profiles.yml",
        "profiles_target:",
    ),
}

_TOP_KEY = re.compile(
    r"^(?P<key>[^\s#:'\"{}\[\]][^:#]*?|'[^']*'|\"[^\"]*\"):(?P<rest>.*)$"
)
_CHILD_KEY = re.compile(r"^(?P<indent> +)(?P<key>[^\s#:][^:#]*?):(?P<rest>.*)$")
_EMPTY_VALUE = re.compile(r"^\s*(\{\s*\}|null|~)?\s*(#.*)?$")


@dataclass(frozen=True)
class Added:
    """The adapter `prism connect` added, and where."""

    path: Path
    profile: str
    adapter: str
    created_file: bool


def add_adapter(path: Path, profile: str, adapter_type: str, label: str) -> Added:
    """Add a template adapter of `adapter_type` to `profile` in the file `path`.

    A missing file is created. The new adapter is named after its type, with a
    number when the profile already has one of that name (`postgres_2`).

    Raises:
        ConfigError: the type is unknown, or the file cannot be edited safely.
    """
    if adapter_type not in TEMPLATES:
        raise ConfigError(f"unknown adapter type {adapter_type!r}")
    if not path.exists():
        name = adapter_type
        text = _new_file(profile or DEFAULT_PROFILE, name, adapter_type)
        _write(path, text)
        return Added(path, profile or DEFAULT_PROFILE, name, created_file=True)
    original = path.read_text(encoding="utf-8")
    lines = original.splitlines()
    profile = profile or _only_profile(lines, label)
    existing = _adapter_names(lines, profile)
    name = _free_name(adapter_type, existing)
    edited = _insert(lines, profile, name, adapter_type, label)
    text = "\n".join(edited) + "\n"
    _verify(text, path, profile, name, adapter_type, label)
    _write(path, text)
    return Added(path, profile, name, created_file=False)


def _new_file(profile: str, name: str, adapter_type: str) -> str:
    lines = [f"{profile}:", "  adapters:", *_adapter_block(name, adapter_type, 4, 2)]
    return "\n".join(lines) + "\n"


def _adapter_block(name: str, adapter_type: str, indent: int, step: int) -> list[str]:
    pad = " " * indent
    inner = " " * (indent + step)
    return [f"{pad}{name}:", *(f"{inner}{line}" for line in TEMPLATES[adapter_type])]


def _free_name(adapter_type: str, existing: set[str]) -> str:
    if adapter_type not in existing:
        return adapter_type
    number = 2
    while f"{adapter_type}_{number}" in existing:
        number += 1
    return f"{adapter_type}_{number}"


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _unquote(key: str) -> str:
    key = key.strip()
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "'\"":
        return key[1:-1]
    return key


def _top_level_keys(lines: list[str]) -> list[tuple[int, str, str]]:
    keys = []
    for index, line in enumerate(lines):
        if not _is_content(line) or line[0] in " \t-":
            continue
        match = _TOP_KEY.match(line)
        if match:
            keys.append((index, _unquote(match["key"]), match["rest"]))
    return keys


def _only_profile(lines: list[str], label: str) -> str:
    profiles = [key for _, key, _ in _top_level_keys(lines) if key != "jinja"]
    if len(profiles) == 1:
        return profiles[0]
    raise ConfigError(
        f"PROFILE is not set in prism_project.py, and {label} has "
        f"{len(profiles)} profiles",
        hint="Set PROFILE (or pass -v PROFILE=NAME) to the profile to add to.",
    )


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """Return the index after the last content line indented deeper than `indent`
    that follows `start`."""
    end = start + 1
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if not _is_content(line):
            continue
        if _indent(line) <= indent:
            break
        end = index + 1
    return end


def _find_profile(lines: list[str], profile: str) -> tuple[int, str] | None:
    for index, key, rest in _top_level_keys(lines):
        if key == profile:
            return index, rest
    return None


def _find_child(
    lines: list[str], start: int, end: int, parent_indent: int, key: str
) -> tuple[int, int, str] | None:
    child_indent = None
    for index in range(start + 1, end):
        line = lines[index]
        if not _is_content(line):
            continue
        if child_indent is None:
            child_indent = _indent(line)
        if _indent(line) != child_indent:
            continue
        match = _CHILD_KEY.match(line)
        if match and _unquote(match["key"]) == key:
            return index, child_indent, match["rest"]
    return None


def _adapter_names(lines: list[str], profile: str) -> set[str]:
    found = _find_profile(lines, profile)
    if found is None:
        return set()
    start, _ = found
    end = _block_end(lines, start, 0)
    adapters = _find_child(lines, start, end, 0, "adapters")
    if adapters is None:
        return set()
    index, indent, _ = adapters
    names = set()
    adapters_end = _block_end(lines, index, indent)
    child_indent = None
    for line in lines[index + 1 : adapters_end]:
        if not _is_content(line):
            continue
        child_indent = child_indent or _indent(line)
        match = _CHILD_KEY.match(line)
        if _indent(line) == child_indent and match:
            names.add(_unquote(match["key"]))
    return names


def _insert(
    lines: list[str], profile: str, name: str, adapter_type: str, label: str
) -> list[str]:
    found = _find_profile(lines, profile)
    if found is None:
        block = [
            f"{profile}:",
            "  adapters:",
            *_adapter_block(name, adapter_type, 4, 2),
        ]
        spacer = [""] if lines and lines[-1].strip() else []
        return [*lines, *spacer, *block]
    start, rest = found
    _require_block_value(rest, label, profile)
    if rest.strip() and not rest.strip().startswith("#"):
        lines = [*lines[:start], f"{profile}:", *lines[start + 1 :]]
    end = _block_end(lines, start, 0)
    step = _indent_step(lines, start, end)
    adapters = _find_child(lines, start, end, 0, "adapters")
    if adapters is None:
        block = [
            f"{' ' * step}adapters:",
            *_adapter_block(name, adapter_type, 2 * step, step),
        ]
        return [*lines[:end], *block, *lines[end:]]
    index, indent, adapters_rest = adapters
    _require_block_value(adapters_rest, label, f"{profile}.adapters")
    if adapters_rest.strip() and not adapters_rest.strip().startswith("#"):
        lines = [*lines[:index], f"{' ' * indent}adapters:", *lines[index + 1 :]]
    adapters_end = _block_end(lines, index, indent)
    child = _first_child_indent(lines, index, adapters_end) or indent + step
    block = _adapter_block(
        name, adapter_type, child, _settings_step(lines, index, child) or step
    )
    return [*lines[:adapters_end], *block, *lines[adapters_end:]]


def _settings_step(lines: list[str], adapters: int, child: int) -> int | None:
    """Return how much deeper the first existing adapter indents its settings."""
    for start in range(adapters + 1, len(lines)):
        if _is_content(lines[start]) and _indent(lines[start]) == child:
            end = _block_end(lines, start, child)
            inner = _first_child_indent(lines, start, end)
            return inner - child if inner and inner > child else None
    return None


def _require_block_value(rest: str, label: str, key_path: str) -> None:
    if not _EMPTY_VALUE.match(rest):
        raise ConfigError(
            f"{label}: {key_path}: written on one line (flow style), which "
            "`prism connect` cannot edit",
            hint="Write the mapping in block style, one key per line, or add the "
            "adapter by hand.",
        )


def _indent_step(lines: list[str], start: int, end: int) -> int:
    indent = _first_child_indent(lines, start, end)
    return indent if indent else 2


def _first_child_indent(lines: list[str], start: int, end: int) -> int | None:
    for line in lines[start + 1 : end]:
        if _is_content(line):
            return _indent(line)
    return None


def _verify(
    text: str, path: Path, profile: str, name: str, adapter_type: str, label: str
) -> None:
    data = _parse_leniently(text, path, label)
    body = data.get(profile) if isinstance(data, dict) else None
    adapters = body.get("adapters") if isinstance(body, dict) else None
    adapter = adapters.get(name) if isinstance(adapters, dict) else None
    if not isinstance(adapter, dict) or adapter.get("type") != adapter_type:
        raise ConfigError(
            f"{label}: could not add the adapter {name!r} to profile {profile!r} "
            "without changing the rest of the file; the file is unchanged",
            hint="Add the adapter by hand; `prism connect` writes these keys:\n"
            + "\n".join(_adapter_block(name, adapter_type, 4, 2)),
        )


def _parse_leniently(text: str, path: Path, label: str) -> Any:
    import jinja2
    import yaml

    def placeholder(*args: Any, **kwargs: Any) -> str:
        return "placeholder"

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path.parent)),
        undefined=jinja2.ChainableUndefined,
    )
    names = ("env", "env_var", "wkdir", "parent", "concat")
    context: dict[str, Any] = dict.fromkeys(names, placeholder)
    context.update({"Path": Path, "__file__": str(path), "prism_project": None})
    try:
        rendered = environment.from_string(text).render(context)
        return yaml.safe_load(rendered)
    except (jinja2.TemplateError, yaml.YAMLError, TypeError, AttributeError):
        raise ConfigError(
            f"{label}: the file is not valid YAML after adding the adapter; the "
            "file is unchanged",
            hint="Check that the file itself is valid, then try again.",
        ) from None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def known_types() -> list[str]:
    """Return the adapter types `prism connect` has templates for."""
    return sorted(set(TEMPLATES) & set(ADAPTER_TYPES))
