"""Benchmark the EMR agent: `apply` against moto, and runs on a Spark container.

Starts moto's server and a `prism-test/spark:bookworm` container (sshd, OpenJDK
17, Python), both on 127.0.0.1 only, writes the SSH benchmark's `shop-metrics`
project with an EMR agent file, and measures:

- the cold `prism agent apply` (IAM roles, security group, staging bucket, the
  cluster in moto, SSH, wheelhouse, environment on the container, Spark setup),
  split into the steps Prism logs, and the no-op apply;
- rounds of `prism agent run` after a one-file edit, with the bytes the
  container received, against `rsync -a` of the same edit to a folder that
  holds the previous version;
- the same run through wrappers of `ssh` and `rsync` that time each call, split
  into phases: sync (push and prune), environment (the checks on the master),
  run (the remote `prism run`), outputs back, and the client's own time, which
  includes the AWS calls to moto.

The agent reaches the container through a ProxyCommand that relays TCP to its
published port, so its SSH traffic is counted like rsync's. Traffic is the
change in the container's interface counters (every interface but `lo`).
Linux only, like the SSH benchmark it borrows from.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common import write_report
from engine import WORK_DIR, log, markdown_table
from ssh import (
    COUNTERS_SCRIPT,
    HOST_ALIAS,
    Traffic,
    check_image,
    free_port,
    remove_container,
    start_container,
    wait_for_sshd,
    write_shims,
)
from ssh import write_project as write_shop_project

EMR_WORK_DIR = WORK_DIR / "emr"
CACHE_DIR = EMR_WORK_DIR / "cache"
DATA_DIR = EMR_WORK_DIR / "data"
LOGS_DIR = EMR_WORK_DIR / "logs"
CLIENT_DIR = EMR_WORK_DIR / "client"
SHIM_DIR = EMR_WORK_DIR / "shims"
PROJECT_ROOT = EMR_WORK_DIR / "projects" / "shop-metrics"
AGENT_FILE = "emr.yml"
EDITED_FILE = "tasks/metrics/metric_17.py"
FLOOR_FOLDER = "prism-bench/edit"
DEFAULT_IMAGE = "prism-test/spark:bookworm"
KEY_NAME = "prism-bench-key"
BYTE_GOAL = 1.2
UP_TO_DATE = "is up to date; nothing to do"
TIMEOUT_S = 900.0

RELAY = """\
import os, socket, sys, threading

connection = socket.create_connection(("127.0.0.1", int(sys.argv[1])))


def upstream():
    while True:
        data = os.read(0, 65536)
        if not data:
            connection.shutdown(socket.SHUT_WR)
            return
        connection.sendall(data)


threading.Thread(target=upstream, daemon=True).start()
while True:
    data = connection.recv(65536)
    if not data:
        break
    os.write(1, data)
