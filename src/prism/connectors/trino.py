"""Trino (`prism-pipelines[trino]`) and Presto (`prism-pipelines[presto]`) adapters.

Prism 0.2.x ignored `http_scheme` and always used https; here it is honoured,
with https still the default.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from prism.connectors.base import (
    AdapterSettings,
    ConnectionFailedError,
    Secret,
    SqlAdapter,
    SqlSettings,
    Text,
    import_driver,
    scrub,
)

__all__ = ["PrestoAdapter", "TrinoAdapter", "TrinoSettings"]


class TrinoSettings(SqlSettings):
    """The keys of Prism 0.2.x; a `schema` needs a `catalog`.

    `connect_timeout` limits each HTTP request to the coordinator.
    """

    model_config = {**SqlSettings.model_config, "populate_by_name": True}

    type: str = "trino"
    user: Text
    password: Secret | None = None
    host: Text
    port: int
    http_scheme: Literal["http", "https"] = "https"
    catalog: Text | None = None
    schema_name: Text | None = Field(default=None, alias="schema")

    @model_validator(mode="after")
    def _schema_needs_catalog(self) -> TrinoSettings:
        if self.schema_name is not None and self.catalog is None:
            raise ValueError("schema is set but catalog is not; set catalog too")
        return self


class PrestoSettings(TrinoSettings):
    """The keys of a presto adapter, which are those of a trino adapter."""

    type: str = "presto"


class TrinoAdapter(SqlAdapter):
    """A Trino cluster; queries run in autocommit mode."""

    settings_model: ClassVar[type[AdapterSettings]] = TrinoSettings
    extra: ClassVar[str | None] = "trino"
    driver_modules: ClassVar[tuple[str, ...]] = ("trino",)
    module: ClassVar[str] = "trino"

    def connect(self) -> Any:
        settings = self.settings
        assert isinstance(settings, TrinoSettings)
        dbapi = import_driver(f"{self.module}.dbapi", self.extra, settings.type)
        auth_module = import_driver(f"{self.module}.auth", self.extra, settings.type)
        password = settings.password.get_secret_value() if settings.password else ""
        auth = (
            auth_module.BasicAuthentication(settings.user, password)
            if password
            else None
        )
        try:
            return dbapi.connect(
                host=settings.host,
                port=settings.port,
                user=settings.user,
                http_scheme=settings.http_scheme,
                auth=auth,
                catalog=settings.catalog,
                schema=settings.schema_name,
                request_timeout=settings.connect_timeout,
            )
        except Exception as error:
            raise ConnectionFailedError(
                f"{self.where}: could not connect to {settings.type}: "
                f"{scrub(str(error), settings.password)}"
            ) from None

    def commit(self, connection: Any) -> None:
        return None

    def rollback(self, connection: Any) -> None:
        return None

    def cancel(self, connection: Any) -> None:
        return None


class PrestoAdapter(TrinoAdapter):
    """A Presto cluster, through presto-python-client (`prestodb`)."""

    settings_model: ClassVar[type[AdapterSettings]] = PrestoSettings
    extra: ClassVar[str | None] = "presto"
    driver_modules: ClassVar[tuple[str, ...]] = ("prestodb",)
    module: ClassVar[str] = "prestodb"
