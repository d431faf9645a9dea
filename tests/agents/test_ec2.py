"""The EC2 agent against moto's server (AWS APIs) and an sshd container (the host).

moto plays EC2 and SSM on 127.0.0.1; `tests.agents.cloud` describes the setup.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading
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
from tests.agents.sshd import SshHost

pytestmark = pytest.mark.integration

PROJECT_FILES = TOKEN_PROJECT


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    with running_cloud(tmp_path_factory.mktemp("ec2")) as cloud:
        yield cloud


def agent_text(cloud: Cloud, *, own_key: bool = True, extra: str = "") -> str:
    key = (
        f"  key_name: {KEY_NAME}\n  identity_file: {cloud.host.key}\n"
        if own_key
        else ""
    )
    return (
        "agent:\n"
        "  type: ec2\n"
        "  instance_type: t3.micro\n"
        f"  ssh_cidr: {TEST_CIDR}\n"
        "  ssh_user: prism\n"
        f"  ssh_proxy: {cloud.host.proxy_command}\n"
        "  python: python3\n"
        "  idle_timeout: 30\n"
        f"{key}"
        "  env:\n"
        "    TOKEN: ${PRISM_TEST_SECRET}\n"
        f"{extra}"
    )


def new_project(tmp_path: Path, cloud: Cloud, **options: Any) -> tuple[Path, Path]:
    root = write_project(tmp_path / unique_name("ec2"), PROJECT_FILES)
    agent_file = root / "cloud.yml"
    agent_file.write_text(agent_text(cloud, **options))
    return root, agent_file


def tagged_instances(cloud: Cloud, project: Path) -> list[dict[str, Any]]:
    """Return the instances, in any state but terminated, tagged for `project`."""
    response = cloud.client("ec2").describe_instances(
        Filters=[
            {"Name": "tag:prism:agent", "Values": ["cloud"]},
            {"Name": "tag:prism:managed-by", "Values": ["prism"]},
            {
                "Name": "instance-state-name",
                "Values": ["pending", "running", "stopping", "stopped"],
            },
        ]
    )
    return [
        instance
        for reservation in response["Reservations"]
        for instance in reservation["Instances"]
        if tag_value(instance, "prism:project").startswith(project.name + "-")
    ]


@dataclass(frozen=True)
class Ec2Project:
    root: Path
    agent_file: Path
    cloud: Cloud


@pytest.fixture(scope="module")
def applied(
    cloud: Cloud, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ec2Project]:
    root, agent_file = new_project(tmp_path_factory.mktemp("ec2project"), cloud)
    agents = AppliedAgents()
    try:
        agents.apply(root, agent_file)
        yield Ec2Project(root, agent_file, cloud)
    finally:
        agents.cleanup()


def test_apply_launches_one_tagged_hardened_instance(applied: Ec2Project) -> None:
    ec2 = applied.cloud.client("ec2")
    [instance] = tagged_instances(applied.cloud, applied.root)
    assert instance["State"]["Name"] == "running"
    assert instance["InstanceType"] == "t3.micro"
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert tag_value(instance, "prism:agent") == "cloud"
    assert tag_value(instance, "prism:managed-by") == "prism"
    volumes = ec2.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance["InstanceId"]]}]
    )["Volumes"]
    assert volumes and all(volume["Encrypted"] for volume in volumes)
    behaviour = ec2.describe_instance_attribute(
        InstanceId=instance["InstanceId"],
        Attribute="instanceInitiatedShutdownBehavior",
    )["InstanceInitiatedShutdownBehavior"]["Value"]
    assert behaviour == "stop"


def test_security_group_admits_ssh_only_from_ssh_cidr(applied: Ec2Project) -> None:
    [instance] = tagged_instances(applied.cloud, applied.root)
    [group] = instance["SecurityGroups"]
    described, ranges = ssh_ranges(applied.cloud, group["GroupId"])
    assert ranges == [(22, TEST_CIDR)]
    assert tag_value(described, "prism:agent") == "cloud"


def test_idle_watchdog_runs_on_the_instance(applied: Ec2Project) -> None:
    result = applied.cloud.host.run("pgrep -af idle-watchdog.py")
    assert result.returncode == 0, result.stderr
    assert "--timeout 1800" in result.stdout


def test_run_streams_events_and_brings_outputs_back(applied: Ec2Project) -> None:
    result = prism(
        "agent",
        "run",
        "-f",
        str(applied.agent_file),
        cwd=applied.root,
        env=SECRET_ENV,
    )
    assert result.returncode == 0, output_of(result)
    assert (applied.root / "output/total.txt").read_text() == "6"
    assert "token ****" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_second_apply_changes_nothing(applied: Ec2Project) -> None:
    result = prism("agent", "apply", "-f", str(applied.agent_file), cwd=applied.root)
    assert result.returncode == 0, output_of(result)
    assert "up to date" in result.stdout + result.stderr
    assert len(tagged_instances(applied.cloud, applied.root)) == 1


def test_status_names_instance_and_idle_timeout(applied: Ec2Project) -> None:
    result = prism("agent", "status", "-f", str(applied.agent_file), cwd=applied.root)
    assert result.returncode == 0, output_of(result)
    [instance] = tagged_instances(applied.cloud, applied.root)
    assert instance["InstanceId"] in result.stdout
    assert "30 min, then stop" in result.stdout


def test_run_starts_a_stopped_instance(applied: Ec2Project) -> None:
    [instance] = tagged_instances(applied.cloud, applied.root)
    applied.cloud.client("ec2").stop_instances(InstanceIds=[instance["InstanceId"]])
    result = prism(
        "agent", "run", "-f", str(applied.agent_file), cwd=applied.root, env=SECRET_ENV
    )
    assert result.returncode == 0, output_of(result)
    [instance] = tagged_instances(applied.cloud, applied.root)
    assert instance["State"]["Name"] == "running"


def test_delete_finds_resources_by_tags_without_state(
    cloud: Cloud, tmp_path: Path
) -> None:
    root, agent_file = new_project(tmp_path, cloud)
    AppliedAgents().apply(root, agent_file)
    [instance] = tagged_instances(cloud, root)
    group = instance["SecurityGroups"][0]["GroupId"]
    subprocess.run(["rm", "-rf", str(root / ".prism")], check=True)

    result = prism("agent", "delete", "-f", str(agent_file), cwd=root)

    assert result.returncode == 0, output_of(result)
    assert f"terminated instance {instance['InstanceId']}" in result.stdout
    assert tagged_instances(cloud, root) == []
    assert not security_group_exists(cloud, group)
    # The key pair is the user's own (key_name), so it stays.
    pairs = cloud.client("ec2").describe_key_pairs(KeyNames=[KEY_NAME])["KeyPairs"]
    assert len(pairs) == 1


def _emulate_cloud_init(cloud: Cloud, stop: threading.Event) -> None:
    """Authorize each key pair Prism writes, as cloud-init does at first boot."""
    seen: set[Path] = set()
    while not stop.is_set():
        for key in cloud.data_home.glob("prism/ec2/*/key.pem"):
            if key in seen:
                continue
            public = subprocess.run(
                ["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True
            )
            if public.returncode == 0:
                cloud.host.authorize(public.stdout)
                seen.add(key)
        time.sleep(0.2)


def test_generated_key_pair_is_private_and_removed(
    cloud: Cloud, tmp_path: Path
) -> None:
    root, agent_file = new_project(tmp_path, cloud, own_key=False)
    stop = threading.Event()
    watcher = threading.Thread(target=_emulate_cloud_init, args=(cloud, stop))
    watcher.start()
    try:
        applied = prism("agent", "apply", "-f", str(agent_file), cwd=root)
    finally:
        stop.set()
        watcher.join()
    assert applied.returncode == 0, output_of(applied)
    [key_file] = cloud.data_home.glob(f"prism/ec2/{root.name}-*/key.pem")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_name = f"prism-{key_file.parent.name}"
    ec2 = cloud.client("ec2")
    [pair] = ec2.describe_key_pairs(KeyNames=[key_name])["KeyPairs"]
    assert tag_value(pair, "prism:managed-by") == "prism"

    deleted = prism("agent", "delete", "-f", str(agent_file), cwd=root)

    assert deleted.returncode == 0, output_of(deleted)
    remaining = ec2.describe_key_pairs(
        Filters=[{"Name": "key-name", "Values": [key_name]}]
    )["KeyPairs"]
    assert remaining == []
    assert not key_file.exists()


def test_interrupted_apply_resumes_with_same_instance(
    cloud: Cloud, tmp_path: Path
) -> None:
    root, agent_file = new_project(tmp_path, cloud)
    agents = AppliedAgents()
    agents.applied.append((root, agent_file))
    process = start_apply(root, agent_file, new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not tagged_instances(cloud, root) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tagged_instances(cloud, root), "no instance was launched"
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        assert process.returncode != 0, output

        agents.apply(root, agent_file)
        assert len(tagged_instances(cloud, root)) == 1
    finally:
        if process.poll() is None:
            process.kill()
        agents.cleanup()


def test_second_apply_during_an_apply_is_refused(cloud: Cloud, tmp_path: Path) -> None:
    root, agent_file = new_project(tmp_path, cloud)
    agents = AppliedAgents()
    agents.applied.append((root, agent_file))
    lock = root / ".prism" / "locks" / "cloud.lock"
    process = start_apply(root, agent_file)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            lock.exists() and "apply" in lock.read_text()
        ):
            time.sleep(0.02)
        second = prism("agent", "apply", "-f", str(agent_file), cwd=root)
        assert second.returncode == 2, output_of(second)
        assert "busy" in second.stderr
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
    finally:
        if process.poll() is None:
            process.kill()
        agents.cleanup()


def test_missing_key_pair_is_a_clear_error(cloud: Cloud, tmp_path: Path) -> None:
    root, agent_file = new_project(tmp_path, cloud)
    agent_file.write_text(
        agent_file.read_text().replace(KEY_NAME, "no-such-key"),
    )
    result = prism("agent", "apply", "-f", str(agent_file), cwd=root)
    assert result.returncode == 2, output_of(result)
    assert "agent.key_name: no key pair named 'no-such-key'" in result.stderr
    assert "Traceback" not in result.stderr
    assert tagged_instances(cloud, root) == []


def test_unknown_subnet_is_reported_without_traceback(
    cloud: Cloud, tmp_path: Path
) -> None:
    root, agent_file = new_project(
        tmp_path, cloud, extra="  subnet_id: subnet-00000000000000000\n"
    )
    result = prism("agent", "apply", "-f", str(agent_file), cwd=root)
    assert result.returncode == 2, output_of(result)
    assert "InvalidSubnetID" in result.stderr
    assert "Traceback" not in result.stderr
    assert tagged_instances(cloud, root) == []


def test_missing_credentials_are_a_clear_error(cloud: Cloud, tmp_path: Path) -> None:
    root, agent_file = new_project(tmp_path, cloud)
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    result = prism("agent", "apply", "-f", str(agent_file), cwd=root, env=env)
    assert result.returncode == 2, output_of(result)
    assert "No AWS credentials found" in result.stderr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("  instance_typ: t3.micro\n", "Did you mean 'instance_type'?"),
        ("  ssh_cidr: everyone\n", "agent.ssh_cidr"),
        ("  idle_action: sleep\n", "agent.idle_action"),
        ("  volume_gb: 2\n", "agent.volume_gb"),
        ("  idle_timeout: soon\n", "agent.idle_timeout"),
        ("  idle_timeout: .inf\n", "agent.idle_timeout"),
        ("  idle_timeout: 0.001\n", "agent.idle_timeout"),
        ("  cluster_id: j-1\n", "'cluster_id' is a key of emr agents only"),
    ],
)
def test_bad_ec2_settings_exit_2_naming_the_key(
    tmp_path: Path, line: str, message: str
) -> None:
    root = write_project(tmp_path / unique_name("ec2"), PROJECT_FILES)
    agent_file = root / "cloud.yml"
    agent_file.write_text("agent:\n  type: ec2\n  instance_type: t3.micro\n" + line)
    result = prism("agent", "apply", "-f", str(agent_file), cwd=root)
    assert result.returncode == 2, output_of(result)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_instance_type_is_required(tmp_path: Path) -> None:
    root = write_project(tmp_path / unique_name("ec2"), PROJECT_FILES)
    agent_file = root / "cloud.yml"
    agent_file.write_text("agent:\n  type: ec2\n")
    result = prism("agent", "apply", "-f", str(agent_file), cwd=root)
    assert result.returncode == 2, output_of(result)
    assert "agent.instance_type" in result.stderr


def test_idle_watchdog_acts_only_after_sessions_end(cloud: Cloud) -> None:
    """The watchdog's own logic, run on the sshd host with a harmless action."""
    host = cloud.host
    script = (
        Path(__file__).parents[2] / "src/prism/agents/idle_watchdog.py"
    ).read_bytes()
    copy = subprocess.run(
        host.command("cat > /tmp/watchdog.py"),
        input=script,
        capture_output=True,
    )
    assert copy.returncode == 0, copy.stderr
    host.container.exec_run(["rm", "-f", "/tmp/fired"])
    session = subprocess.Popen(
        host.command("sleep 4"),
        stdin=subprocess.DEVNULL,
    )
    try:
        time.sleep(1)
        host.container.exec_run(
            [
                "python3",
                "/tmp/watchdog.py",
                "--timeout",
                "1.5",
                "--interval",
                "0.2",
                "--action",
                "touch /tmp/fired",
            ],
            user="prism",
            detach=True,
        )
        time.sleep(2)
        assert not _fired(host), "the watchdog acted while an SSH session was open"
        session.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not _fired(host) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _fired(host), "the watchdog did not act once the host was idle"
    finally:
        if session.poll() is None:
            session.kill()


