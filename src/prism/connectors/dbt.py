"""The dbt adapter: `hooks.dbt_ref` reads a dbt model into a pandas DataFrame.

It works through dbt's programmatic API (`dbt.cli.main.dbtRunner`, dbt-core 1.8 up
to 1.11), with whatever dbt adapter the dbt profile uses (dbt-postgres,
dbt-duckdb, ...):

1. `dbt parse` loads the dbt project's manifest, once per run.
2. The model is looked up in the manifest by name, package and version, as dbt's
   `ref()` does, which gives its relation (e.g. `"db"."schema"."orders"`).
3. `dbt show --inline "select * from RELATION" --limit -1` runs the query over
   dbt's own connection, which dbt closes when the command returns.

dbt keeps process-wide state, so calls are serialized. dbt writes nothing to the
console or to log files, and sends no usage statistics. No connection stays open
between calls: dbt closes its own, and the DuckDB file that dbt-duckdb keeps open is
closed after each call.
"""

from __future__ import annotations

import difflib
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar, Literal

from prism.connectors.base import (
    Adapter,
    AdapterContext,
    AdapterSettings,
    import_driver,
)
from prism.errors import ConfigError, TaskError

__all__ = ["DbtAdapter", "DbtError", "DbtSettings", "find_model"]

DEFAULT_PROFILES_DIR = "~/.dbt/"

# Every dbt command runs with these flags besides the folders and the target.
QUIET_FLAGS = (
    "--log-level",
    "none",
    "--log-level-file",
    "none",
    "--no-write-json",
    "--no-send-anonymous-usage-stats",
)

_DBT_LOCK = threading.Lock()


class DbtError(TaskError):
    """dbt could not load the project or read the model (the task fails)."""


class DbtSettings(AdapterSettings):
    """Settings of a dbt adapter, the keys of Prism 0.2.x.

    Relative folders start at the folder of the profile file.
    """

    type: Literal["dbt"]
    project_dir: str
    profiles_dir: str = DEFAULT_PROFILES_DIR
    profiles_target: str | None = None


class DbtAdapter(Adapter):
    """Reads dbt models with `ref()` and keeps no connection open between calls."""

    settings_model: ClassVar[type[AdapterSettings]] = DbtSettings
    extra: ClassVar[str | None] = "dbt"
    # find_spec imports only the parent `dbt` namespace package, which is cheap.
    driver_modules: ClassVar[tuple[str, ...]] = ("dbt.cli",)

    def __init__(
        self, name: str, settings: AdapterSettings, context: AdapterContext
    ) -> None:
        super().__init__(name, settings, context)
        assert isinstance(settings, DbtSettings)
        self.project_dir = resolve_folder(settings.project_dir, context)
        self.profiles_dir = resolve_folder(settings.profiles_dir, context)
        self._manifest: Any = None

    @classmethod
    def check(cls, settings: AdapterSettings, context: AdapterContext) -> None:
        """Raise ConfigError unless both folders contain their dbt file."""
        assert isinstance(settings, DbtSettings)
        where = f"{context.file_label}: {context.key_path}"
        expected = {
            "project_dir": (settings.project_dir, "dbt_project.yml"),
            "profiles_dir": (settings.profiles_dir, "profiles.yml"),
        }
        for key, (folder, file_name) in expected.items():
            if not (resolve_folder(folder, context) / file_name).is_file():
                raise ConfigError(
                    f"{where}.{key}: the folder has no {file_name}",
                    hint=f"Set {key} to the folder that contains {file_name}. A "
                    "relative folder starts at the profile file's folder.",
                )

    def ref(
        self,
        target_1: str,
        target_2: str | None = None,
        target_version: int | str | None = None,
    ) -> Any:
        """Return the model as a pandas DataFrame, like `ref()` in dbt SQL.

        `ref("orders")` names a model, and `ref("shop", "orders")` names the
        package first, as in dbt.
        """
        package, model = (target_1, target_2) if target_2 else (None, target_1)
        pandas = import_driver("pandas", self.extra, "dbt")
        with _DBT_LOCK:
            manifest = self._load_manifest()
            try:
                node = find_model(manifest, model, package, target_version)
            except DbtError as error:
                raise DbtError(f"{self._where()}: {error.message}") from None
            table = self._select_all(node.relation_name)
        rows = [tuple(row) for row in table.rows]
        return pandas.DataFrame.from_records(
            rows, columns=list(table.column_names), coerce_float=True
        )

    def close(self) -> None:
        """Forget the manifest. dbt closes its own connections after every command."""
        self._manifest = None

    def _load_manifest(self) -> Any:
        if self._manifest is None:
            self._manifest = self._invoke(["parse"], "could not load the dbt project")
        return self._manifest

    def _select_all(self, relation: str) -> Any:
        query = f"select * from {relation}"
        command = ["show", "--inline", query, "--limit", "-1"]
        result = self._invoke(command, f"could not read {relation}")
        return result.results[0].agate_table

    def _invoke(self, command: list[str], failure: str) -> Any:
        runner = import_driver("dbt.cli.main", self.extra, "dbt").dbtRunner
        try:
            outcome = runner().invoke([*command, *self._common_flags()])
        finally:
            _release_duckdb_file()
        if not outcome.success:
            raise DbtError(
                f"{self._where()}: {failure}: {_dbt_message(outcome)}",
                hint=_adapter_hint(outcome),
            )
        return outcome.result

    def _common_flags(self) -> list[str]:
        assert isinstance(self.settings, DbtSettings)
        flags = ["--project-dir", str(self.project_dir)]
        flags += ["--profiles-dir", str(self.profiles_dir)]
        if self.settings.profiles_target:
            flags += ["--target", self.settings.profiles_target]
        return [*flags, *QUIET_FLAGS]

    def _where(self) -> str:
        return f"{self.context.file_label}: {self.context.key_path}"


