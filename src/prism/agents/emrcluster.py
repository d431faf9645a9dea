"""EMR clusters for the EMR agent: the creation request, finding, waiting, ending.

The creation request itself carries what keeps a cluster's cost bounded:
managed scaling limits (`ManagedScalingPolicy.ComputeLimits`), the idle timeout
(`AutoTerminationPolicy`) and `KeepJobFlowAliveWhenNoSteps`, so the cluster
waits for runs between them and ends itself once idle, even when no client is
running. Every cluster carries the agent's tags and, since `RunJobFlow` takes no
idempotency token, a `prism:apply-token` tag whose value the state database
records before the request is sent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prism.agents.aws import Aws, wait_for
from prism.agents.settings import AgentSettings
from prism.errors import ConfigError

__all__ = [
    "DEFAULT_JOB_FLOW_ROLE",
    "DEFAULT_SERVICE_ROLE",
    "LIVE_STATES",
    "TOKEN_TAG",
    "Cluster",
    "creation_request",
    "describe_cluster",
    "ensure_roles",
    "find_clusters",
    "instance_groups",
    "settings_tags",
    "update_settings",
    "wait_until_ready",
]

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_ROLE = "EMR_DefaultRole"
DEFAULT_JOB_FLOW_ROLE = "EMR_EC2_DefaultRole"
TOKEN_TAG = "prism:apply-token"
# Tags that record the settings a cluster was created or last updated with, so
# a later apply can detect changes. Scaling and the idle timeout change in place;
# the rest (the "shape", stored as a hash) needs a new cluster.
SCALING_TAG = "prism:scaling"
IDLE_TAG = "prism:idle-timeout"
SHAPE_TAG = "prism:shape"
SHAPE_KEYS = (
    "release_label",
    "instance_groups",
    "log_uri",
    "subnet_id",
    "service_role",
    "job_flow_role",
    "bootstrap",
    "python",
    "key_name",
    "transport",
)

STARTING_STATES = ("STARTING", "BOOTSTRAPPING")
READY_STATES = ("RUNNING", "WAITING")
LIVE_STATES = (*STARTING_STATES, *READY_STATES)
ENDED_STATES = ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")

# Hints for each reason code EMR gives when a cluster ends.
_REASON_HINTS = {
    "BOOTSTRAP_FAILURE": "A bootstrap action failed on a node: check agent.bootstrap "
    "and the node logs{logs}.",
    "VALIDATION_ERROR": "EMR rejected the cluster's settings: check the instance "
    "types, release_label, subnet_id and roles.",
    "INSTANCE_FAILURE": "EC2 could not start the cluster's instances: try other "
    "instance types or another subnet_id.",
    "INSTANCE_FLEET_TIMEOUT": "EC2 could not start the cluster's instances in time: "
    "try other instance types or another subnet_id.",
    "INTERNAL_ERROR": "EMR failed internally; apply again.",
    "USER_REQUEST": "It was terminated on request (console, CLI, or an idle "
    "timeout); apply again for a new cluster.",
    "STEP_FAILURE": "A step failed and ended the cluster; apply again.",
    "ALL_STEPS_COMPLETED": "It ended after its last step; apply again.",
}

_SERVICE_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonElasticMapReduceRole"
_INSTANCE_POLICY = (
    "arn:aws:iam::aws:policy/service-role/AmazonElasticMapReduceforEC2Role"
)


@dataclass(frozen=True)
class Cluster:
    """The fields Prism reads from a described cluster."""

    id: str
    name: str
    state: str
    reason_code: str
    reason_message: str
    master_address: str | None
    log_uri: str | None
    tags: dict[str, str]
    release_label: str

    @classmethod
    def from_description(cls, data: dict[str, Any]) -> Cluster:
        status = data.get("Status", {})
        reason = status.get("StateChangeReason") or {}
        return cls(
            id=data["Id"],
            name=data.get("Name", ""),
            state=str(status.get("State", "")),
            reason_code=str(reason.get("Code") or ""),
            reason_message=str(reason.get("Message") or ""),
            master_address=data.get("MasterPublicDnsName") or None,
            log_uri=data.get("LogUri") or None,
            tags={tag["Key"]: tag["Value"] for tag in data.get("Tags", [])},
            release_label=data.get("ReleaseLabel", ""),
        )

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def is_ready(self) -> bool:
        return self.state in READY_STATES

    def describe_end(self) -> str:
        """Return the state and EMR's reason, as one phrase."""
        reason = ": ".join(
            part for part in (self.reason_code, self.reason_message) if part
        )
        return f"{self.state} ({reason})" if reason else self.state

    def ended_error(self, doing: str) -> ConfigError:
        """Return the error for a cluster that ended, or is in an unknown state."""
        if self.state not in ENDED_STATES:
            return ConfigError(
                f"Cluster {self.id} is in state {self.state!r}, which Prism does not "
                f"know, while {doing}",
                hint="Look at the cluster in the EMR console; apply again once it "
                "is WAITING, or delete the agent.",
            )
        logs = f" under {self.log_uri}{self.id}/node/" if self.log_uri else ""
        hint = _REASON_HINTS.get(
            self.reason_code, "See the cluster's events in the EMR console."
        )
        return ConfigError(
            f"Cluster {self.id} ended while {doing}: {self.describe_end()}",
            hint=hint.format(logs=logs),
        )


