"""The EMR agent against moto's server (EMR, EC2, S3, IAM) and a Spark container.

moto plays the AWS APIs on 127.0.0.1 and records the requests it receives. Its
clusters start at once, but its steps never finish and it implements neither
managed scaling nor auto-termination calls, so the tests read the creation
request from moto's recording instead of asking for those policies. The
cluster's "master node" is a container with sshd, OpenJDK 17 and Python
(`prism-test/spark:bookworm`), reached through `ssh_proxy`; `pyspark` reaches it
through the wheelhouse like any requirement, and Spark runs there in local mode.
The steps transport's state handling is fed by botocore's Stubber.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.agents.cloud import (
    KEY_NAME,
    TEST_CIDR,
    Cloud,
    running_cloud,
    security_group_exists,
    ssh_ranges,
    start_apply,
    tag_value,
)
from tests.agents.conftest import (
    SECRET,
    SECRET_ENV,
    TOKEN_PROJECT,
    AppliedAgents,
    output_of,
    prism,
    unique_name,
    write_project,
)
from tests.agents.moto import recorded_requests
from tests.conftest import prism_env

pytestmark = pytest.mark.integration

SPARK_IMAGE = "prism-test/spark:bookworm"
LOG_URI = "s3://prism-test-logs/emr/"

SPARK_TASK = """\
import gzip
import io
import json
import sys
import tarfile

import prism.target
from prism.decorators import target, task


@task(targets=[target(type=prism.target.Txt, loc="output/spark.json")])
def spark_sum(tasks, hooks):
    spark = hooks.spark
    total = spark.range(5).groupBy().sum("id").collect()[0][0]
    workers = (
        spark.sparkContext.parallelize([1], 1)
        .map(lambda _: __import__("sys").executable)
        .collect()
    )
    return json.dumps(
        {
            "total": total,
            "driver": sys.executable,
            "worker": workers[0],
            "master": spark.sparkContext.master,
        }
    )
"""

# The profile does not set where Spark runs, because the agent decides that.
PROFILE = """\
dev:
  adapters:
    cluster_spark:
      type: pyspark
      alias: spark
      loglevel: error
      config:
        spark.sql.shuffle.partitions: 1
        spark.ui.enabled: false
"""

PROJECT_FILES = {
    **TOKEN_PROJECT,
    "prism_project.py": 'THREADS = 1\nPROFILE = "dev"\n',
    "profile.yml": PROFILE,
    "requirements.txt": "pyspark\n",
    "tasks/spark_sum.py": SPARK_TASK,
}

SLOW_TASK = """\
import time
from prism.decorators import task


@task()
def slow(tasks, hooks):
    print("started", flush=True)
    time.sleep(120)
    return 1
