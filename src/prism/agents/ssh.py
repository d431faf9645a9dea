"""The SSH agent: a host the user can already reach with `ssh`.

Everything lives in one folder on the host, `workdir` (default
`~/.prism/<project>/<agent>`); `prism.agents.hostenv` describes its layout.
Each run copies only what changed (rsync) and runs the project there with `env`
sent on standard input. It streams the events back and copies the target folders
and `artifacts` back, also when the run fails.

Not supported: password or keyboard-interactive logins (use a key or an agent),
and hosts without rsync or without Python's venv module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prism.agents.base import Agent
from prism.agents.deps import prism_source_hash
from prism.agents.hostenv import HostEnvironment
from prism.agents.openssh import SshConnection, SshEndpoint

if TYPE_CHECKING:
    from prism.agents.remote import RemoteRun
    from prism.engine.events import EventSink, RunFinished

__all__ = ["SshAgent"]

logger = logging.getLogger(__name__)


class SshAgent(Agent):
    """Runs the project in a virtual environment on a host reached over SSH."""

    type = "ssh"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connection: SshConnection | None = None
        self._environment: HostEnvironment | None = None

    @property
    def endpoint(self) -> SshEndpoint:
        spec = self.config.spec
        return SshEndpoint(
            host=spec.host or "",
            user=spec.user,
            port=spec.port,
            identity_file=spec.identity_file,
            config_file=spec.ssh_config,
        )

    @property
    def connection(self) -> SshConnection:
        if self._connection is None:
            self._connection = SshConnection(self.endpoint)
        return self._connection

    @property
    def environment(self) -> HostEnvironment:
        if self._environment is None:
            spec = self.config.spec
            self._environment = HostEnvironment(
                self,
                self.connection,
                host=spec.host or "",
                workdir=spec.workdir,
                python=spec.python or "python3",
            )
        return self._environment

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
            self._environment = None

    def _fingerprint_parts(self) -> tuple[str, ...]:
        return (prism_source_hash(),)

    def _is_current(self, fingerprint: str | None) -> bool:
        return fingerprint is not None and self.environment.is_current(fingerprint)

    def _apply(self, fingerprint: str) -> str:
        target = self.environment.install(fingerprint)
        self._forget_old_locations()
        self.state.add_resource(
            self.name,
            "folder",
            self._location(),
            {
                "python": target.version,
                "connection": self._connection_key(),
                "folder": self.environment.folder,
            },
        )
        return (
            f"Agent {self.name}: environment ready on {self.config.spec.host} "
            f"(Python {target.version})"
        )

    def _start(
        self, request: RemoteRun, payload: bytes, early: Any = None
    ) -> Callable[[EventSink], RunFinished]:
        return self.environment.start(request, payload)

    def _delete(self) -> list[str]:
        if self.environment.delete():
            return [f"removed {self.config.spec.host}:{self.environment.rsync_folder}"]
        return []

    def _connection_key(self) -> str:
        spec = self.config.spec
        return (
            f"{spec.user or ''}@{spec.host}:{spec.port or ''}:{spec.ssh_config or ''}"
        )

    def _location(self) -> str:
        user = f"{self.config.spec.user}@" if self.config.spec.user else ""
        return f"{user}{self.config.spec.host}:{self.environment.rsync_folder}"

    def _forget_old_locations(self) -> None:
        # A changed host, user, port or workdir moves the agent. An old folder on
        # the same connection is removed; one elsewhere is named so it can be.
        for resource in self.state.resources(self.name):
            if resource.kind != "folder" or resource.id == self._location():
                continue
            old_folder = resource.details.get("folder")
            if (
                resource.details.get("connection") == self._connection_key()
                and old_folder
            ):
                self.connection.run(
                    f"test -f {old_folder}/fingerprint && rm -rf {old_folder}; true",
                    check=False,
                )
                logger.info("Removed the agent's previous folder %s", resource.id)
            else:
                logger.warning(
                    "Agent %s moved; its previous environment at %s was left in "
                    "place. Remove it there by hand if it is no longer needed.",
                    self.name,
                    resource.id,
                )
            self.state.remove_resource(self.name, resource.kind, resource.id)

    def _status(self) -> list[tuple[str, str]]:
        return self.environment.status()
