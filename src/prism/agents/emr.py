"""The EMR agent: a Spark cluster Prism creates, or one it attaches to.

With `cluster_id` the agent attaches to a running cluster and never changes or
ends it; `delete` removes only what Prism put there (its folder on the master
and its staging objects). Otherwise `apply` creates, or finds again, a cluster
tagged `prism:project`, `prism:agent` and `prism:managed-by`
(`prism.agents.emrcluster` has the request), with an SSH key pair and security
group like the EC2 agent's, and a bootstrap script in the agent's S3 staging
area (`prism.agents.s3store`) that installs the interpreter on every node. An
apply that fails after creating a cluster terminates it, unless an earlier
apply finished on it (the cluster then carries `prism:ready`); Ctrl-C leaves
it for the next apply to pick up.

Runs use one of two transports:

- `ssh` (default): the master node is an SSH host (`prism.agents.hostenv`), and
  `prism.agents.sparkenv` makes `hooks.spark` sessions run on YARN with the
  agent's environment shipped to the executors.
- `steps`: for clusters that cannot be reached over SSH, each run is an EMR step
  (`prism.agents.emrsteps`); the project and its outputs travel through S3.

Not supported: instance fleets, spot instance groups, and `env` values read from
the client's environment with the `steps` transport (they would be stored in
S3 and in the step's arguments).
"""

from __future__ import annotations

import logging
import shlex
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prism.agents.aws import Aws, agent_tags, project_id
from prism.agents.awsnet import SshAccess, key_folder
from prism.agents.base import Agent
from prism.agents.config import secret_values
from prism.agents.deps import prism_source_hash
from prism.agents.emrcluster import (
    TOKEN_TAG,
    Cluster,
    creation_request,
    describe_cluster,
    ensure_roles,
    find_clusters,
    group_counts,
    idle_timeout,
    scaling_limits,
    update_settings,
    wait_until_ended,
    wait_until_ready,
)
from prism.agents.hostenv import HostEnvironment
from prism.agents.openssh import SshConnection
from prism.agents.s3store import S3Location, StagingStore, default_bucket
from prism.agents.sparkenv import run_environment, setup_script, ui_addresses
from prism.errors import ConfigError

if TYPE_CHECKING:
    from prism.agents.remote import RemoteRun
    from prism.engine.events import EventSink, RunFinished

__all__ = ["EmrAgent"]

logger = logging.getLogger(__name__)

# EMR 7 runs Amazon Linux 2023, whose python3 is 3.9; the bootstrap script
# installs this one on every node.
DEFAULT_PYTHON = "python3.11"
READY_TAG = "prism:ready"