"""

# Prism's log line at the end of each lifecycle step, e.g. "Building the
# wheelhouse: done in 5.9s".
STEP_DONE = re.compile(r"\| INFO  \| (?P<step>.+): done in (?P<seconds>[\d.]+)s$")


@dataclass(frozen=True)
class Container:
    id: str
    port: int
    key: Path

    def run(self, command: str) -> str:
        result = subprocess.run(
            [
                "docker",
                "exec",
                "-u",
                "prism",
                "-w",
                "/home/prism",
                self.id,
                "sh",
                "-c",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise SystemExit(f"`{command}` failed in the container: {result.stderr}")
        return result.stdout

    def traffic(self) -> Traffic:
        """Read the counters until two reads agree, so closing packets are in."""
        previous = Traffic.parse(self.run(COUNTERS_SCRIPT))
        for _ in range(5):
            current = Traffic.parse(self.run(COUNTERS_SCRIPT))
            if current == previous:
                return current
            previous = current
        return previous


@dataclass
class Timed:
    seconds: float
    output: str
    traffic: Traffic


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    server = Path(sys.executable).with_name("moto_server")
    if not server.exists():
        raise SystemExit("moto_server is missing; pip install 'moto[server]'")
    port = free_port()
    environment = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    with open(LOGS_DIR / "moto.log", "wb") as output:
        process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    import urllib.request

    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                return process, endpoint
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("moto_server did not respond in 30 s")


def aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(CLIENT_DIR / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(CLIENT_DIR / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "XDG_CACHE_HOME": str(CACHE_DIR),
        "XDG_DATA_HOME": str(DATA_DIR),
    }


def import_key(endpoint: str, public_key: str) -> None:
    import boto3

    ec2 = boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ec2.import_key_pair(KeyName=KEY_NAME, PublicKeyMaterial=public_key.encode())


def agent_text(container: Container) -> str:
    relay = CLIENT_DIR / "relay.py"
    relay.write_text(RELAY)
    return (
        "agent:\n"
        "  type: emr\n"
        "  instance_groups:\n"
        "    master: {instance_type: m5.xlarge}\n"
        "    core: {instance_type: m5.xlarge, count: 2}\n"
        "  managed_scaling: {min: 2, max: 8}\n"
        "  idle_timeout: 30\n"
        f"  key_name: {KEY_NAME}\n"
        f"  identity_file: {container.key}\n"
        "  ssh_user: prism\n"
        "  ssh_cidr: 203.0.113.7/32\n"
        f"  ssh_proxy: {sys.executable} {relay} {container.port}\n"
        "  python: python3\n"
        "  create_default_roles: true\n"
        "  requirements: requirements.txt\n"
    )


def prism(
    container: Container,
    environment: dict[str, str],
    *args: str,
    name: str,
    path: str | None = None,
) -> Timed:
    """Run `prism ARGS` in the project; fail the benchmark if it fails."""
    env = {**os.environ, **environment}
    if path is not None:
        env["PATH"] = f"{path}:{env['PATH']}"
    before = container.traffic()
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "prism", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    seconds = time.perf_counter() - started
    traffic = container.traffic() - before
    output = result.stdout + result.stderr
    (LOGS_DIR / f"{name}.log").write_text(output)
    if result.returncode != 0:
        raise SystemExit(f"`prism {' '.join(args)}` failed; see {LOGS_DIR}/{name}.log")
    return Timed(seconds, output, traffic)


def rsync_edit(container: Container, config: Path) -> Timed:
    before = container.traffic()
    started = time.perf_counter()
    subprocess.run(
        [
            "rsync",
            "-a",
            "--filter=:- .gitignore",
            "-e",
            f"ssh -F {config} -T",
            f"{PROJECT_ROOT}/",
            f"{HOST_ALIAS}:{FLOOR_FOLDER}/",
        ],
        check=True,
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    seconds = time.perf_counter() - started
    return Timed(seconds, "", container.traffic() - before)


def write_ssh_config(port: int, key: Path) -> Path:
    config = CLIENT_DIR / "ssh_config"
    config.write_text(
        f"Host {HOST_ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User prism\n"
        f"  IdentityFile {key}\n  IdentitiesOnly yes\n  BatchMode yes\n"
        "  StrictHostKeyChecking accept-new\n"
        f"  UserKnownHostsFile {CLIENT_DIR / 'known_hosts'}\n"
        # One connection carries every rsync, as one carries a whole agent run.
        "  ControlMaster auto\n"
        f"  ControlPath {CLIENT_DIR}/control-%C\n"
        "  ControlPersist 900\n"
    )
    return config


def edit_project(round_number: int) -> None:
    with open(PROJECT_ROOT / EDITED_FILE, "a") as handle:
        handle.write(f"# edit {round_number} at {time.time()}\n")


def phase_of(tool: str, words: Sequence[str]) -> str:
    text = " ".join(words)
    if tool == "rsync":
        pulls = len(words) > 1 and ":" in words[-2] and not words[-2].startswith("/")
        return "outputs back" if pulls else "sync"
    # The run's command also prunes the mirror, with the file list in it.
    if "prism.agents.remote" in text:
        return "run"
    if "-G" in words or "-O" in words:
        return "client"
    return "environment"


@dataclass
class Profile:
    """A profiled run: seconds by phase, and the bytes its sync sent the host."""

    phases: dict[str, float]
    sync_bytes: int


def read_profile(log_path: Path, total: float) -> Profile:
    """Sum the wrapped calls' times by phase; the rest is the client's own time.

    The wrappers' reads of the container's counters happen outside each call's
    start and end; their time is left out of the client's.
    """
    phases = {"sync": 0.0, "environment": 0.0, "run": 0.0, "outputs back": 0.0}
    overhead = 0.0
    sync_bytes = 0
    for record in log_path.read_text().split("\x1e\n"):
        if not record:
            continue
        tool, entered, start, end, left, before, after, argv = record.split("\t", 7)
        phase = phase_of(tool, argv.split("\x1f")[:-1])
        seconds = (int(end) - int(start)) / 1e9
        if phase == "sync":
            traffic = Traffic.parse(after) - Traffic.parse(before)
            sync_bytes += traffic.to_host
        overhead += (int(left) - int(entered)) / 1e9 - seconds
        if phase in phases:
            phases[phase] += seconds
        else:
            overhead += seconds
    phases["client and AWS calls"] = total - overhead - sum(phases.values())
    return Profile(phases, sync_bytes)


def file_list_bytes() -> int:
    """Return the size of the file list that the run's command carries to prune."""
    import base64
    import zlib

    from prism.agents.bundle import collect_bundle

    root = PROJECT_ROOT.resolve()
    names = "\0".join(
        str(path.relative_to(root)) for path in collect_bundle(root).files
    )
    return len(base64.b64encode(zlib.compress(names.encode())))


