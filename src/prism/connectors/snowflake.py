"""Snowflake adapter (`prism-pipelines[snowflake]`)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from prism.connectors.base import (
    AdapterSettings,
    ConnectionFailedError,
    Params,
    Secret,
    SqlAdapter,
    SqlSettings,
    Text,
    execute,
    import_driver,
    scrub,
)

__all__ = ["SnowflakeAdapter", "SnowflakeSettings"]


class SnowflakeSettings(SqlSettings):
    """The keys of Prism 0.2.x, all required, and `connect_timeout`."""

    model_config = {**SqlSettings.model_config, "populate_by_name": True}

    type: str = "snowflake"
    user: Text
    password: Secret
    account: Text
    role: Text
    warehouse: Text
    database: Text
    schema_name: Text = Field(alias="schema")


class SnowflakeAdapter(SqlAdapter):
    """A Snowflake account; pandas and arrow results come from Snowflake's own
    Arrow-based fetch."""

    settings_model: ClassVar[type[AdapterSettings]] = SnowflakeSettings
    extra: ClassVar[str | None] = "snowflake"
    driver_modules: ClassVar[tuple[str, ...]] = ("snowflake.connector",)

    def connect(self) -> Any:
        settings = self.settings
        assert isinstance(settings, SnowflakeSettings)
        connector = import_driver("snowflake.connector", self.extra, "snowflake")
        try:
            return connector.connect(
                account=settings.account,
                user=settings.user,
                password=settings.password.get_secret_value(),
                database=settings.database,
                schema=settings.schema_name,
                warehouse=settings.warehouse,
                role=settings.role,
                login_timeout=settings.connect_timeout,
            )
        except connector.errors.Error as error:
            raise ConnectionFailedError(
                f"{self.where}: could not connect to Snowflake: "
                f"{scrub(str(error), settings.password)}"
            ) from None

    def read_pandas(self, query: str, params: Params) -> Any:
        with self.transaction() as cursor:
            execute(cursor, query, params)
            return cursor.fetch_pandas_all()

    def read_arrow(self, query: str, params: Params) -> Any:
        with self.transaction() as cursor:
            execute(cursor, query, params)
            return cursor.fetch_arrow_all(force_return_table=True)