"""


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    # The agent tests move XDG_CACHE_HOME, and pip's cache with it; pip's usual
    # cache keeps the wheel it built of pyspark's source distribution.
    pip_cache = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache/pip")
    with (
        running_cloud(
            tmp_path_factory.mktemp("emr"), image=SPARK_IMAGE, record=True
        ) as cloud,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setenv("PIP_CACHE_DIR", pip_cache)
        yield cloud


def agent_text(
    cloud: Cloud,
    *,
    requirements: bool = False,
    extra: str = "",
    python: str = "python3",
) -> str:
    text = (
        "agent:\n"
        "  type: emr\n"
        "  instance_groups:\n"
        "    master: {instance_type: m5.xlarge}\n"
        "    core: {instance_type: m5.xlarge, count: 2}\n"
        "    task: {instance_type: m5.2xlarge, count: 1}\n"
        "  managed_scaling: {min: 2, max: 8, max_on_demand: 4}\n"
        "  idle_timeout: 45\n"
        f"  log_uri: {LOG_URI}\n"
        f"  key_name: {KEY_NAME}\n"
        f"  identity_file: {cloud.host.key}\n"
        "  ssh_user: prism\n"
        f"  ssh_cidr: {TEST_CIDR}\n"
        f"  ssh_proxy: {cloud.host.proxy_command}\n"
        f"  python: {python}\n"
        "  create_default_roles: true\n"
        "  env:\n"
        "    TOKEN: ${PRISM_TEST_SECRET}\n"
    )
    if requirements:
        text += "  requirements: requirements.txt\n"
    return text + extra


def new_project(
    tmp_path: Path, cloud: Cloud, files: dict[str, str] | None = None, **options: Any
) -> tuple[Path, Path]:
    root = write_project(tmp_path / unique_name("emr"), files or TOKEN_PROJECT)
    agent_file = root / "cluster.yml"
    agent_file.write_text(agent_text(cloud, **options))
    return root, agent_file


def project_clusters(
    cloud: Cloud, project: Path, states: tuple[str, ...] = ("WAITING", "RUNNING")
) -> list[dict[str, Any]]:
    """Return the described clusters in `states` tagged for `project`."""
    emr = cloud.client("emr")
    found = []
    for summary in emr.list_clusters(ClusterStates=list(states))["Clusters"]:
        cluster = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"]
        if tag_value(cluster, "prism:project").startswith(project.name + "-"):
            found.append(cluster)
    return found


def cluster_state(cloud: Cloud, cluster_id: str) -> str:
    cluster = cloud.client("emr").describe_cluster(ClusterId=cluster_id)["Cluster"]
    return str(cluster["Status"]["State"])


@dataclass(frozen=True)
class EmrProject:
    root: Path
    agent_file: Path
    cloud: Cloud

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return prism(
            "agent",
            "run",
            "-f",
            str(self.agent_file),
            *args,
            cwd=self.root,
            env=SECRET_ENV,
            timeout=300,
        )


@pytest.fixture(scope="module")
def applied(
    cloud: Cloud, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmrProject]:
    root, agent_file = new_project(
        tmp_path_factory.mktemp("emrproject"),
        cloud,
        files=PROJECT_FILES,
        requirements=True,
    )
    agents = AppliedAgents()
    try:
        agents.apply(root, agent_file)
        yield EmrProject(root, agent_file, cloud)
    finally:
        agents.cleanup()


@pytest.fixture(scope="module")
def full_run(applied: EmrProject) -> subprocess.CompletedProcess[str]:
    """One run of the whole project, PySpark task included, shared by tests."""
    return applied.run()


def test_request_sets_scaling_idle_timeout_and_tags(applied: EmrProject) -> None:
    assert applied.cloud.recording is not None
    requests = [
        body
        for body in recorded_requests(
            applied.cloud.recording, "ElasticMapReduce.RunJobFlow"
        )
        if body["Name"].startswith(f"prism-{applied.root.name}-")
    ]
    assert len(requests) == 1
    [request] = requests
    assert request["ManagedScalingPolicy"]["ComputeLimits"] == {
        "UnitType": "Instances",
        "MinimumCapacityUnits": 2,
        "MaximumCapacityUnits": 8,
        "MaximumOnDemandCapacityUnits": 4,
    }
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 45 * 60}
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert request["LogUri"] == LOG_URI
    tags = {tag["Key"]: tag["Value"] for tag in request["Tags"]}
    assert tags["prism:agent"] == "cluster"
    assert tags["prism:managed-by"] == "prism"
    assert tags["prism:project"].startswith(applied.root.name + "-")
    assert tags["prism:apply-token"]


def test_cluster_has_requested_groups(applied: EmrProject) -> None:
    [cluster] = project_clusters(applied.cloud, applied.root)
    assert cluster["Status"]["State"] == "WAITING"
    assert cluster["Ec2InstanceAttributes"]["Ec2KeyName"] == KEY_NAME
    groups = applied.cloud.client("emr").list_instance_groups(ClusterId=cluster["Id"])[
        "InstanceGroups"
    ]
    described = {
        group["InstanceGroupType"]: (
            group["InstanceType"],
            group["RequestedInstanceCount"],
        )
        for group in groups
    }
    assert described == {
        "MASTER": ("m5.xlarge", 1),
        "CORE": ("m5.xlarge", 2),
        "TASK": ("m5.2xlarge", 1),
    }


def test_master_admits_ssh_only_from_ssh_cidr(applied: EmrProject) -> None:
    [cluster] = project_clusters(applied.cloud, applied.root)
    [group] = cluster["Ec2InstanceAttributes"]["AdditionalMasterSecurityGroups"]
    described, ranges = ssh_ranges(applied.cloud, group)
    assert ranges == [(22, TEST_CIDR)]
    assert tag_value(described, "prism:agent") == "cluster"


def test_default_roles_created_on_request(applied: EmrProject) -> None:
    iam = applied.cloud.client("iam")
    role = iam.get_role(RoleName="EMR_DefaultRole")["Role"]
    assert "elasticmapreduce.amazonaws.com" in json.dumps(
        role["AssumeRolePolicyDocument"]
    )
    profile = iam.get_instance_profile(InstanceProfileName="EMR_EC2_DefaultRole")
    roles = [role["RoleName"] for role in profile["InstanceProfile"]["Roles"]]
    assert roles == ["EMR_EC2_DefaultRole"]


def test_second_apply_changes_nothing(applied: EmrProject) -> None:
    result = prism("agent", "apply", "-f", str(applied.agent_file), cwd=applied.root)
    assert result.returncode == 0, output_of(result)
    assert "up to date" in result.stdout
    assert len(project_clusters(applied.cloud, applied.root)) == 1


def test_pyspark_and_plain_tasks_run(full_run: Any, applied: EmrProject) -> None:
    assert full_run.returncode == 0, output_of(full_run)
    assert (applied.root / "output/total.txt").read_text() == "6"
    report = json.loads((applied.root / "output/spark.json").read_text())
    assert report["total"] == 10


def test_session_runs_where_agent_says(full_run: Any, applied: EmrProject) -> None:
    report = json.loads((applied.root / "output/spark.json").read_text())
    # No YARN in the container, so the agent's Spark defaults set local mode,
    # and the executors use the agent's environment, like the driver.
    assert report["master"] == "local[*]"
    assert report["driver"].endswith("/venv/bin/python")
    assert report["worker"] == report["driver"]
    assert "Spark UI while a session runs: http://" in full_run.stdout


def test_secret_masked_in_cluster_output(full_run: Any) -> None:
    assert "token ****" in full_run.stdout
    assert SECRET not in full_run.stdout + full_run.stderr


def test_failing_task_exits_one_with_outputs(applied: EmrProject) -> None:
    broken = applied.root / "tasks" / "broken.py"
    broken.write_text(
        "from prism.decorators import task\n\n\n@task()\ndef broken(tasks, hooks):\n"
        "    raise ValueError('no rows today')\n"
    )
    rows = applied.root / "output/rows.json"
    rows.unlink(missing_ok=True)
    try:
        result = applied.run("-t", "extract", "-t", "broken")
    finally:
        broken.unlink()

    assert result.returncode == 1, output_of(result)
    assert "no rows today" in result.stdout
    assert json.loads(rows.read_text()) == [1, 2, 3]


def test_interrupt_leaves_no_remote_process(
    applied: EmrProject, start_agent: Any
) -> None:
    slow = applied.root / "tasks" / "slow.py"
    slow.write_text(SLOW_TASK)
    try:
        agent = start_agent(
            "agent",
            "run",
            "-f",
            str(applied.agent_file),
            "-t",
            "slow",
            cwd=applied.root,
            env=SECRET_ENV,
        )
        agent.wait_for_output("started", timeout=120)
        agent.interrupt()
        exit_code = agent.finish(timeout=60)
    finally:
        slow.unlink()

    assert exit_code == 130, agent.describe()
    left = applied.cloud.host.run("pgrep -f 'prism[.]agents[.]remote' || true")
    assert left.stdout.strip() == ""


def test_status_shows_cluster_and_limits(full_run: Any, applied: EmrProject) -> None:
    result = prism("agent", "status", "-f", str(applied.agent_file), cwd=applied.root)
    assert result.returncode == 0, output_of(result)
    [cluster] = project_clusters(applied.cloud, applied.root)
    assert f"{cluster['Id']} (created by Prism)" in result.stdout
    assert "WAITING" in result.stdout
    assert "core group:          2 running of 2 m5.xlarge" in result.stdout
    assert "task group:          1 running of 1 m5.2xlarge" in result.stdout
    assert "2 to 8 instances, at most 4 on demand" in result.stdout
    assert "terminates after 45 min idle" in result.stdout
    assert "last run:" in result.stdout


def test_delete_finds_cluster_by_tags_without_state(
    cloud: Cloud, tmp_path: Path
) -> None:
    root, agent_file = new_project(tmp_path, cloud)
    AppliedAgents().apply(root, agent_file)
    [cluster] = project_clusters(cloud, root)
    [group] = cluster["Ec2InstanceAttributes"]["AdditionalMasterSecurityGroups"]
    subprocess.run(["rm", "-rf", str(root / ".prism")], check=True)

    result = prism("agent", "delete", "-f", str(agent_file), cwd=root)

    assert result.returncode == 0, output_of(result)
    assert f"terminated cluster {cluster['Id']}" in result.stdout
    assert cluster_state(cloud, cluster["Id"]) == "TERMINATED"
    assert not security_group_exists(cloud, group)


def test_interrupted_apply_is_recovered(cloud: Cloud, tmp_path: Path) -> None:
    root, agent_file = new_project(tmp_path, cloud)
    agents = AppliedAgents()
    agents.applied.append((root, agent_file))
    process = start_apply(root, agent_file, new_session=True)
    try:
        live = ("STARTING", "BOOTSTRAPPING", "WAITING", "RUNNING")
        deadline = time.monotonic() + 60
        while not project_clusters(cloud, root, live) and time.monotonic() < deadline:
            time.sleep(0.05)
        [requested] = project_clusters(cloud, root, live)
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        assert process.returncode != 0, output

        agents.apply(root, agent_file)
        [cluster] = project_clusters(cloud, root, live)
        assert cluster["Id"] == requested["Id"]
    finally:
        if process.poll() is None:
            process.kill()
        agents.cleanup()


def test_failed_apply_terminates_its_cluster(cloud: Cloud, tmp_path: Path) -> None:
    root, agent_file = new_project(tmp_path, cloud, python="python3.99")
    agents = AppliedAgents()
    agents.applied.append((root, agent_file))
    try:
        result = prism("agent", "apply", "-f", str(agent_file), cwd=root)
        assert result.returncode == 2, output_of(result)
        assert "agent.python: 'python3.99' does not run" in result.stderr
        assert "Traceback" not in result.stderr
        ended = project_clusters(cloud, root, ("TERMINATING", "TERMINATED"))
        assert len(ended) == 1
        assert project_clusters(cloud, root) == []
    finally:
        agents.cleanup()


def test_attached_cluster_survives_delete(cloud: Cloud, tmp_path: Path) -> None:
    emr = cloud.client("emr")
    cluster_id = emr.run_job_flow(
        Name="team-cluster",
        ReleaseLabel="emr-7.8.0",
        Instances={
            "InstanceGroups": [
                {
                    "InstanceRole": "MASTER",
                    "InstanceType": "m5.xlarge",
                    "InstanceCount": 1,
                },
                {
                    "InstanceRole": "CORE",
                    "InstanceType": "m5.xlarge",
                    "InstanceCount": 1,
                },
            ],
            "KeepJobFlowAliveWhenNoSteps": True,
            "Ec2KeyName": KEY_NAME,
        },
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    root = write_project(tmp_path / unique_name("emr"), TOKEN_PROJECT)
    agent_file = root / "team.yml"
    agent_file.write_text(
        "agent:\n"
        "  type: emr\n"
        f"  cluster_id: {cluster_id}\n"
        f"  identity_file: {cloud.host.key}\n"
        "  ssh_user: prism\n"
        f"  ssh_proxy: {cloud.host.proxy_command}\n"
        "  python: python3\n"
    )
    AppliedAgents().apply(root, agent_file)
    folder = f".prism/{root.name}-*/team"
    assert cloud.host.run(f"ls -d {folder}").returncode == 0

    result = prism("agent", "delete", "-f", str(agent_file), cwd=root)

    assert result.returncode == 0, output_of(result)
    assert "terminated" not in result.stdout
    assert cluster_state(cloud, cluster_id) == "WAITING"
    assert cloud.host.run(f"ls -d {folder}").returncode != 0
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("  instance_group: {}\n", "Did you mean 'instance_groups'?"),
        (
            "  instance_groups:\n    core: {instance_typ: m5.xlarge}\n",
            "Did you mean 'instance_type'?",
        ),
        ("  managed_scaling: {min: 5, max: 2}\n", "max (2) must not be less than min"),
        ("  managed_scaling: {min: 1, max: 2, unit: nodes}\n", "managed_scaling.unit"),
        ("  cluster_id: j-ABCDEF1234\n  release_label: emr-7.1.0\n", "cluster_id"),
        ("  cluster_id: my-cluster\n", "agent.cluster_id"),
        ("  log_uri: /var/log/emr\n", "agent.log_uri: must be an S3 location"),
        ("  idle_timeout: 30000\n", "agent.idle_timeout"),
        ("  transport: yarn\n", "agent.transport"),
        ("  release_label: '7.8'\n", "agent.release_label"),
        ("  transport: steps\n  python: python3\n", "python must name its version"),
    ],
)
def test_bad_emr_settings_exit_2_naming_key(
    tmp_path: Path, lines: str, message: str
) -> None:
    root = write_project(tmp_path / unique_name("emr"), TOKEN_PROJECT)
    agent_file = root / "cluster.yml"
    agent_file.write_text("agent:\n  type: emr\n" + lines)
    result = prism("agent", "apply", "-f", str(agent_file), cwd=root)
    assert result.returncode == 2, output_of(result)
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_missing_named_role_is_clear(cloud: Cloud, tmp_path: Path) -> None:
    root, agent_file = new_project(
        tmp_path, cloud, extra="  service_role: TeamEmrRole\n"
    )
    result = prism("agent", "apply", "-f", str(agent_file), cwd=root)
    assert result.returncode == 2, output_of(result)
    assert "agent.service_role: no IAM role named 'TeamEmrRole'" in result.stderr
    assert project_clusters(cloud, root, ("STARTING", "WAITING")) == []


def test_steps_reject_env_from_this_machine(cloud: Cloud, tmp_path: Path) -> None:
    root, agent_file = new_project(
        tmp_path, cloud, python="python3.11", extra="  transport: steps\n"
    )
    result = prism("agent", "apply", "-f", str(agent_file), cwd=root, env=SECRET_ENV)
    assert result.returncode == 2, output_of(result)
    assert "steps transport would have to store in S3" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def stubbed_aws(service: str) -> tuple[Any, Any]:
    """Return an `Aws` and a Stubber on its `service` client."""
    from botocore.stub import Stubber

    from prism.agents.aws import Aws

    aws = Aws("us-east-1", Path("cluster.yml"))
    return aws, Stubber(aws.client(service))


def step_response(state: str, **status: Any) -> dict[str, Any]:
    return {
        "Step": {"Id": "s-1", "Name": "prism run", "Status": {"State": state, **status}}
    }


def cluster_response(state: str, code: str = "", message: str = "") -> dict[str, Any]:
    reason = {"Code": code, "Message": message} if code else {}
    return {
        "Cluster": {
            "Id": "j-TEST",
            "Name": "prism-test",
            "Status": {"State": state, "StateChangeReason": reason},
        }
    }


def add_step_states(stubber: Any, states: list[tuple[str, dict[str, Any]]]) -> None:
    """Queue describe_step responses, each waiting one followed by a live cluster."""
    for state, status in states:
        stubber.add_response(
            "describe_step",
            step_response(state, **status),
            {"ClusterId": "j-TEST", "StepId": "s-1"},
        )
        if state in ("PENDING", "RUNNING", "CANCEL_PENDING"):
            stubber.add_response("describe_cluster", cluster_response("RUNNING"))


FAILURE = {"FailureDetails": {"Reason": "out of memory", "LogFile": "s3://logs/x"}}


@pytest.mark.parametrize(
    ("states", "end", "exit_code", "reason"),
    [
        ([("PENDING", {}), ("RUNNING", {}), ("COMPLETED", {})], "COMPLETED", 0, ""),
        ([("RUNNING", {}), ("FAILED", FAILURE)], "FAILED", 1, "out of memory"),
        ([("PENDING", {}), ("CANCELLED", {})], "CANCELLED", 1, ""),
        ([("RUNNING", {}), ("INTERRUPTED", {})], "INTERRUPTED", 1, ""),
        ([("RUNNING", {}), ("EXPLODED", {})], "EXPLODED", 1, "does not know"),
    ],
)
def test_only_completed_step_succeeds(
    states: list[tuple[str, dict[str, Any]]], end: str, exit_code: int, reason: str
) -> None:
    from prism.agents.emrsteps import follow_step

    aws, stubber = stubbed_aws("emr")
    add_step_states(stubber, states)
    with stubber:
        outcome = follow_step(aws, "j-TEST", "s-1", interval=0)
        stubber.assert_no_pending_responses()
    assert outcome.state == end
    assert outcome.exit_code == exit_code
    assert reason in outcome.reason


def test_cluster_ending_fails_running_step() -> None:
    from prism.agents.emrsteps import follow_step

    aws, stubber = stubbed_aws("emr")
    stubber.add_response("describe_step", step_response("RUNNING"))
    stubber.add_response(
        "describe_cluster",
        cluster_response("TERMINATED_WITH_ERRORS", "INSTANCE_FAILURE", "lost nodes"),
    )
    with stubber:
        outcome = follow_step(aws, "j-TEST", "s-1", interval=0)
    assert outcome.exit_code == 1
    assert "TERMINATED_WITH_ERRORS (INSTANCE_FAILURE: lost nodes)" in outcome.reason


def test_step_past_timeout_is_cancelled() -> None:
    from prism.agents.emrsteps import follow_step

    aws, stubber = stubbed_aws("emr")
    add_step_states(stubber, [("RUNNING", {})])
    stubber.add_response(
        "cancel_steps",
        {"CancelStepsInfoList": []},
        {
            "ClusterId": "j-TEST",
            "StepIds": ["s-1"],
            "StepCancellationOption": "SEND_INTERRUPT",
        },
    )
    with stubber:
        outcome = follow_step(aws, "j-TEST", "s-1", interval=0, timeout=0)
        stubber.assert_no_pending_responses()
    assert outcome.exit_code == 1
    assert "timed out" in outcome.reason


def test_missing_default_role_names_fix() -> None:
    from prism.agents.emrcluster import ensure_roles
    from prism.agents.settings import AgentSettings
    from prism.errors import ConfigError

    aws, stubber = stubbed_aws("iam")
    stubber.add_client_error("get_role", service_error_code="NoSuchEntity")
    stubber.add_client_error("get_instance_profile", service_error_code="NoSuchEntity")
    with stubber, pytest.raises(ConfigError) as raised:
        ensure_roles(aws, AgentSettings(type="emr"), Path("cluster.yml"))
    assert "EMR default role EMR_DefaultRole does not exist" in str(raised.value)
    assert "aws emr create-default-roles" in (raised.value.hint or "")
    assert "create_default_roles: true" in (raised.value.hint or "")


def test_changed_limits_update_running_cluster(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prism.agents.emrcluster import Cluster, settings_tags, update_settings
    from prism.agents.settings import AgentSettings

    created = AgentSettings(
        type="emr",
        managed_scaling={
            "min": 2,
            "max": 8,
            "max_on_demand": None,
            "unit": "instances",
        },
        idle_timeout=45,
    )
    cluster = Cluster(
        "j-TEST",
        "prism-test",
        "WAITING",
        "",
        "",
        None,
        None,
        settings_tags(created),
        "",
    )
    changed = AgentSettings(
        type="emr",
        managed_scaling={"min": 1, "max": 4, "max_on_demand": 2, "unit": "vcpu"},
        idle_timeout=0,
        release_label="emr-7.1.0",
    )
    aws, stubber = stubbed_aws("emr")
    limits = {
        "UnitType": "VCPU",
        "MinimumCapacityUnits": 1,
        "MaximumCapacityUnits": 4,
        "MaximumOnDemandCapacityUnits": 2,
    }
    stubber.add_response(
        "put_managed_scaling_policy",
        {},
        {"ClusterId": "j-TEST", "ManagedScalingPolicy": {"ComputeLimits": limits}},
    )
    stubber.add_response("remove_auto_termination_policy", {}, {"ClusterId": "j-TEST"})
    stubber.add_response("add_tags", {})
    with stubber:
        updated = update_settings(aws, cluster, changed)
        stubber.assert_no_pending_responses()
    assert updated == ["managed_scaling", "idle_timeout"]
    assert "take effect only on a new cluster" in caplog.text


def test_unchanged_settings_make_no_calls() -> None:
    from prism.agents.emrcluster import Cluster, settings_tags, update_settings
    from prism.agents.settings import AgentSettings

    spec = AgentSettings(type="emr", idle_timeout=60)
    cluster = Cluster(
        "j-TEST", "prism-test", "WAITING", "", "", None, None, settings_tags(spec), ""
    )
    aws, stubber = stubbed_aws("emr")
    with stubber:
        assert update_settings(aws, cluster, spec) == []


@dataclass(frozen=True)
class StepResults:
    """What the far side of a step run left: its events and its outputs."""

    events: bytes
    outputs: bytes
    exit_code: int


@pytest.fixture(scope="module")
def step_results(tmp_path_factory: pytest.TempPathFactory) -> StepResults:
    """Run `prism.agents.steprun` here, as a step runs it on the master."""
    from prism.agents.remote import RemoteRun

    folder = tmp_path_factory.mktemp("steprun")
    root = write_project(folder / "project", TOKEN_PROJECT)
    outputs = folder / "outputs.tar"
    result = subprocess.run(
        [sys.executable, "-m", "prism.agents.steprun", str(folder), str(outputs)],
        cwd=root,
        input=RemoteRun().payload({"TOKEN": "from-step"}),
        capture_output=True,
        env=prism_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    return StepResults(result.stdout, outputs.read_bytes(), result.returncode)


def test_step_far_side_packs_outputs(step_results: StepResults) -> None:
    from prism.agents.steprun import OUTPUTS_MANIFEST

    with tarfile.open(fileobj=io.BytesIO(step_results.outputs)) as archive:
        names = archive.getnames()
        manifest = archive.extractfile(OUTPUTS_MANIFEST)
        assert manifest is not None
        written = json.loads(manifest.read())
    assert "output/total.txt" in names
    assert sorted(written) == ["output/rows.json", "output/total.txt"]
    assert b'"event":"run_finished"' in step_results.events


def test_extracted_outputs_stay_in_project(tmp_path: Path) -> None:
    from prism.agents.emrsteps import extract_outputs

    outside = tmp_path / "absolute.txt"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in ("output/ok.txt", "../escaped.txt", str(outside)):
            info = tarfile.TarInfo(name)
            info.size = 2
            archive.addfile(info, io.BytesIO(b"ok"))
    root = tmp_path / "project"
    root.mkdir()
    extract_outputs(buffer.getvalue(), root)
    assert (root / "output/ok.txt").read_text() == "ok"
    assert not (tmp_path / "escaped.txt").exists()
    assert not outside.exists()


def steps_agent(cloud: Cloud, root: Path) -> Any:
    """Return an EMR agent object with the steps transport, staging in moto's S3."""
    from prism.agents import create_agent
    from prism.agents.config import load_agent_file

    cloud.client("s3").create_bucket(Bucket="prism-test-staging")
    agent_file = root / "steps.yml"
    agent_file.write_text(
        "agent:\n"
        "  type: emr\n"
        "  transport: steps\n"
        "  staging_uri: s3://prism-test-staging/prism/\n"
        "  env:\n"
        "    TOKEN: literal\n"
    )
    return create_agent(load_agent_file(agent_file), root)


