"""The `hooks` object passed to every task: the adapters of the selected profile.

Adapters are created, and connections opened, when a task first uses them, never
at start-up, so one unreachable database fails only the tasks that use it. SQL
adapters keep one connection per worker thread. `close()` closes every adapter
that was opened; the engine calls it at the end of every run.

After its first use, a value such as a pyspark adapter's SparkSession is stored as
an instance attribute (`hooks.<alias>`), so `vars(hooks)` contains it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prism.connectors.profile import Profile, default_profile_path, load_profile
from prism.errors import ConfigError, TaskError

if TYPE_CHECKING:
    from prism.connectors.base import Adapter, SqlAdapter
    from prism.project import Project

__all__ = ["AdapterNotConfiguredError", "Hooks"]

logger = logging.getLogger(__name__)


class AdapterNotConfiguredError(TaskError):
    """A task asked `hooks` for an adapter that the profile does not define."""


class Hooks:
    """Access to the databases and Spark sessions named in the project's profile."""

    def __init__(
        self,
        profile_path: Path | None = None,
        profile: str = "",
        *,
        root: Path | None = None,
        loaded: Profile | None = None,
    ) -> None:
        if loaded is None:
            loaded = load_profile(profile_path, profile, root=root)
        self._profile = loaded
        self._adapters: dict[str, Adapter] = {}
        self._lock = threading.Lock()
        self._attributes = _hook_attributes(loaded)

    @classmethod
    def for_project(cls, project: Project) -> Hooks:
        """Load and validate the profile that `project` selects."""
        explicit = project.profile_path
        # A missing file is allowed, as in 0.2.x: templates set the path
        # whether or not the project uses a database.
        if explicit is not None and explicit.is_dir():
            from prism.errors import ConfigError

            raise ConfigError(
                f"PROFILE_YML_PATH: {explicit} is a folder, not a profile file",
                hint="Point PROFILE_YML_PATH in prism_project.py (or -v) at the "
                "profile file, or remove it to use profile.yml beside "
                "prism_project.py.",
            )
        path = default_profile_path(project.root, explicit)
        return cls(path, project.profile, root=project.root)

    @property
    def profile(self) -> Profile:
        """The validated profile these hooks use."""
        return self._profile

    def sql(
        self,
        adapter_name: str,
        query: str,
        return_type: str | None = None,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
    ) -> Any:
        """Run `query` on `adapter_name` in its own cursor and return its rows.

        `return_type` None gives a list of tuples; "pandas", "arrow", "polars" and
        "records" (a list of dicts) are the others. `params` are bound by the
        driver in its own style (`%s` for psycopg2, `?` for sqlite and duckdb).
        A failed query is rolled back, so later queries on the thread work.
        """
        return self._sql_adapter(adapter_name, "hooks.sql").sql(
            query, return_type, params
        )

    def get_connection(self, adapter_name: str) -> Any:
        """Return the driver's own connection for `adapter_name` on this thread."""
        return self._sql_adapter(adapter_name, "hooks.get_connection").connection()

    def get_cursor(self, adapter_name: str) -> Any:
        """Return a new cursor on this thread's connection for `adapter_name`."""
        return self._sql_adapter(adapter_name, "hooks.get_cursor").cursor()

    def dbt_ref(
        self,
        adapter_name: str,
        target_1: str,
        target_2: str | None = None,
        target_version: int | None = None,
    ) -> Any:
        """Return a dbt model as a pandas DataFrame (`target_1` is the package
        when `target_2` is given)."""
        from prism.connectors.base import RefAdapter

        adapter = self.adapter(adapter_name, "hooks.dbt_ref")
        if not isinstance(adapter, RefAdapter):
            raise self._wrong_type(adapter_name, "hooks.dbt_ref", "a dbt")
        return adapter.ref(target_1, target_2, target_version)

    def adapter(self, adapter_name: str, call: str = "hooks") -> Adapter:
        """Return the adapter called `adapter_name`, creating it on first use."""
        adapter = self._adapters.get(adapter_name)
        if adapter is not None:
            return adapter
        entry = self._profile.adapters.get(adapter_name)
        if entry is None:
            raise self._not_configured(adapter_name, call)
        with self._lock:
            adapter = self._adapters.get(adapter_name)
            if adapter is None:
                adapter = entry.cls(entry.name, entry.settings, entry.context)
                self._adapters[adapter_name] = adapter
        return adapter

    def adapters_of_type(self, adapter_type: str) -> list[str]:
        """Return the names of the profile's adapters of `adapter_type`."""
        return [
            name
            for name, entry in self._profile.adapters.items()
            if entry.settings.type == adapter_type
        ]

    def close(self) -> None:
        """Close every adapter that was opened, whatever its name or type.

        Errors while closing are logged, not raised, so one adapter that fails to
        close does not keep the others open.
        """
        with self._lock:
            adapters = list(self._adapters.items())
            self._adapters.clear()
        for name in self._attributes:
            self.__dict__.pop(name, None)
        for name, adapter in adapters:
            try:
                adapter.close()
            except Exception as error:
                logger.warning(
                    "Closing the adapter %s failed: %s: %s",
                    name,
                    type(error).__name__,
                    error,
                )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        adapter_name = self._attributes.get(name)
        if adapter_name is None:
            raise AttributeError(
                f"hooks has no attribute {name!r}: no adapter in "
                f"{self._profile.label} exposes it"
            )
        value = self.adapter(adapter_name, f"hooks.{name}").hook_attribute(name)
        self.__dict__[name] = value
        return value

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _sql_adapter(self, adapter_name: str, call: str) -> SqlAdapter:
        from prism.connectors.base import SqlAdapter

        adapter = self.adapter(adapter_name, call)
        if not isinstance(adapter, SqlAdapter):
            raise self._wrong_type(adapter_name, call, "a SQL")
        return adapter

    def _not_configured(self, adapter_name: str, call: str) -> TaskError:
        return AdapterNotConfiguredError(
            not_configured_message(self._profile, adapter_name, call),
            hint=not_configured_hint(self._profile, adapter_name),
        )

    def _wrong_type(self, adapter_name: str, call: str, kind: str) -> TaskError:
        entry = self._profile.adapters[adapter_name]
        return AdapterNotConfiguredError(
            f"{call}: the adapter {adapter_name!r} ({self._profile.label}: "
            f"{entry.context.key_path}) is of type {entry.settings.type!r}, "
            f"not {kind} adapter"
        )