def apply_steps(output: str) -> list[tuple[str, float]]:
    steps = []
    for line in output.splitlines():
        match = STEP_DONE.search(line.strip())
        if match and not match.group("step").startswith("Applying agent"):
            steps.append((match.group("step"), float(match.group("seconds"))))
    return steps


def venv_snapshot(container: Container, folder: str) -> str:
    return container.run(
        f"cd {folder} && stat -c '%i %Y' venv fingerprint | tr '\\n' ' ' && "
        "find venv -newer spark/fingerprint | wc -l"
    ).strip()


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def run_benchmark(args: argparse.Namespace) -> str:
    for folder in (LOGS_DIR, CLIENT_DIR, DATA_DIR):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    check_image(args.image)
    key = CLIENT_DIR / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
    )
    public_key = key.with_suffix(".pub").read_text()
    moto, endpoint = start_moto()
    port = free_port()
    container = Container(start_container(args.image, public_key, port), port, key)
    try:
        wait_for_sshd(port)
        import_key(endpoint, public_key)
        return measure(args, container, endpoint)
    finally:
        try:
            prism_env = aws_env(endpoint)
            subprocess.run(
                [sys.executable, "-m", "prism", "agent", "delete", "-f", AGENT_FILE],
                cwd=PROJECT_ROOT,
                env={**os.environ, **prism_env},
                capture_output=True,
                timeout=TIMEOUT_S,
            )
        finally:
            remove_container(container.id)
            moto.terminate()
            moto.wait(timeout=30)


def measure(args: argparse.Namespace, container: Container, endpoint: str) -> str:
    environment = aws_env(endpoint)
    config = write_ssh_config(container.port, container.key)
    write_shop_project(PROJECT_ROOT, "")
    (PROJECT_ROOT / "ssh.yml").unlink()
    (PROJECT_ROOT / AGENT_FILE).write_text(agent_text(container))

    log("cold apply")
    shutil.rmtree(CACHE_DIR / "prism" / "wheelhouses", ignore_errors=True)
    cold = prism(
        container, environment, "agent", "apply", "-f", AGENT_FILE, name="apply-cold"
    )
    noop = [
        prism(
            container,
            environment,
            "agent",
            "apply",
            "-f",
            AGENT_FILE,
            name=f"apply-noop-{i}",
        )
        for i in range(args.repeat)
    ]
    if not all(UP_TO_DATE in item.output for item in noop):
        raise SystemExit(f"a second apply did work; see {LOGS_DIR}")
    folder = container.run("ls -d $HOME/.prism/shop-metrics-*/emr").strip()
    before = venv_snapshot(container, folder)
    container.run(f"mkdir -p {FLOOR_FOLDER}")
    rsync_edit(container, config)
    # The first run ships the whole project; the rounds measure re-runs.
    prism(container, environment, "agent", "run", "-f", AGENT_FILE, name="run-check")

    runs, floors, profiles = [], [], []
    for number in range(args.repeat):
        log(f"round {number + 1} of {args.repeat}")
        edit_project(number)
        runs.append(
            prism(
                container,
                environment,
                "agent",
                "run",
                "-f",
                AGENT_FILE,
                name=f"run-{number}",
            )
        )
        floors.append(rsync_edit(container, config))
        edit_project(number + 1000)
        rsync_edit(container, config)
        shims_log = LOGS_DIR / f"shims-{number}.log"
        shims_log.unlink(missing_ok=True)
        write_shims(SHIM_DIR, container.id, shims_log)
        profiled = prism(
            container,
            environment,
            "agent",
            "run",
            "-f",
            AGENT_FILE,
            name=f"profiled-{number}",
            path=str(SHIM_DIR),
        )
        profiles.append(read_profile(shims_log, profiled.seconds))
    after = venv_snapshot(container, folder)
    return report(args, cold, noop, runs, floors, profiles, before, after)