def follow_stubbed_step(
    agent: Any, states: list[tuple[str, dict[str, Any]]], log_uri: str | None = None
) -> tuple[Any, list[Any]]:
    """Follow step s-1 of cluster j-TEST while the stubbed EMR returns `states`."""
    from botocore.stub import Stubber

    from prism.agents.emrcluster import Cluster
    from prism.agents.emrsteps import StepRun

    cluster = Cluster("j-TEST", "prism-test", "WAITING", "", "", None, log_uri, {}, "")
    run = StepRun(agent, cluster, "s-1", "runs/test")
    run.interval = 0
    run.log_wait = 0
    stubber = Stubber(agent.aws.client("emr"))
    add_step_states(stubber, states)
    events: list[Any] = []
    with stubber:
        finished = run.follow(events.append)
    return finished, events


def test_step_run_shows_events_and_returns_outputs(
    cloud: Cloud, tmp_path: Path, step_results: StepResults
) -> None:
    root = write_project(tmp_path / unique_name("steps"), TOKEN_PROJECT)
    agent = steps_agent(cloud, root)
    agent.staging.put_bytes("runs/test/events.jsonl", step_results.events)
    agent.staging.put_bytes("runs/test/outputs.tar", step_results.outputs)

    finished, events = follow_stubbed_step(agent, [("RUNNING", {}), ("COMPLETED", {})])

    assert finished.exit_code == 0
    assert (root / "output/total.txt").read_text() == "6"
    lines = [getattr(event, "line", "") for event in events]
    assert "token from-step" in lines
    assert agent.staging.get_bytes("runs/test/outputs.tar") is None