def _release_duckdb_file() -> None:
    # NOTE: dbt-duckdb (seen in 1.11) keeps its DuckDB database open, and the file
    # locked against other processes, until the interpreter exits. dbt's public
    # API cannot close it, so this reaches into dbt-duckdb's connection manager.
    module = sys.modules.get("dbt.adapters.duckdb.connections")
    manager = getattr(module, "DuckDBConnectionManager", None)
    lock = getattr(manager, "_LOCK", None)
    if manager is None or lock is None:
        return
    with lock:
        environment = getattr(manager, "_ENV", None)
        manager._ENV = None
    if environment is not None:
        environment.close()


def resolve_folder(folder: str, context: AdapterContext) -> Path:
    """Return `folder` with `~` expanded, relative to the profile file's folder."""
    path = Path(folder).expanduser()
    return path if path.is_absolute() else context.folder / path


def find_model(
    manifest: Any,
    model: str,
    package: str | None = None,
    version: int | str | None = None,
) -> Any:
    """Return the manifest node of a model, chosen the way dbt's `ref()` does.

    Without `package`, a model of the root project wins over one of a package.
    Without `version`, a versioned model resolves to its latest version.

    Raises:
        DbtError: no enabled model matches, or it has no relation (ephemeral).
    """
    label = f"{package}.{model}" if package else model
    if version is not None:
        label += f" (version {version})"
    nodes = [
        node
        for node in manifest.nodes.values()
        if node.resource_type == "model"
        and node.name == model
        and (package is None or node.package_name == package)
    ]
    if version is not None:
        nodes = [node for node in nodes if str(node.version) == str(version)]
    else:
        nodes = [node for node in nodes if _is_latest(node)]
    if not nodes:
        raise DbtError(_not_found(manifest, model, label, package, version))
    root = manifest.metadata.project_name
    nodes.sort(key=lambda node: node.package_name != root)
    node = nodes[0]
    if not node.relation_name:
        raise DbtError(
            f"dbt model {label} is ephemeral, so there is no table or view to read"
        )
    return node


def _is_latest(node: Any) -> bool:
    latest = getattr(node, "latest_version", None)
    return latest is None or str(node.version) == str(latest)


def _not_found(
    manifest: Any,
    model: str,
    label: str,
    package: str | None,
    version: int | str | None,
) -> str:
    disabled = [
        node
        for nodes in (manifest.disabled or {}).values()
        for node in nodes
        if node.name == model
    ]
    if disabled:
        return f"dbt model {label} is disabled in the dbt project"
    names = {
        node.name for node in manifest.nodes.values() if node.resource_type == "model"
    }
    if model in names and version is not None:
        return f"dbt model {model} has no version {version}"
    if model in names and package:
        return f"dbt model {model} is not in the package {package!r}"
    close = difflib.get_close_matches(model, sorted(names), n=1)
    suggestion = f"; did you mean {close[0]!r}?" if close else ""
    return f"dbt model {label} was not found in the dbt project{suggestion}"


def _dbt_message(outcome: Any) -> str:
    error = outcome.exception
    if error is None and outcome.result is not None:
        messages = [
            str(result.message)
            for result in getattr(outcome.result, "results", [])
            if getattr(result, "message", None)
        ]
        return " ".join(" ".join(messages).split()) or "dbt reported a failure"
    return " ".join(str(error).split()) or type(error).__name__


def _adapter_hint(outcome: Any) -> str | None:
    if "Could not find adapter type" in str(outcome.exception):
        return (
            "Install the dbt adapter package that the dbt profile's `type` needs, "
            "e.g. pip install dbt-postgres or dbt-duckdb."
        )
    return None
