"""The pyspark adapter: a SparkSession that tasks use as `hooks.<alias>`.

The session is built with `SparkSession.builder` from the adapter's `config`
mapping, when a task first requests it, and stopped by `close()` at the end of the
run. As in Prism 0.2.x, Hive support is enabled unless `config` sets
`spark.sql.catalogImplementation`, and `config` entries without a value are left
out.
"""

from __future__ import annotations

import keyword
import os
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from prism.connectors.base import (
    Adapter,
    AdapterContext,
    AdapterSettings,
    import_driver,
)
from prism.errors import TaskError

__all__ = ["PySparkAdapter", "PySparkSettings", "SparkStartError"]

LOG_LEVELS = ("ALL", "DEBUG", "ERROR", "FATAL", "INFO", "OFF", "TRACE", "WARN")
CATALOG_KEY = "spark.sql.catalogImplementation"


class SparkStartError(TaskError):
    """Spark could not start the session (the task that asked for it fails)."""


class PySparkSettings(AdapterSettings):
    """Settings of a pyspark adapter: the 0.2.x keys alias, config and loglevel."""

    type: Literal["pyspark"]
    alias: str
    config: dict[str, Any] = Field(default_factory=dict)
    loglevel: str = "WARN"

    @field_validator("config")
    @classmethod
    def _config_values_are_scalars(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if not isinstance(item, str | bool | int | float | None):
                raise ValueError(
                    f"the value of {key} must be a string, a number or true/false"
                )
        return value

    @field_validator("alias")
    @classmethod
    def _alias_is_a_name(cls, value: str) -> str:
        if not value.isidentifier() or keyword.iskeyword(value):
            raise ValueError("must be a Python name, such as spark")
        if value.startswith("_"):
            raise ValueError("must not start with an underscore")
        return value

    @field_validator("loglevel")
    @classmethod
    def _loglevel_is_known(cls, value: str) -> str:
        level = value.upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level


class PySparkAdapter(Adapter):
    """Builds one SparkSession on first use and stops it in `close()`."""

    settings_model: ClassVar[type[AdapterSettings]] = PySparkSettings
    extra: ClassVar[str | None] = "pyspark"
    driver_modules: ClassVar[tuple[str, ...]] = ("pyspark",)

    def __init__(
        self, name: str, settings: AdapterSettings, context: AdapterContext
    ) -> None:
        super().__init__(name, settings, context)
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def spark_settings(self) -> PySparkSettings:
        """The settings, typed as this adapter's model."""
        assert isinstance(self.settings, PySparkSettings)
        return self.settings

    @classmethod
    def hook_attributes(cls, settings: AdapterSettings) -> tuple[str, ...]:
        assert isinstance(settings, PySparkSettings)
        return (settings.alias,)

    def hook_attribute(self, name: str) -> Any:
        if name != self.spark_settings.alias:
            raise AttributeError(name)
        return self.session()

    def session(self) -> Any:
        """Return the SparkSession, building it on the first call."""
        with self._lock:
            if self._session is None:
                self._session = self._build()
            return self._session

    def close(self) -> None:
        """Stop the session if one was built. A later use builds a new one."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.stop()

    def _build(self) -> Any:
        _quiet_pandas_version_warning()
        sql = import_driver("pyspark.sql", self.extra, "pyspark")
        settings = self.spark_settings
        builder = sql.SparkSession.builder
        if CATALOG_KEY not in settings.config:
            builder = builder.enableHiveSupport()
        for key, value in builder_options(settings.config).items():
            builder = builder.config(key, value)
        try:
            session = builder.getOrCreate()
        except Exception as error:
            raise SparkStartError(
                f"{self._where()}: Spark could not start: {_first_line(error)}",
                hint=_java_hint(),
            ) from None
        _set_log_level(session, settings.loglevel)
        return session

    def _where(self) -> str:
        return f"{self.context.file_label}: {self.context.key_path}"


def builder_options(config: dict[str, Any]) -> dict[str, str]:
    """Return `config` as the strings Spark expects, without the empty entries."""
    options: dict[str, str] = {}
    for key, value in config.items():
        if value is None:
            continue
        options[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return options


def _set_log_level(session: Any, level: str) -> None:
    try:
        context = session.sparkContext
    except Exception:
        # A Spark Connect session has no SparkContext, and so no log level to set.
        return
    context.setLogLevel(level)


def _quiet_pandas_version_warning() -> None:
    warnings.filterwarnings(
        "ignore",
        message="PySpark does not yet fully support pandas",
        category=FutureWarning,
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _java_hint() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and not (Path(java_home) / "bin" / "java").is_file():
        return "JAVA_HOME is set to a folder without bin/java; fix or unset it."
    if java_home or shutil.which("java"):
        return "Check the adapter's config and the Java messages above."
    return (
        "Spark needs Java 17 or newer, and no `java` is on PATH and JAVA_HOME is "
        "not set; install a JRE (e.g. Debian's openjdk-17-jre-headless)."
    )
