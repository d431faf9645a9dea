"""Google BigQuery adapter (`prism-pipelines[bigquery]`).

As in Prism 0.2.x, `hooks.get_connection` returns a `google.cloud.bigquery.Client`.
`hooks.get_cursor` and `hooks.sql` use BigQuery's DB-API on that client, so
`params` bind as `%(name)s` or `%s`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from prism.connectors.base import (
    AdapterSettings,
    ConnectionFailedError,
    Params,
    SqlAdapter,
    SqlSettings,
    Text,
    import_driver,
)

__all__ = ["BigQueryAdapter", "BigQuerySettings"]


class BigQuerySettings(SqlSettings):
    """`creds` is a service-account key file, relative to the profile's folder.

    `project` and `location` are optional; the project defaults to the key's.
    """

    type: str = "bigquery"
    creds: Text
    project: Text | None = None
    location: Text | None = None


class BigQueryAdapter(SqlAdapter):
    """A BigQuery project, reached with a service-account key."""

    settings_model: ClassVar[type[AdapterSettings]] = BigQuerySettings
    extra: ClassVar[str | None] = "bigquery"
    driver_modules: ClassVar[tuple[str, ...]] = ("google.cloud.bigquery",)

    def connect(self) -> Any:
        settings = self.settings
        assert isinstance(settings, BigQuerySettings)
        bigquery = import_driver("google.cloud.bigquery", self.extra, "bigquery")
        service_account = import_driver(
            "google.oauth2.service_account", self.extra, "bigquery"
        )
        path = Path(settings.creds).expanduser()
        if not path.is_absolute():
            path = self.context.folder / path
        try:
            credentials = service_account.Credentials.from_service_account_file(
                str(path)
            )
        except (OSError, ValueError) as error:
            reason = error.strerror if isinstance(error, OSError) else "invalid key"
            raise ConnectionFailedError(
                f"{self.where}.creds: cannot read the service-account key file "
                f"{path}: {reason or type(error).__name__}"
            ) from None
        return bigquery.Client(
            credentials=credentials,
            project=settings.project or credentials.project_id,
            location=settings.location,
        )

    def open_cursor(self, connection: Any) -> Any:
        dbapi = import_driver("google.cloud.bigquery.dbapi", self.extra, "bigquery")
        return dbapi.connect(client=connection).cursor()

    def cursor(self) -> Any:
        return self.open_cursor(self.connection())

    def commit(self, connection: Any) -> None:
        return None

    def rollback(self, connection: Any) -> None:
        return None

    def cancel(self, connection: Any) -> None:
        return None

    def read_pandas(self, query: str, params: Params) -> Any:
        if params is not None:
            return super().read_pandas(query, params)
        return self._job(query).to_dataframe()

    def read_arrow(self, query: str, params: Params) -> Any:
        if params is not None:
            return super().read_arrow(query, params)
        return self._job(query).to_arrow()

    def _job(self, query: str) -> Any:
        settings = self.settings
        assert isinstance(settings, BigQuerySettings)
        client = self.connection()
        return client.query(query, timeout=settings.connect_timeout).result()