def describe_cluster(aws: Aws, cluster_id: str) -> Cluster:
    response = aws.call("emr", "describe_cluster", ClusterId=cluster_id)
    return Cluster.from_description(response["Cluster"])


def find_clusters(aws: Aws, name: str, tags: dict[str, str]) -> list[Cluster]:
    """Return the live clusters named `name` that carry all of `tags`, oldest first."""
    found: list[tuple[str, Cluster]] = []
    arguments: dict[str, Any] = {"ClusterStates": list(LIVE_STATES)}
    while True:
        response = aws.call("emr", "list_clusters", **arguments)
        for summary in response.get("Clusters", []):
            if summary.get("Name") != name:
                continue
            cluster = describe_cluster(aws, summary["Id"])
            if all(cluster.tags.get(key) == value for key, value in tags.items()):
                created = summary.get("Status", {}).get("Timeline", {})
                found.append((str(created.get("CreationDateTime", "")), cluster))
        marker = response.get("Marker")
        if not marker:
            break
        arguments["Marker"] = marker
    return [cluster for _, cluster in sorted(found, key=lambda item: item[0])]


def instance_groups(spec: AgentSettings) -> list[dict[str, Any]]:
    """Return the `InstanceGroups` of the creation request."""
    groups = []
    for role, group in (spec.instance_groups or {}).items():
        groups.append(
            {
                "Name": role,
                "InstanceRole": role.upper(),
                "Market": "ON_DEMAND",
                "InstanceType": group["instance_type"],
                "InstanceCount": group["count"],
            }
        )
    return groups


def creation_request(
    spec: AgentSettings,
    *,
    name: str,
    tags: list[dict[str, str]],
    bootstrap_uri: str,
    key_name: str | None,
    security_group: str | None,
) -> dict[str, Any]:
    """Return the `RunJobFlow` arguments of a cluster Prism creates."""
    instances: dict[str, Any] = {
        "InstanceGroups": instance_groups(spec),
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    }
    if key_name:
        instances["Ec2KeyName"] = key_name
    if security_group:
        instances["AdditionalMasterSecurityGroups"] = [security_group]
    if spec.subnet_id:
        instances["Ec2SubnetId"] = spec.subnet_id
    request: dict[str, Any] = {
        "Name": name,
        "ReleaseLabel": spec.release_label,
        "Applications": [{"Name": "Hadoop"}, {"Name": "Spark"}],
        "Instances": instances,
        "BootstrapActions": [
            {
                "Name": "prism-setup",
                "ScriptBootstrapAction": {"Path": bootstrap_uri, "Args": []},
            }
        ],
        "ServiceRole": spec.service_role or DEFAULT_SERVICE_ROLE,
        "JobFlowRole": spec.job_flow_role or DEFAULT_JOB_FLOW_ROLE,
        "VisibleToAllUsers": True,
        "Tags": [
            *tags,
            *(
                {"Key": key, "Value": value}
                for key, value in settings_tags(spec).items()
            ),
        ],
    }
    if spec.log_uri:
        request["LogUri"] = spec.log_uri
    if spec.managed_scaling:
        request["ManagedScalingPolicy"] = {
            "ComputeLimits": compute_limits(spec.managed_scaling)
        }
    if spec.idle_timeout:
        request["AutoTerminationPolicy"] = {"IdleTimeout": int(spec.idle_timeout * 60)}
    return request


def settings_tags(spec: AgentSettings) -> dict[str, str]:
    """Return the tags that record a cluster's scaling, idle timeout and shape."""
    import hashlib
    import json

    scaling = spec.managed_scaling
    scaling_text = (
        f"{scaling['unit']}:{scaling['min']}-{scaling['max']}:"
        f"{scaling.get('max_on_demand') or '-'}"
        if scaling
        else "off"
    )
    shape = json.dumps([getattr(spec, key) for key in SHAPE_KEYS], sort_keys=True)
    return {
        SCALING_TAG: scaling_text,
        IDLE_TAG: str(int(spec.idle_timeout * 60)) if spec.idle_timeout else "off",
        SHAPE_TAG: hashlib.sha256(shape.encode()).hexdigest()[:16],
    }


