"""Rendering YAML files (triggers, profiles, agents) with Jinja before parsing them.

The functions available in templates are those of Prism 0.2.x: `env('X')`,
`wkdir()`, `parent(p)`, `concat(a, b)`, `Path(s)`, `__file__` and `prism_project`.
Error messages name the file and line but never quote the rendered text, because
it may contain secrets taken from the environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from prism.errors import ConfigError

__all__ = ["parse_yaml", "render_yaml_file"]


def render_yaml_file(
    path: Path, *, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Render `path` with Jinja, parse it as YAML and return the mapping.

    An empty file gives an empty dict.

    Raises:
        ConfigError: the file is missing, is not valid Jinja or YAML, refers to an
            unset environment variable, or is not a mapping.
    """
    if not path.is_file():
        raise ConfigError(f"{path} does not exist")
    rendered = _render(path, extra or {})
    return parse_yaml(path, rendered)


def parse_yaml(path: Path, text: str) -> dict[str, Any]:
    """Parse `text`, read from `path`, as a YAML mapping; empty text gives {}.

    Raises:
        ConfigError: the text is not valid YAML or not a mapping.
    """
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(
            f"{where}: {problem}", hint="Fix the YAML syntax at that line."
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must contain a mapping of keys to values, not "
            f"{type(data).__name__}"
        )
    return data


class _UnsetVariable(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise _UnsetVariable(name)
    return value


def _render(path: Path, extra: dict[str, Any]) -> str:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path.parent)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    context: dict[str, Any] = {
        "env": _env,
        "env_var": _env,
        "wkdir": lambda: str(path.parent),
        "parent": lambda value: str(Path(value).parent),
        "concat": lambda first, second: f"{first}{second}",
        "Path": Path,
        "__file__": str(path),
        "prism_project": sys.modules.get("prism_project"),
        **extra,
    }
    try:
        template = environment.from_string(path.read_text(encoding="utf-8"))
        return template.render(context)
    except _UnsetVariable as error:
        raise ConfigError(
            f"{path} uses the environment variable {error.name}, which is not set",
            hint=f"Set {error.name} in the environment, or give a default: "
            f"env('{error.name}', 'default').",
        ) from None
    except jinja2.TemplateSyntaxError as error:
        raise ConfigError(
            f"{path}:{error.lineno}: invalid template: {error.message}"
        ) from None
    except jinja2.TemplateError as error:
        raise ConfigError(f"{path}: template error: {error}") from None