def report(
    args: argparse.Namespace,
    cold: Timed,
    noop: list[Timed],
    runs: list[Timed],
    floors: list[Timed],
    profiles: list[Profile],
    before: str,
    after: str,
) -> str:
    run_bytes = [item.traffic.to_host for item in runs]
    floor_bytes = [item.traffic.to_host for item in floors]
    listing = file_list_bytes()
    sync_bytes = [profile.sync_bytes + listing for profile in profiles]
    ratio = median(sync_bytes) / median(floor_bytes)
    run_ratio = median(run_bytes) / median(floor_bytes)
    lines = [
        "# EMR agent benchmark",
        "",
        f"`.venv/bin/python benchmarks/emr.py --repeat {args.repeat}`, image "
        f"{args.image}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs.",
        "",
        markdown_table(
            ["apply against moto", "time (s)"],
            [
                ["cold `prism agent apply`", f"{cold.seconds:.2f}"],
                *[
                    [f"- {step}", f"{seconds:.1f}"]
                    for step, seconds in apply_steps(cold.output)
                ],
                [
                    "no-op apply, median (best)",
                    f"{median([n.seconds for n in noop]):.2f} "
                    f"({min(n.seconds for n in noop):.2f})",
                ],
            ],
        ),
        "",
        markdown_table(
            ["run after a one-file edit", "median", "best"],
            [
                [
                    "`prism agent run` time (s)",
                    f"{median([r.seconds for r in runs]):.2f}",
                    f"{min(r.seconds for r in runs):.2f}",
                ],
                [
                    "`rsync -a` of the edit, bytes to the host",
                    f"{median(floor_bytes):.0f}",
                    f"{min(floor_bytes)}",
                ],
                [
                    f"agent run's sync: rsync push, plus the {listing}-byte "
                    "file list in the run's command",
                    f"{median(sync_bytes):.0f}",
                    f"{min(sync_bytes)}",
                ],
                [
                    f"sync bytes / rsync bytes (goal at most {BYTE_GOAL})",
                    f"{ratio:.2f}",
                    "met" if ratio <= BYTE_GOAL else "not met",
                ],
                [
                    "whole `prism agent run`, bytes to the host",
                    f"{median(run_bytes):.0f}",
                    f"{min(run_bytes)}",
                ],
                ["whole run bytes / rsync bytes (context)", f"{run_ratio:.2f}", ""],
            ],
        ),
        "",
        markdown_table(
            ["phase of a profiled run", "median (s)"],
            [
                [name, f"{median([p.phases[name] for p in profiles]):.3f}"]
                for name in profiles[0].phases
            ],
        ),
        "",
        markdown_table(
            ["environment on the master", "before the runs", "after the runs"],
            [
                [
                    "inode and mtime of venv/ and of fingerprint; paths in "
                    "venv/ newer than the Spark setup",
                    before,
                    after,
                ]
            ],
        ),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    write_report(run_benchmark(args), args.output)


if __name__ == "__main__":
    main()