def update_settings(aws: Aws, cluster: Cluster, spec: AgentSettings) -> list[str]:
    """Bring a running cluster's scaling and idle timeout to the agent file's.

    Returns the names of the settings changed in place. Settings that need a
    new cluster are logged as a warning. A cluster without the settings tags
    (one created by another tool) is left alone.
    """
    expected = settings_tags(spec)
    changed = []
    if cluster.tags.get(SCALING_TAG, expected[SCALING_TAG]) != expected[SCALING_TAG]:
        if spec.managed_scaling:
            aws.call(
                "emr",
                "put_managed_scaling_policy",
                ClusterId=cluster.id,
                ManagedScalingPolicy={
                    "ComputeLimits": compute_limits(spec.managed_scaling)
                },
            )
        else:
            aws.call("emr", "remove_managed_scaling_policy", ClusterId=cluster.id)
        changed.append("managed_scaling")
    if cluster.tags.get(IDLE_TAG, expected[IDLE_TAG]) != expected[IDLE_TAG]:
        if spec.idle_timeout:
            aws.call(
                "emr",
                "put_auto_termination_policy",
                ClusterId=cluster.id,
                AutoTerminationPolicy={"IdleTimeout": int(spec.idle_timeout * 60)},
            )
        else:
            aws.call("emr", "remove_auto_termination_policy", ClusterId=cluster.id)
        changed.append("idle_timeout")
    if changed:
        aws.call(
            "emr",
            "add_tags",
            ResourceId=cluster.id,
            Tags=[
                {"Key": key, "Value": expected[key]} for key in (SCALING_TAG, IDLE_TAG)
            ],
        )
        logger.info("Updated %s of cluster %s", " and ".join(changed), cluster.id)
    if cluster.tags.get(SHAPE_TAG, expected[SHAPE_TAG]) != expected[SHAPE_TAG]:
        logger.warning(
            "Cluster %s was created with other settings (some of %s); they take "
            "effect only on a new cluster, so delete the agent and apply it again "
            "to use them",
            cluster.id,
            ", ".join(SHAPE_KEYS),
        )
    return changed


def compute_limits(scaling: dict[str, Any]) -> dict[str, Any]:
    """Return managed scaling's `ComputeLimits` for the agent file's limits."""
    limits: dict[str, Any] = {
        "UnitType": "VCPU" if scaling["unit"] == "vcpu" else "Instances",
        "MinimumCapacityUnits": scaling["min"],
        "MaximumCapacityUnits": scaling["max"],
    }
    if scaling.get("max_on_demand") is not None:
        limits["MaximumOnDemandCapacityUnits"] = scaling["max_on_demand"]
    return limits


def wait_until_ready(aws: Aws, cluster_id: str, *, timeout: float = 3600) -> Cluster:
    """Wait while the cluster starts; raise a clear error if it ends instead."""
    started = time.monotonic()
    latest: list[Cluster] = []

    def check() -> str | None:
        cluster = describe_cluster(aws, cluster_id)
        latest[:] = [cluster]
        if cluster.is_ready:
            return cluster.state
        if cluster.state in STARTING_STATES:
            return None
        raise cluster.ended_error("starting")

    def progress() -> str:
        return f"state {latest[0].state}" if latest else "no state yet"

    wait_for(
        f"cluster {cluster_id}",
        check,
        timeout=timeout,
        interval=10,
        progress=progress,
    )
    cluster = latest[0]
    logger.info(
        "Cluster %s is %s after %.0fs",
        cluster.id,
        cluster.state,
        time.monotonic() - started,
    )
    return cluster


def wait_until_ended(aws: Aws, cluster_id: str, *, timeout: float = 1800) -> None:
    def check() -> str | None:
        cluster = describe_cluster(aws, cluster_id)
        return cluster.state if cluster.state.startswith("TERMINATED") else None

    wait_for(f"cluster {cluster_id} to end", check, timeout=timeout, interval=10)


