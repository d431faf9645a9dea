"""Loading and validating profile.yml, the file that configures `hooks`' adapters.

The shape is that of Prism 0.2.x:

    jinja:                      # optional: `{% set %}` lines for the rest of the file
      - "{% set root = wkdir() %}"
    PROFILE_NAME:
      adapters:
        ADAPTER_NAME:
          type: postgres
          ...

`prism_project.PROFILE` selects one profile. Everything is checked before any task
runs; errors name the file and the key path (`profile.yml: dev.adapters.pg.port`)
and never a value, because values may be secrets.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from prism.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from prism.connectors.base import Adapter, AdapterContext, AdapterSettings

__all__ = [
    "AdapterEntry",
    "Profile",
    "SECRET_KEYS",
    "default_profile_path",
    "load_profile",
]

logger = logging.getLogger(__name__)

JINJA_KEY = "jinja"
PROFILE_KEYS = ("adapters",)

# Keys whose values are masked in output even when written literally in the file.
SECRET_KEYS = frozenset({"password", "private_key", "token"})

_MISSING_MARKER = "prism-unset-environment-variable-0b7f"


@dataclass(frozen=True)
class AdapterEntry:
    """One validated adapter of the selected profile, not yet created."""

    name: str
    cls: type[Adapter]
    settings: AdapterSettings
    context: AdapterContext


@dataclass(frozen=True)
class Profile:
    """The selected profile: its validated adapters, by name."""

    path: Path | None
    name: str
    label: str = "profile.yml"
    adapters: dict[str, AdapterEntry] = field(default_factory=dict)
    secrets: frozenset[str] = frozenset()


def default_profile_path(root: Path, profile_path: Path | None) -> Path:
    """Return `PROFILE_YML_PATH`, or `profile.yml` beside prism_project.py."""
    return profile_path if profile_path is not None else root / "profile.yml"


def load_profile(path: Path | None, name: str, *, root: Path | None = None) -> Profile:
    """Read, render and validate `path`, and return the profile called `name`.

    A missing file, or an empty `name`, gives a profile without adapters, as in
    Prism 0.2.x. Values rendered from the environment, and values of keys such as
    `password`, are registered with the console to be masked in all output.

    Raises:
        ConfigError: the file is not valid YAML or Jinja, uses an unset
            environment variable, has no profile `name`, or an adapter in it is
            invalid or needs a driver that is not installed.
    """
    if path is None or not path.is_file():
        if path is None:
            return Profile(path=path, name=name)
        logger.debug("No profile file at %s; hooks has no adapters", path)
        return Profile(path=path, name=name, label=_label(path, root))
    from prism.console.secrets import register_secret

    label = _label(path, root)
    data, secrets = _render(path, label)
    for secret in secrets:
        register_secret(secret)
    _check_top_level(data, label)
    if not name:
        logger.warning(
            "%s exists but PROFILE is not set in prism_project.py; its adapters "
            "are not used",
            label,
        )
        return Profile(path=path, name=name, label=label, secrets=secrets)
    adapters = _select_profile(data, name, label)
    entries = {
        adapter_name: _validate_adapter(path, label, name, adapter_name, raw)
        for adapter_name, raw in adapters.items()
    }
    literal = _literal_secrets(entries)
    for secret in literal:
        register_secret(secret)
    return Profile(
        path=path,
        name=name,
        label=label,
        adapters=entries,
        secrets=secrets | literal,
    )


def _label(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def _render(path: Path, label: str) -> tuple[dict[str, Any], frozenset[str]]:
    from prism.project.templating import render_yaml_file

    secrets: set[str] = set()
    missing: list[str] = []

    def env(name: str, default: str | None = None) -> str:
        value = os.environ.get(name)
        if value is not None:
            secrets.add(value)
            return value
        if default is not None:
            return str(default)
        missing.append(name)
        return _MISSING_MARKER

    try:
        data = render_yaml_file(path, extra={"env": env, "env_var": env})
    except ConfigError as error:
        raise ConfigError(
            _relabel(error.message, path, label), hint=error.hint
        ) from None
    if missing:
        where = _find_marker(data) or ""
        raise ConfigError(
            f"{label}: {where + ': ' if where else ''}the environment variable "
            f"{missing[0]} is not set",
            hint=f"Set {missing[0]} before running prism, or give a default: "
            f"env_var('{missing[0]}', 'default').",
        )
    return data, frozenset(secrets)


def _relabel(message: str, path: Path, label: str) -> str:
    return message.replace(str(path), label)


def _find_marker(value: Any, prefix: str = "") -> str | None:
    if isinstance(value, str):
        return prefix if _MISSING_MARKER in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _find_marker(item, f"{prefix}.{key}" if prefix else str(key))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_marker(item, f"{prefix}[{index}]")
            if found is not None:
                return found
    return None


def _check_top_level(data: dict[str, Any], label: str) -> None:
    jinja = data.get(JINJA_KEY)
    if jinja is not None and not isinstance(jinja, list):
        raise ConfigError(
            f"{label}: {JINJA_KEY}: must be a list of {{% set %}} lines",
            hint='Write it as jinja: ["{% set name = value %}", ...].',
        )


def _select_profile(data: dict[str, Any], name: str, label: str) -> dict[str, Any]:
    profiles = [str(key) for key in data if key != JINJA_KEY]
    if name not in data or name == JINJA_KEY:
        found = ", ".join(profiles) if profiles else "none"
        raise ConfigError(
            f"{label}: no profile named {name!r} (profiles in the file: {found})",
            hint=_did_you_mean(name, profiles)
            or "Set PROFILE in prism_project.py (or with -v PROFILE=NAME) to one "
            "of the file's top-level keys.",
        )
    body = data[name]
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ConfigError(
            f"{label}: {name}: must be a mapping with the key 'adapters'",
        )
    for key in body:
        if key not in PROFILE_KEYS:
            raise ConfigError(
                f"{label}: {name}.{key}: unknown key; a profile has only 'adapters'",
                hint=_did_you_mean(str(key), list(PROFILE_KEYS)),
            )
    adapters = body.get("adapters")
    if adapters is None:
        return {}
    if not isinstance(adapters, dict):
        raise ConfigError(
            f"{label}: {name}.adapters: must be a mapping of adapter names to settings"
        )
    return adapters


def _validate_adapter(
    path: Path, label: str, profile: str, adapter_name: Any, raw: Any
) -> AdapterEntry:
    # Imported here: pydantic and the adapter classes cost ~0.1 s, which a
    # project without a profile file should not pay.
    from prism.connectors.base import ADAPTER_TYPES, AdapterContext, adapter_class

    key_path = f"{profile}.adapters.{adapter_name}"
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{label}: {key_path}: must be a mapping of settings with a 'type'"
        )
    adapter_type = raw.get("type")
    if adapter_type is None:
        raise ConfigError(
            f"{label}: {key_path}.type: missing",
            hint=f"Set type to one of: {', '.join(sorted(ADAPTER_TYPES))}.",
        )
    if not isinstance(adapter_type, str) or adapter_type not in ADAPTER_TYPES:
        shown = adapter_type if isinstance(adapter_type, str) else ""
        raise ConfigError(
            f"{label}: {key_path}.type: unknown adapter type {shown!r}",
            hint=_did_you_mean(shown, list(ADAPTER_TYPES))
            or f"The types are: {', '.join(sorted(ADAPTER_TYPES))}.",
        )
    cls = adapter_class(adapter_type)
    raw = _drop_empty_optional(cls.settings_model, label, key_path, raw)
    settings = _parse_settings(cls.settings_model, raw, label, key_path)
    _check_driver(cls, adapter_type, label, key_path)
    context = AdapterContext(profile_path=path, file_label=label, key_path=key_path)
    cls.check(settings, context)
    return AdapterEntry(
        name=str(adapter_name), cls=cls, settings=settings, context=context
    )


def _drop_empty_optional(
    model: type[AdapterSettings], label: str, key_path: str, raw: dict[str, Any]
) -> dict[str, Any]:
    """Drop optional keys left empty (as 0.2.x templates do); reject empty
    required ones."""
    fields = {
        (field.alias or name): field for name, field in model.model_fields.items()
    }
    kept = {}
    for key, value in raw.items():
        field = fields.get(str(key))
        if value is None and field is not None:
            if field.is_required():
                raise ConfigError(
                    f"{label}: {key_path}.{key}: no value given",
                    hint="Fill in the value; this key is required.",
                )
            continue
        kept[key] = value
    return kept


def _parse_settings(
    model: type[AdapterSettings], raw: dict[str, Any], label: str, key_path: str
) -> AdapterSettings:
    from pydantic import ValidationError

    try:
        return model.model_validate(raw)
    except ValidationError as error:
        errors = error.errors(include_input=False, include_url=False)
        # A misspelt key also makes the right one missing; name the typo first.
        first = min(errors, key=lambda item: item["type"] != "extra_forbidden")
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(
            f"{label}: {key_path}.{where}: {_describe(first, model)}",
            hint=_settings_hint(first, model, where),
        ) from None


def _describe(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unknown key"
    return f"invalid value: {error['msg']}"


def _settings_hint(
    error: Mapping[str, Any], model: type[BaseModel], where: str
) -> str | None:
    keys = sorted(model.model_fields)
    if error["type"] == "extra_forbidden":
        suggestion = _did_you_mean(where, keys)
        listing = f"The keys are: {', '.join(keys)}."
        return f"{suggestion} {listing}" if suggestion else listing
    if error["type"] == "missing":
        return f"Add {where} to the adapter's settings."
    return None


def _check_driver(
    cls: type[Adapter], adapter_type: str, label: str, key_path: str
) -> None:
    from prism.connectors.base import DriverMissingError, install_hint

    for module in cls.driver_modules:
        if _module_exists(module):
            continue
        hint = f"Install it with: {install_hint(cls.extra)}" if cls.extra else None
        raise DriverMissingError(
            f"{label}: {key_path}: the {adapter_type} adapter needs the Python "
            f"package that provides {module!r}, which is not installed",
            hint=hint,
        )


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _literal_secrets(entries: dict[str, AdapterEntry]) -> frozenset[str]:
    values: set[str] = set()
    for entry in entries.values():
        for key in SECRET_KEYS:
            value = getattr(entry.settings, key, None)
            if value is None:
                continue
            values.add(_reveal(value))
        url = getattr(entry.settings, "url", None)
        if url is not None:
            password = urlsplit(_reveal(url)).password
            if password:
                values.add(unquote(password))
                values.add(password)
    return frozenset(values)


def _reveal(value: Any) -> str:
    secret = getattr(value, "get_secret_value", None)
    return str(secret() if callable(secret) else value)


def _did_you_mean(value: str, choices: list[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(value, choices, n=1)
    return f"Did you mean {matches[0]!r}?" if matches else None