def not_configured_message(profile: Profile, adapter_name: object, call: str) -> str:
    """Return the message for a call that names an adapter the profile lacks."""
    if profile.path is None or not profile.path.is_file():
        where = f"there is no profile file ({profile.label})"
    elif not profile.name:
        where = "PROFILE is not set in prism_project.py"
    else:
        where = f"{profile.label} has no adapter {adapter_name!r} in profile " + (
            f"{profile.name!r}"
        )
    return f"{call}({adapter_name!r}): {where}"


def not_configured_hint(profile: Profile, adapter_name: object) -> str:
    """Return the hint for a call that names an adapter the profile lacks."""
    import difflib

    names = list(profile.adapters)
    matches = difflib.get_close_matches(str(adapter_name), names, n=1)
    if matches:
        return f"Did you mean {matches[0]!r}?"
    if names:
        return f"The adapters are: {', '.join(names)}."
    return "Add the adapter to the profile, e.g. with `prism connect --type postgres`."


def _hook_attributes(profile: Profile) -> dict[str, str]:
    attributes: dict[str, str] = {}
    for name, entry in profile.adapters.items():
        for attribute in entry.cls.hook_attributes(entry.settings):
            where = f"{profile.label}: {entry.context.key_path}"
            if attribute.startswith("_") or hasattr(Hooks, attribute):
                raise ConfigError(
                    f"{where}: {attribute!r} cannot be used as a hooks attribute, "
                    "because hooks already has it",
                    hint="Choose another name, such as 'spark'.",
                )
            if attribute in attributes:
                raise ConfigError(
                    f"{where}: hooks.{attribute} is already provided by the "
                    f"adapter {attributes[attribute]!r}"
                )
            attributes[attribute] = name
    return attributes