class EmrAgent(Agent):
    """Runs the project on an EMR cluster, over SSH to its master or as steps."""

    type = "emr"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._aws: Aws | None = None
        self._access: SshAccess | None = None
        self._staging: StagingStore | None = None
        self._connection: SshConnection | None = None
        self._environment: HostEnvironment | None = None
        self._checked_cluster: Cluster | None = None
        # The master's Spark setup, once read: fingerprint, mode, agent folder.
        self._spark_setup: tuple[str, str, str] | None = None

    @property
    def aws(self) -> Aws:
        if self._aws is None:
            self._aws = Aws(self.config.spec.region, self.config.path)
        return self._aws

    @property
    def access(self) -> SshAccess:
        """The key pair and security group; the key folder also contains host keys."""
        if self._access is None:
            self._access = SshAccess(self, self.aws, key_folder(self, "emr"))
        return self._access

    @property
    def staging(self) -> StagingStore:
        if self._staging is None:
            uri = self.config.spec.staging_uri or f"s3://{default_bucket(self.aws)}/"
            location = S3Location.parse(uri).child(
                f"{project_id(self.project_root)}/{self.name}"
            )
            self._staging = StagingStore(self.aws, location)
        return self._staging

    @property
    def python(self) -> str:
        return self.config.spec.python or DEFAULT_PYTHON

    @property
    def is_attached(self) -> bool:
        return self.config.spec.cluster_id is not None

    @property
    def uses_steps(self) -> bool:
        return self.config.spec.transport == "steps"

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
            self._environment = None
            self._spark_setup = None

    def _fingerprint_parts(self) -> tuple[str, ...]:
        return (prism_source_hash(),)

    def environment_fingerprint(self) -> str:
        """Hash what shapes the environment on the master, and nothing else."""
        return self.config.fingerprint_of_requirements(self.python, prism_source_hash())

    def _tags(self) -> dict[str, str]:
        tags = agent_tags(project_id(self.project_root), self.name, "")
        return {tag["Key"]: tag["Value"] for tag in tags if tag["Key"] != "Name"}

    def _is_current(self, fingerprint: str | None) -> bool:
        if fingerprint is None:
            return False
        cluster = self.find_cluster()
        if cluster is None or not cluster.is_ready:
            return False
        # A run checks the agent right before it starts; one lookup serves both.
        self._checked_cluster = cluster
        if self.uses_steps:
            from prism.agents.emrsteps import is_installed

            return is_installed(self, cluster)
        environment = self._environment_on(cluster)
        expected = self.environment_fingerprint()
        return (
            environment.is_current(expected)
            and self._spark_setup_of(expected) is not None
        )

    def _apply(self, fingerprint: str) -> str:
        self._check_steps_env()
        self._warn_unused_keys()
        if self.is_attached:
            cluster = self._attached_cluster()
            self._install(cluster)
            return self._summary(cluster)
        ensure_roles(self.aws, self.config.spec, self.config.path)
        key, group = self._ensure_access()
        cluster = self._ensure_cluster(key, group)
        try:
            cluster = self._wait_until_ready(cluster)
            self._install(cluster)
        except Exception as error:
            self._terminate_unfinished(cluster, error)
            raise
        if cluster.tags.get(READY_TAG) != "true":
            self.aws.call(
                "emr",
                "add_tags",
                ResourceId=cluster.id,
                Tags=[{"Key": READY_TAG, "Value": "true"}],
            )
        return self._summary(cluster)

    def _start(
        self, request: RemoteRun, payload: bytes, early: Any = None
    ) -> Callable[[EventSink], RunFinished]:
        cluster = self._checked_cluster or self.find_cluster()
        if cluster is None or not cluster.is_ready:
            raise ConfigError(f"Agent {self.name} has no running cluster")
        if self.uses_steps:
            from prism.agents.emrsteps import start_step

            self._check_steps_env()
            return start_step(self, cluster, request, payload)
        environment = self._environment_on(cluster)
        setup = self._spark_setup_of(self.environment_fingerprint())
        mode, folder = setup if setup else ("local", environment.home_path())
        variables = run_environment(mode, folder)
        follow = environment.start(request, payload, variables)
        ui = ui_addresses(mode, environment.host)

        def follow_with_ui(sink: EventSink) -> RunFinished:
            logger.info("%s", ui)
            return follow(sink)

        return follow_with_ui

    def _delete(self) -> list[str]:
        removed: list[str] = []
        if self.is_attached:
            removed += self._delete_from_attached()
        else:
            removed += self._terminate_clusters()
            removed += self.access.delete()
        deleted = self.staging.delete_all()
        if deleted:
            removed.append(
                f"deleted {deleted} staging object{'s' if deleted != 1 else ''} "
                f"under {self.staging.uri()}"
            )
        for resource in self.state.resources(self.name):
            self.state.remove_resource(self.name, resource.kind, resource.id)
        return removed

    def _status(self) -> list[tuple[str, str]]:
        cluster = self.find_cluster()
        if cluster is None:
            return [("cluster", "(none)"), ("region", self.aws.region)]
        origin = "attached" if self.is_attached else "created by Prism"
        fields = [
            ("cluster", f"{cluster.id} ({origin})"),
            ("state", cluster.describe_end()),
            ("release", cluster.release_label or "(unknown)"),
            ("master", cluster.master_address or "(none yet)"),
            ("region", self.aws.region),
            ("transport", self.config.spec.transport or "ssh"),
        ]
        if cluster.is_live:
            fields += group_counts(self.aws, cluster.id)
        fields.append(("scaling", self._describe_scaling(cluster)))
        fields.append(("idle timeout", self._describe_idle_timeout(cluster)))
        fields.append(("log uri", cluster.log_uri or "(none)"))
        if cluster.is_ready and not self.uses_steps:
            fields += self._environment_on(cluster).status()
        return fields

    def find_cluster(self) -> Cluster | None:
        """Return the agent's cluster: the attached one, or the live tagged one."""
        spec = self.config.spec
        if spec.cluster_id:
            return describe_cluster(self.aws, spec.cluster_id)
        clusters = find_clusters(self.aws, self.access.resource_name, self._tags())
        if len(clusters) > 1:
            ids = ", ".join(cluster.id for cluster in clusters)
            raise ConfigError(
                f"Agent {self.name} has several clusters ({ids})",
                hint=f"Delete the agent with `prism agent delete -f "
                f"{self.config.path}`, then apply it again.",
            )
        return clusters[0] if clusters else None

    def _attached_cluster(self) -> Cluster:
        cluster = self.find_cluster()
        assert cluster is not None
        if cluster.is_ready:
            return cluster
        if cluster.is_live:
            return self._wait_until_ready(cluster)
        raise ConfigError(
            f"{self.config.path}: agent.cluster_id: cluster {cluster.id} has ended "
            f"({cluster.describe_end()})",
            hint="Start a new cluster and set its id, or leave cluster_id out and "
            "Prism creates one.",
        )

    def _ensure_access(self) -> tuple[str | None, str | None]:
        spec = self.config.spec
        if self.uses_steps:
            return spec.key_name, None
        key = self.access.ensure_key_pair(
            spec.key_name, in_use=lambda: self.find_cluster() is not None
        )
        group = self.access.ensure_security_group(spec.subnet_id)
        return key, group

    def _ensure_cluster(self, key: str | None, group: str | None) -> Cluster:
        cluster = self.find_cluster()
        if cluster is not None:
            update_settings(self.aws, cluster, self.config.spec)
            return cluster

        # RunJobFlow takes no idempotency token, so the token is a tag. It is
        # saved first: an apply interrupted after the request finds the
        # cluster by its tags and records it then.
        token = self._request_token()
        self.staging.ensure_bucket()
        self.staging.put_bytes("bootstrap.sh", self._bootstrap_script().encode())
        tags = agent_tags(
            project_id(self.project_root), self.name, self.access.resource_name
        )
        request = creation_request(
            self.config.spec,
            name=self.access.resource_name,
            tags=[*tags, {"Key": TOKEN_TAG, "Value": token}],
            bootstrap_uri=self.staging.uri("bootstrap.sh"),
            key_name=key,
            security_group=group,
        )

        groups = ", ".join(
            f"{item['InstanceCount']} {item['InstanceType']} {item['Name']}"
            for item in request["Instances"]["InstanceGroups"]
        )
        with self.step(f"Requesting an EMR cluster ({groups})"):
            response = self.aws.call("emr", "run_job_flow", **request)
        cluster_id = response["JobFlowId"]
        self.state.add_resource(self.name, "cluster", cluster_id, {"token": token})
        self.state.remove_resource(self.name, "cluster-request", token)
        return describe_cluster(self.aws, cluster_id)

    def _request_token(self) -> str:
        resources = self.state.resources(self.name)
        tokens = [item.id for item in resources if item.kind == "cluster-request"]
        if tokens:
            return tokens[0]
        token = uuid.uuid4().hex
        self.state.add_resource(self.name, "cluster-request", token, {})
        return token

    def _wait_until_ready(self, cluster: Cluster) -> Cluster:
        if cluster.is_ready:
            return cluster
        with self.step(f"Waiting for cluster {cluster.id} to start ({cluster.state})"):
            return wait_until_ready(self.aws, cluster.id)

    def _terminate_unfinished(self, cluster: Cluster, error: Exception) -> None:
        if cluster.tags.get(READY_TAG) == "true":
            return
        logger.warning(
            "Terminating cluster %s, which this apply created, because the apply "
            "failed: %s",
            cluster.id,
            error,
        )
        try:
            self.aws.call("emr", "terminate_job_flows", JobFlowIds=[cluster.id])
        except ConfigError as terminate_error:
            logger.warning(
                "Could not terminate cluster %s (%s); delete the agent to retry",
                cluster.id,
                terminate_error,
            )

    def _terminate_clusters(self) -> list[str]:
        removed = []
        for cluster in find_clusters(self.aws, self.access.resource_name, self._tags()):
            with self.step(f"Terminating cluster {cluster.id}"):
                self.aws.call("emr", "terminate_job_flows", JobFlowIds=[cluster.id])
                wait_until_ended(self.aws, cluster.id)
            removed.append(f"terminated cluster {cluster.id}")
        return removed

    def _delete_from_attached(self) -> list[str]:
        cluster = self.find_cluster()
        if cluster is None or not cluster.is_ready or self.uses_steps:
            return []
        environment = self._environment_on(cluster)
        if environment.delete():
            return [f"removed {environment.host}:{environment.rsync_folder}"]
        return []

    def _bootstrap_script(self) -> str:
        lines = [
            "#!/bin/bash",
            f"# Written by Prism for agent {self.name}; runs on every node as it "
            "starts.",
            "set -euo pipefail",
        ]
        packages = ["rsync"]
        if self.python.startswith("python3."):
            packages.insert(0, self.python)
        for package in packages:
            quoted = shlex.quote(package)
            lines.append(
                f"command -v {quoted} >/dev/null 2>&1 || sudo dnf install -y "
                f"{quoted} || sudo yum install -y {quoted}"
            )
        lines += list(self.config.spec.bootstrap)
        return "\n".join(lines) + "\n"

    def _install(self, cluster: Cluster) -> None:
        expected = self.environment_fingerprint()
        if self.uses_steps:
            from prism.agents.emrsteps import install_environment

            install_environment(self, cluster, expected)
            return
        environment = self._environment_on(cluster)
        environment.wait_for_login(cluster.id)
        if not environment.is_current(expected):
            environment.install(expected)
        if self._spark_setup_of(expected) is None:
            with self.step("Configuring Spark on the master"):
                result = environment.connection.run(
                    setup_script(environment.folder, expected),
                    action="configure Spark",
                )
            logger.info("Spark sessions run in %s mode", result.stdout.decode().strip())

    def _spark_setup_of(self, fingerprint: str) -> tuple[str, str] | None:
        """Return the master's Spark mode and the agent folder's absolute path.

        Returns None unless Spark was set up for `fingerprint`.
        """
        assert self._environment is not None
        if self._spark_setup is not None and self._spark_setup[0] == fingerprint:
            return self._spark_setup[1], self._spark_setup[2]
        folder = self._environment.folder
        result = self._environment.connection.run(
            f"cd {folder} 2>/dev/null && cat spark/fingerprint spark/mode && pwd -P",
            check=False,
        )
        lines = result.stdout.decode().split("\n")
        if len(lines) >= 3 and lines[0] == fingerprint:
            self._spark_setup = (fingerprint, lines[1], lines[2])
            return lines[1], lines[2]
        return None

    def _environment_on(self, cluster: Cluster) -> HostEnvironment:
        address = cluster.master_address
        if address is None:
            raise ConfigError(f"Cluster {cluster.id} has no master address yet")
        if self._environment is None or self._environment.host != address:
            self.close()
            spec = self.config.spec
            self._environment = self.access.open_environment(
                address,
                cluster.id,
                user=spec.ssh_user or "hadoop",
                identity_file=spec.identity_file,
                generated_key=not spec.key_name and not self.is_attached,
                proxy=spec.ssh_proxy,
                python=self.python,
            )
            self._connection = self._environment.connection
        return self._environment

    def _check_steps_env(self) -> None:
        if not self.uses_steps or not secret_values(self.config):
            return
        raise ConfigError(
            f"{self.config.path}: agent.env takes values from this machine's "
            "environment, which the steps transport would have to store in S3 and "
            "in the step's arguments",
            hint="Use transport: ssh, or give the cluster the values another way "
            "(a bootstrap command reading AWS Secrets Manager, say).",
        )

    def _warn_unused_keys(self) -> None:
        spec = self.config.spec
        if not self.uses_steps:
            return
        unused = [
            key
            for key, value, default in (
                ("ssh_proxy", spec.ssh_proxy, None),
                ("identity_file", spec.identity_file, None),
                ("ssh_user", spec.ssh_user, "hadoop"),
                ("ssh_cidr", spec.ssh_cidr, ("auto",)),
            )
            if value != default
        ]
        if unused:
            logger.warning(
                "agent.%s %s ignored with transport: steps",
                ", agent.".join(unused),
                "is" if len(unused) == 1 else "are",
            )

    def _summary(self, cluster: Cluster) -> str:
        how = (
            "as EMR steps"
            if self.uses_steps
            else f"over SSH to {cluster.master_address}"
        )
        return (
            f"Agent {self.name}: cluster {cluster.id} ({cluster.state}) ready; runs "
            f"{how}; idle timeout: {self._describe_idle_timeout(cluster, ask=False)}"
        )

    def _describe_scaling(self, cluster: Cluster) -> str:
        try:
            limits = scaling_limits(self.aws, cluster.id)
        except ConfigError as error:
            logger.debug("No managed scaling policy from EMR: %s", error)
            requested = self.config.spec.managed_scaling
            if self.is_attached or not requested:
                return "unknown" if self.is_attached else "off"
            return f"{_describe_limits(requested)} (requested)"
        if limits is None:
            return "off"
        return _describe_limits(
            {
                "min": limits.get("MinimumCapacityUnits"),
                "max": limits.get("MaximumCapacityUnits"),
                "max_on_demand": limits.get("MaximumOnDemandCapacityUnits"),
                "unit": "vcpu" if limits.get("UnitType") == "VCPU" else "instances",
            }
        )

    def _describe_idle_timeout(self, cluster: Cluster, *, ask: bool = True) -> str:
        seconds: int | None
        if ask:
            try:
                seconds = idle_timeout(self.aws, cluster.id)
            except ConfigError as error:
                logger.debug("No auto-termination policy from EMR: %s", error)
                ask = False
        requested = ""
        if not ask:
            if self.is_attached:
                return "unknown (attached cluster)"
            minutes = self.config.spec.idle_timeout or 0
            seconds = int(minutes * 60) or None
            requested = " (requested)"
        if seconds is None:
            return f"off{requested}"
        return f"terminates after {seconds / 60:g} min idle{requested}"


def _describe_limits(limits: dict[str, Any]) -> str:
    unit = "vCPUs" if limits.get("unit") == "vcpu" else "instances"
    text = f"{limits['min']} to {limits['max']} {unit}"
    if limits.get("max_on_demand") is not None:
        text += f", at most {limits['max_on_demand']} on demand"
    return text
