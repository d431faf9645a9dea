"""Agent files: rendering, validation, and resolving `env` at run time.

An agent file is YAML, rendered with Jinja first when it contains template tags
(the functions of `prism.project.templating`), with one top-level key, `agent`.
The agent's name is the file name up to its first dot: `nightly.docker.yml` is
`nightly`.

`env` values may take text from the client's environment, as `${NAME}` or
`{{ env('NAME') }}`. Either way the value lives only in memory: it is passed to
the agent's process when a run starts, and Prism never writes it into an image,
a file on the agent, the state database or a log line.

Validation uses the pydantic schema in `prism.agents.schema`. The validated
settings are cached in the state database under a digest of the rendered file
with its `env` values left out, so an unchanged file is not validated again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prism.agents.settings import AGENT_TYPES, AgentSettings
from prism.agents.state import State
from prism.errors import ConfigError

__all__ = [
    "AgentConfig",
    "agent_name",
    "load_agent_file",
    "resolve_env",
    "secret_values",
]

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class AgentConfig:
    """A validated agent file."""

    name: str
    path: Path
    spec: AgentSettings
    secrets: frozenset[str]

    @property
    def type(self) -> str:
        return self.spec.type

    @property
    def requirements_path(self) -> Path | None:
        if self.spec.requirements is None:
            return None
        return (self.path.parent / self.spec.requirements).resolve()

    def fingerprint(self, *parts: str) -> str:
        """Hash everything that shapes the environment; `env` is left out."""
        settings = self.spec.to_cache()
        for key in ("artifacts", "timeout"):
            settings.pop(key)
        requirements = self.requirements_path
        text = requirements.read_text(encoding="utf-8") if requirements else ""
        payload = json.dumps([settings, text, *parts], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def fingerprint_of_requirements(self, *parts: str) -> str:
        """Hash only what shapes a virtual environment: requirements and `parts`."""
        requirements = self.requirements_path
        text = requirements.read_text(encoding="utf-8") if requirements else ""
        payload = json.dumps([text, *parts])
        return hashlib.sha256(payload.encode()).hexdigest()


def agent_name(path: Path) -> str:
    """Return the agent's name: the file name up to its first dot."""
    return path.name.split(".", 1)[0]


def load_agent_file(
    path: Path, state: State | None = None, *, need_env: bool = True
) -> AgentConfig:
    """Render, parse and validate an agent file.

    With `state`, settings validated before for the same rendered file are read
    from it, and newly validated settings are stored in it. With `need_env`
    False (status, delete), an unset variable in `{{ env('NAME') }}` renders as
    an empty string instead of failing, since those commands use no env value.

    Raises:
        ConfigError: the file is missing or invalid; the message names the file and
            the key, never a value that came from the environment.
    """
    path = path.resolve()
    data, secrets = _render(path, need_env=need_env)
    _check_top_level(path, data)
    agent = data["agent"]

    digest = _digest(data)
    settings = None
    env = agent.get("env") or {}
    if state is not None and isinstance(env, dict) and _all_scalars(env.values()):
        cached = state.validated_settings(digest)
        if cached is not None:
            settings = AgentSettings.from_cache(cached, env)
    if settings is None:
        from prism.agents.schema import validate_agent

        settings = validate_agent(path, data)
        if state is not None:
            state.save_validated_settings(digest, settings.to_cache())

    config = AgentConfig(
        name=agent_name(path), path=path, spec=settings, secrets=frozenset(secrets)
    )
    requirements = config.requirements_path
    if requirements is not None and not requirements.is_file():
        raise ConfigError(
            f"{path}: agent.requirements: {requirements} does not exist",
            hint="The path is relative to the agent file; create the file or fix "
            "the path.",
        )
    return config


def _render(path: Path, *, need_env: bool) -> tuple[dict[str, Any], set[str]]:
    if not path.is_file():
        raise ConfigError(f"Agent file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path} is not UTF-8 text (invalid byte at position {error.start})",
            hint="Save the agent file as UTF-8.",
        ) from None
    secrets: set[str] = set()
    if "{{" not in text and "{%" not in text:
        from prism.project.templating import parse_yaml

        return parse_yaml(path, text), secrets

    def record_env(name: str, default: str | None = None) -> str:
        value = os.environ.get(name, default)
        if value is None and not need_env:
            return ""
        if value is None:
            raise ConfigError(
                f"{path} uses the environment variable {name}, which is not set",
                hint=f"Set {name} before running prism, or give a default: "
                f"env('{name}', 'default').",
            )
        if name in os.environ:
            secrets.add(value)
        return value

    from prism.project.templating import render_yaml_file

    data = render_yaml_file(path, extra={"env": record_env, "env_var": record_env})
    return data, secrets


def _check_top_level(path: Path, data: dict[str, Any]) -> None:
    if "agent" not in data:
        raise ConfigError(
            f"{path}: the top-level key 'agent' is missing",
            hint="Start the file with `agent:` and give it a `type`, e.g. "
            "`type: venv`.",
        )
    if not isinstance(data["agent"], dict):
        raise ConfigError(f"{path}: 'agent' must be a mapping of settings")
    agent_type = data["agent"].get("type")
    if agent_type is None:
        raise ConfigError(
            f"{path}: agent.type is missing",
            hint=f"Set it to one of: {', '.join(AGENT_TYPES)}.",
        )


def _digest(data: dict[str, Any]) -> str:
    # Env values may be secrets, so only their keys enter the digest. The schema
    # version ties the cache to the code that validated it.
    from prism.agents.deps import prism_source_hash

    agent = dict(data["agent"])
    env = agent.get("env")
    if isinstance(env, dict):
        agent["env"] = {key: type(value).__name__ for key, value in env.items()}
    payload = json.dumps(
        [{**data, "agent": agent}, prism_source_hash()], sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _all_scalars(values: Any) -> bool:
    return all(isinstance(value, _SCALARS) for value in values)


def resolve_env(
    config: AgentConfig, environ: dict[str, str] | None = None
) -> dict[str, str]:
    """Return `env` with `${NAME}` references replaced from the client's environment.

    Raises:
        ConfigError: a referenced variable is not set and has no `${NAME:-default}`.
    """
    source = os.environ if environ is None else environ
    resolved: dict[str, str] = {}
    for key, value in config.spec.env.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)

        def replace(match: re.Match[str], key: str = key) -> str:
            name, default = match.group(1), match.group(2)
            value = source.get(name)
            if default is not None:
                # As in a POSIX shell, `:-` also replaces a variable that is empty.
                return value or default
            if value is not None:
                return value
            raise ConfigError(
                f"{config.path}: agent.env.{key} refers to ${{{name}}}, which is not "
                "set",
                hint=f"Set {name} in the environment, or give a default: "
                f"${{{name}:-default}}.",
            )

        resolved[key] = _VARIABLE.sub(replace, text)
    return resolved


def secret_values(
    config: AgentConfig, environ: dict[str, str] | None = None
) -> frozenset[str]:
    """Return the values to mask in output: every value taken from the environment.

    That is each variable that `${NAME}` or `{{ env('NAME') }}` read, but not a
    `${NAME:-default}` default. Values shorter than three characters are left
    out, because masking them would garble ordinary output without hiding
    anything worth hiding.
    """
    source = os.environ if environ is None else environ
    values = set(config.secrets)
    for value in config.spec.env.values():
        if isinstance(value, str):
            for match in _VARIABLE.finditer(value):
                if match.group(1) in source:
                    values.add(source[match.group(1)])
    return frozenset(value for value in values if len(value) >= 3)