def test_failed_step_without_log_uri_is_explained(
    cloud: Cloud, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_project(tmp_path / unique_name("steps"), TOKEN_PROJECT)
    agent = steps_agent(cloud, root)

    finished, _ = follow_stubbed_step(agent, [("FAILED", FAILURE)])

    assert finished.exit_code == 1
    assert "Step s-1 on cluster j-TEST ended FAILED: out of memory" in finished.error
    assert "has no log_uri, so EMR keeps no logs of step s-1" in caplog.text


def test_step_events_read_from_log_uri(
    cloud: Cloud, tmp_path: Path, step_results: StepResults
) -> None:
    root = write_project(tmp_path / unique_name("steps"), TOKEN_PROJECT)
    agent = steps_agent(cloud, root)
    s3 = cloud.client("s3")
    s3.create_bucket(Bucket="prism-test-step-logs")
    s3.put_object(
        Bucket="prism-test-step-logs",
        Key="emr/j-TEST/steps/s-1/stdout.gz",
        Body=gzip.compress(step_results.events),
    )

    finished, events = follow_stubbed_step(
        agent, [("COMPLETED", {})], log_uri="s3://prism-test-step-logs/emr/"
    )

    assert finished.exit_code == 0
    assert "token from-step" in [getattr(event, "line", "") for event in events]


def test_step_run_uploads_bundle_once(cloud: Cloud, tmp_path: Path) -> None:
    from prism.agents.emrcluster import describe_cluster
    from prism.agents.emrsteps import start_step
    from prism.agents.remote import RemoteRun

    root = write_project(tmp_path / unique_name("steps"), TOKEN_PROJECT)
    agent = steps_agent(cloud, root)
    emr = cloud.client("emr")
    cluster_id = emr.run_job_flow(
        Name="steps-target",
        Instances={
            "InstanceGroups": [
                {
                    "InstanceRole": "MASTER",
                    "InstanceType": "m5.xlarge",
                    "InstanceCount": 1,
                }
            ],
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    try:
        cluster = describe_cluster(agent.aws, cluster_id)
        start_step(agent, cluster, RemoteRun(), RemoteRun().payload({}))
        start_step(agent, cluster, RemoteRun(), RemoteRun().payload({}))
        steps = emr.list_steps(ClusterId=cluster_id)["Steps"]
    finally:
        emr.terminate_job_flows(JobFlowIds=[cluster_id])

    listed = cloud.client("s3").list_objects_v2(
        Bucket="prism-test-staging", Prefix=agent.staging.location.prefix
    )
    bundles = [item["Key"] for item in listed["Contents"] if "/bundles/" in item["Key"]]
    assert len(bundles) == 1
    assert len(steps) == 2
    jar = steps[0]["Config"]
    assert jar["Jar"] == "command-runner.jar"
    assert jar["Args"][:2] == ["bash", "-c"]
    assert "prism.agents.steprun" in jar["Args"][2]


# Stands in for the AWS CLI on the master: s3://BUCKET/KEY is a local file.
FAKE_AWS = r"""#!/bin/sh
[ "$1" = s3 ] || exit 2
operation=$2
shift 2
[ "$1" = --quiet ] && shift
local_path() {
  case "$1" in s3://*) echo "/tmp/fake-s3/${1#s3://}" ;; *) echo "$1" ;; esac
}
case $operation in
  cp) target=$(local_path "$2"); mkdir -p "$(dirname "$target")"
      cp "$(local_path "$1")" "$target" ;;
  rm) rm -f "$(local_path "$1")" ;;
  *) exit 2 ;;
esac
"""


def put_on_host(cloud: Cloud, path: str, data: bytes) -> None:
    result = subprocess.run(
        cloud.host.command(f"mkdir -p $(dirname {path}) && cat > {path}"),
        input=data,
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr


def test_step_script_runs_project_on_master(applied: EmrProject) -> None:
    """The run step's script, with a stand-in `aws`, on the applied master."""
    from prism.agents import create_agent
    from prism.agents.bundle import collect_bundle
    from prism.agents.config import load_agent_file
    from prism.agents.emrsteps import run_step_script
    from prism.agents.remote import RemoteRun

    cloud = applied.cloud
    agent = create_agent(load_agent_file(applied.agent_file), applied.root)
    put_on_host(cloud, "/tmp/fake-aws-bin/aws", FAKE_AWS.encode())
    bundle_uri = agent.staging.uri("bundles/test.tar")
    run = "runs/script-test"
    fake = "/tmp/fake-s3/" + agent.staging.uri(run).removeprefix("s3://")
    bundle_path = "/tmp/fake-s3/" + bundle_uri.removeprefix("s3://")
    put_on_host(cloud, bundle_path, collect_bundle(applied.root).to_tar())
    request = RemoteRun(selectors=("extract", "total"))
    put_on_host(cloud, f"{fake}/request.json", request.payload({"TOKEN": "via-step"}))
    script = run_step_script(agent, bundle_uri, run)

    result = cloud.host.run(
        "chmod +x /tmp/fake-aws-bin/aws && PATH=/tmp/fake-aws-bin:$PATH "
        f"bash -c {shlex.quote(script)}"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "token via-step" in result.stdout
    events = cloud.host.run(f"cat {fake}/events.jsonl").stdout
    assert '"event":"run_finished"' in events
    assert cloud.host.run(f"test -e {fake}/request.json").returncode != 0
    outputs = subprocess.run(
        cloud.host.command(f"cat {fake}/outputs.tar"), capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(outputs)) as archive:
        total = archive.extractfile("output/total.txt")
        assert total is not None
        assert total.read() == b"6"


def test_yarn_setup_ships_environment_to_executors(cloud: Cloud) -> None:
    from prism.agents.sparkenv import setup_script

    base = "/tmp/prism-yarn-test"
    prepared = cloud.host.run(
        f"rm -rf {base} && mkdir -p {base}/spark-conf {base}/hadoop-conf && "
        "printf 'spark.master yarn\\nspark.driver.extraClassPath /usr/lib/emrfs/*\\n' "
        f"> {base}/spark-conf/spark-defaults.conf && "
        f"python3 -m venv --without-pip {base}/agent/venv && "
        f"echo 'VALUE = 42' > {base}/agent/venv/lib/python3.11/site-packages/probe.py"
    )
    assert prepared.returncode == 0, prepared.stderr
    script = setup_script(
        f"{base}/agent",
        "fingerprint-1",
        spark_conf=f"{base}/spark-conf",
        hadoop_conf=f"{base}/hadoop-conf",
    )

    setup = cloud.host.run(script)

    assert setup.returncode == 0, setup.stderr
    assert setup.stdout.split()[-1] == "yarn"
    conf = cloud.host.run(f"cat {base}/agent/spark/conf/spark-defaults.conf").stdout
    settings = [line.split(None, 1) for line in conf.splitlines() if line[:1].isalpha()]
    masters = [value for key, value in settings if key == "spark.master"]
    assert masters[-1] == "yarn"
    assert ["spark.driver.extraClassPath", "/usr/lib/emrfs/*"] in settings
    assert [
        "spark.archives",
        f"{base}/agent/spark/environment.tar#environment",
    ] in settings
    executor = cloud.host.run(
        f"mkdir -p {base}/executor/environment && "
        f"tar -C {base}/executor/environment -xf {base}/agent/spark/environment.tar && "
        f"cd {base}/executor && ./environment/bin/python -c "
        "'import probe, sys; print(probe.VALUE, sys.prefix)'"
    )
    assert executor.returncode == 0, executor.stderr
    assert executor.stdout.split() == ["42", f"{base}/executor/environment"]


def test_run_environment_points_executors_at_archive() -> None:
    from prism.agents.sparkenv import run_environment

    yarn = run_environment("yarn", "/home/hadoop/agent")
    local = run_environment("local", "/home/hadoop/agent")
    assert yarn["SPARK_CONF_DIR"] == "/home/hadoop/agent/spark/conf"
    assert yarn["PYSPARK_PYTHON"] == "./environment/bin/python"
    assert yarn["HADOOP_CONF_DIR"] == "/etc/hadoop/conf"
    assert local["PYSPARK_PYTHON"] == "/home/hadoop/agent/venv/bin/python"
    assert "HADOOP_CONF_DIR" not in local


def test_default_role_missing_its_policy_is_repaired(cloud: Cloud) -> None:
    from prism.agents.aws import Aws
    from prism.agents.emrcluster import DEFAULT_SERVICE_ROLE, ensure_roles
    from prism.agents.settings import AgentSettings

    settings = AgentSettings(type="emr", create_default_roles=True)
    aws = Aws("us-east-1", Path("cluster.yml"))
    ensure_roles(aws, settings, Path("cluster.yml"))
    iam = cloud.client("iam")
    for policy in iam.list_attached_role_policies(RoleName=DEFAULT_SERVICE_ROLE)[
        "AttachedPolicies"
    ]:
        iam.detach_role_policy(
            RoleName=DEFAULT_SERVICE_ROLE, PolicyArn=policy["PolicyArn"]
        )

    ensure_roles(aws, settings, Path("cluster.yml"))

    attached = iam.list_attached_role_policies(RoleName=DEFAULT_SERVICE_ROLE)
    assert attached["AttachedPolicies"]
