"""The `hooks` object passed to every task.

NOTE: the database and Spark adapters configured in profile.yml are not available
in this version; every call that needs one raises `AdapterNotConfiguredError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prism.errors import ConfigError

__all__ = ["AdapterNotConfiguredError", "Hooks"]


class AdapterNotConfiguredError(ConfigError):
    """A task asked `hooks` for a database or Spark adapter that cannot be used."""

    exit_code = 1


class Hooks:
    """Access to the databases and Spark sessions named in the project's profile."""

    def __init__(self, profile_path: Path | None = None, profile: str = "") -> None:
        self._profile_path = profile_path
        self._profile = profile

    def sql(self, adapter_name: str, query: str, return_type: str | None = None) -> Any:
        """Run `query` on the adapter `adapter_name` and return its rows."""
        raise self._unavailable(adapter_name, "hooks.sql")

    def get_connection(self, adapter_name: str) -> Any:
        """Return the database driver's connection for `adapter_name`."""
        raise self._unavailable(adapter_name, "hooks.get_connection")

    def get_cursor(self, adapter_name: str) -> Any:
        """Return a cursor on the connection for `adapter_name`."""
        raise self._unavailable(adapter_name, "hooks.get_cursor")

    def dbt_ref(
        self,
        adapter_name: str,
        target_1: str,
        target_2: str | None = None,
        target_version: int | None = None,
    ) -> Any:
        """Return a dbt model as a pandas DataFrame."""
        raise self._unavailable(adapter_name, "hooks.dbt_ref")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise self._unavailable(name, f"hooks.{name}")

    def _unavailable(self, adapter_name: str, call: str) -> AdapterNotConfiguredError:
        profile = str(self._profile_path) if self._profile_path else "profile.yml"
        return AdapterNotConfiguredError(
            f"{call}: no adapter {adapter_name!r} is configured; database and Spark "
            f"adapters from {profile} are not supported by this version of Prism",
            hint="Connect to the database directly in the task for now, e.g. with "
            "the driver's own connect() function.",
        )
