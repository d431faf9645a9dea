"""The validated settings of an agent file, as a plain dataclass.

Kept apart from the pydantic schema so that commands whose agent file has not
changed since it was last validated never import pydantic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["AGENT_TYPES", "AgentSettings"]

AGENT_TYPES = ("venv", "docker", "ssh", "ec2", "emr")


@dataclass(frozen=True)
class AgentSettings:
    """Every key an agent file may set; keys a type does not use are None."""

    type: str
    requirements: str | None = None
    env: dict[str, str | int | float | bool] = field(default_factory=dict)
    artifacts: tuple[str, ...] = ()
    timeout: float | None = None
    python: str | None = None
    image: str | None = None
    server_url: str | None = None
    cpus: float | None = None
    memory: str | None = None
    host: str | None = None
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    ssh_config: str | None = None
    workdir: str | None = None
    region: str | None = None
    ami: str | None = None
    instance_type: str | None = None
    spot: bool = False
    volume_gb: int | None = None
    subnet_id: str | None = None
    iam_instance_profile: str | None = None
    key_name: str | None = None
    ssh_cidr: tuple[str, ...] = ()
    ssh_user: str | None = None
    ssh_proxy: str | None = None
    idle_timeout: float | None = None
    idle_action: str | None = None
    cluster_id: str | None = None
    release_label: str | None = None
    instance_groups: dict[str, dict[str, Any]] | None = None
    managed_scaling: dict[str, Any] | None = None
    log_uri: str | None = None
    staging_uri: str | None = None
    service_role: str | None = None
    job_flow_role: str | None = None
    create_default_roles: bool = False
    bootstrap: tuple[str, ...] = ()
    transport: str | None = None

    def to_cache(self) -> dict[str, Any]:
        """Return the settings without `env`, for the state database."""
        data = asdict(self)
        data.pop("env")
        data["artifacts"] = list(self.artifacts)
        data["ssh_cidr"] = list(self.ssh_cidr)
        data["bootstrap"] = list(self.bootstrap)
        return data

    @classmethod
    def from_cache(cls, data: dict[str, Any], env: dict[str, Any]) -> AgentSettings:
        return cls(
            **{
                **data,
                "artifacts": tuple(data["artifacts"]),
                "ssh_cidr": tuple(data.get("ssh_cidr", ())),
                "bootstrap": tuple(data.get("bootstrap", ())),
                "env": env,
            }
        )