def ensure_roles(aws: Aws, spec: AgentSettings, config_path: Path) -> None:
    """Check that the cluster's roles exist, creating the EMR defaults on request."""
    service = spec.service_role or DEFAULT_SERVICE_ROLE
    instance = spec.job_flow_role or DEFAULT_JOB_FLOW_ROLE
    if spec.create_default_roles:
        # Every step is idempotent, so this also repairs a role that an
        # interrupted apply created without its policy.
        if service == DEFAULT_SERVICE_ROLE:
            _create_role(
                aws, service, "elasticmapreduce.amazonaws.com", _SERVICE_POLICY
            )
        if instance == DEFAULT_JOB_FLOW_ROLE:
            _create_role(aws, instance, "ec2.amazonaws.com", _INSTANCE_POLICY)
            _create_instance_profile(aws, instance)
    missing = []
    if not _exists(aws, "get_role", RoleName=service):
        missing.append(("service_role", service, DEFAULT_SERVICE_ROLE))
    if not _exists(aws, "get_instance_profile", InstanceProfileName=instance):
        missing.append(("job_flow_role", instance, DEFAULT_JOB_FLOW_ROLE))
    for key, name, default in missing:
        if name != default:
            raise ConfigError(
                f"{config_path}: agent.{key}: no IAM "
                f"{'role' if key == 'service_role' else 'instance profile'} named "
                f"{name!r} in this account",
                hint=f"Create it, or leave agent.{key} out to use {default}.",
            )
        if not spec.create_default_roles:
            raise ConfigError(
                f"{config_path}: the EMR default role {name} does not exist in this "
                "account",
                hint="Create the default roles with `aws emr create-default-roles`, "
                "or set agent.create_default_roles: true and Prism creates them.",
            )
        if key == "service_role":
            _create_role(aws, name, "elasticmapreduce.amazonaws.com", _SERVICE_POLICY)
        else:
            _create_role(aws, name, "ec2.amazonaws.com", _INSTANCE_POLICY)
            _create_instance_profile(aws, name)


def _exists(aws: Aws, operation: str, **arguments: Any) -> bool:
    try:
        return aws.call_or_none("iam", operation, **arguments) is not None
    except ConfigError as error:
        # Credentials that may start clusters but not read IAM: let EMR judge.
        if "Not allowed to call" in str(error):
            logger.debug("Cannot check IAM roles: %s", error)
            return True
        raise


def _create_role(aws: Aws, name: str, service: str, policy: str) -> None:
    import json

    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    if aws.call_or_none("iam", "get_role", RoleName=name) is None:
        logger.info("Creating the IAM role %s", name)
        aws.call(
            "iam",
            "create_role",
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description="Created by Prism for EMR clusters",
        )
    aws.call("iam", "attach_role_policy", RoleName=name, PolicyArn=policy)


def _create_instance_profile(aws: Aws, name: str) -> None:
    profile = aws.call_or_none("iam", "get_instance_profile", InstanceProfileName=name)
    if profile is None:
        logger.info("Creating the IAM instance profile %s", name)
        aws.call("iam", "create_instance_profile", InstanceProfileName=name)
        profile = aws.call("iam", "get_instance_profile", InstanceProfileName=name)
    roles = [role["RoleName"] for role in profile["InstanceProfile"].get("Roles", [])]
    if name not in roles:
        aws.call(
            "iam",
            "add_role_to_instance_profile",
            InstanceProfileName=name,
            RoleName=name,
        )


def group_counts(aws: Aws, cluster_id: str) -> list[tuple[str, str]]:
    """Describe each instance group as (label, "running/requested type")."""
    fields = []
    arguments: dict[str, Any] = {"ClusterId": cluster_id}
    while True:
        response = aws.call("emr", "list_instance_groups", **arguments)
        for group in response.get("InstanceGroups", []):
            role = str(group.get("InstanceGroupType", "")).lower()
            fields.append(
                (
                    f"{role} group",
                    f"{group.get('RunningInstanceCount', 0)} running of "
                    f"{group.get('RequestedInstanceCount', 0)} "
                    f"{group.get('InstanceType', '')}",
                )
            )
        marker = response.get("Marker")
        if not marker:
            break
        arguments["Marker"] = marker
    order = {"master group": 0, "core group": 1, "task group": 2}
    return sorted(fields, key=lambda field: order.get(field[0], 3))


def scaling_limits(aws: Aws, cluster_id: str) -> dict[str, Any] | None:
    """Return the cluster's managed scaling limits, or None if it has none.

    Raises ConfigError when EMR cannot return them (moto, for one, does not
    implement the call).
    """
    response = aws.call("emr", "get_managed_scaling_policy", ClusterId=cluster_id)
    policy = response.get("ManagedScalingPolicy") or {}
    limits = policy.get("ComputeLimits")
    return dict(limits) if limits else None


def idle_timeout(aws: Aws, cluster_id: str) -> int | None:
    """Return the cluster's idle timeout in seconds, or None if it has none."""
    response = aws.call("emr", "get_auto_termination_policy", ClusterId=cluster_id)
    policy = response.get("AutoTerminationPolicy") or {}
    seconds = policy.get("IdleTimeout")
    return int(seconds) if seconds else None