def _fired(host: SshHost) -> bool:
    return host.container.exec_run(["test", "-f", "/tmp/fired"]).exit_code == 0


def test_failed_apply_leaves_nothing_delete_misses(
    cloud: Cloud, tmp_path: Path
) -> None:
    root, agent_file = new_project(
        tmp_path, cloud, own_key=False, extra="  ami: ami-00000000000000000\n"
    )
    result = prism("agent", "apply", "-f", str(agent_file), cwd=root)
    assert result.returncode == 2, output_of(result)
    assert "agent.ami" in result.stderr or "InvalidAMIID" in result.stderr
    ec2 = cloud.client("ec2")
    filters = [{"Name": "tag:prism:project", "Values": [f"{root.name}-*"]}]
    assert ec2.describe_security_groups(Filters=filters)["SecurityGroups"]

    deleted = prism("agent", "delete", "-f", str(agent_file), cwd=root)

    assert deleted.returncode == 0, output_of(deleted)
    assert ec2.describe_security_groups(Filters=filters)["SecurityGroups"] == []
    assert ec2.describe_key_pairs(Filters=filters)["KeyPairs"] == []


def test_missing_identity_file_stops_before_launch(
    cloud: Cloud, tmp_path: Path
) -> None:
    root, agent_file = new_project(tmp_path, cloud)
    agent_file.write_text(
        agent_file.read_text().replace(str(cloud.host.key), "/nonexistent/key.pem")
    )
    result = prism("agent", "apply", "-f", str(agent_file), cwd=root)
    assert result.returncode == 2, output_of(result)
    assert "agent.identity_file: /nonexistent/key.pem does not exist" in result.stderr
    assert tagged_instances(cloud, root) == []
