"""Benchmark the SSH agent against rsync and a run on the host itself.

Starts its own sshd container (`prism-test/sshd:bookworm`, published on 127.0.0.1
only) and generates a project of about 200 small files and a few hundred KB of
data. After applying an SSH agent to it, it measures in interleaved rounds the
wall time and the network traffic of:

- `prism agent run -f ssh.yml` after a one-file edit;
- `rsync -a` of the same edit to a folder on the host that holds the previous
  version, and `prism run` there, over ssh, with the agent's virtual environment;
- `rsync -a` of the whole project to a fresh folder on the host.

Traffic is read from the container's network interface counters before and after
every process, the same way for every command. Then more agent runs, through
wrappers of ssh and rsync, record the time and traffic of each call they make.
See benchmarks/README.md for what each number means.

Linux only, because it reuses the process runner of engine.py, which waits on child
processes through `os.pidfd_open`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agents import append_comment, source_hash
from common import first_line, machine_description, require_image, write_report
from engine import (
    OURS_PRISM,
    WORK_DIR,
    Command,
    Measurement,
    Sample,
    failure_of,
    interpreter_of,
    log,
    markdown_table,
    run_process,
    version_of_ours,
)

SSH_WORK_DIR = WORK_DIR / "ssh"
CACHE_DIR = SSH_WORK_DIR / "cache"
LOGS_DIR = SSH_WORK_DIR / "logs"
CLIENT_DIR = SSH_WORK_DIR / "client"
SHIM_DIR = SSH_WORK_DIR / "shims"
PROJECT_ROOT = SSH_WORK_DIR / "projects" / "shop-metrics"
DEFAULT_IMAGE = "prism-test/sshd:bookworm"
CONTAINER_LABEL = "prism-bench=ssh"

HOST_ALIAS = "prism-bench-host"
AGENT_FILE = "ssh.yml"
AGENT_FOLDER = "prism-bench/agent"
EDIT_FOLDER = "prism-bench/edit"
FRESH_FOLDER = "prism-bench/fresh"
VENV_MARKER = "prism-bench/venv-marker"
RUN_MARKER = "prism-bench/run-marker"
REMOTE_PYTHON = f"$HOME/{AGENT_FOLDER}/venv/bin/python"
REQUIREMENTS = ("python-dateutil", "PyYAML")

RUN_TIMEOUT_S = 300.0
APPLY_TIMEOUT_S = 900.0
SETUP_TIMEOUT_S = 120.0
SSHD_WAIT_S = 30.0

YEARS = (2021, 2022, 2023, 2024)
ORDERS_PER_YEAR = 2000
STORES = 10
HELPER_MODULES = 89
METRICS = 80
METRIC_TARGET_EVERY = 8
EDITED_TASK = Path("tasks") / "metrics" / "metric_17.py"
REPORT_TARGET = Path("reports") / "summary.md"
HOST_RUN_MARKER = "prism-bench-host-run"
UP_TO_DATE_TEXT = "is up to date; nothing to do"
# The project's .gitignore: run files and Prism's folders. Prism never ships them
# either, so both rsync commands copy the same files as Prism.
GITIGNORE = "output/\nreports/\n__pycache__/\n.prism/\n.compiled/\nlogs.log\n"

BYTE_GOAL = 1.2
TIME_GOAL = 2.0


@dataclass(frozen=True)
class Traffic:
    """Bytes and packets the container received (from the client) and sent back."""

    to_host: int = 0
    from_host: int = 0
    packets_to_host: int = 0
    packets_from_host: int = 0

    def __sub__(self, other: Traffic) -> Traffic:
        return Traffic(
            self.to_host - other.to_host,
            self.from_host - other.from_host,
            self.packets_to_host - other.packets_to_host,
            self.packets_from_host - other.packets_from_host,
        )

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(
            self.to_host + other.to_host,
            self.from_host + other.from_host,
            self.packets_to_host + other.packets_to_host,
            self.packets_from_host + other.packets_from_host,
        )

    @classmethod
    def parse(cls, text: str) -> Traffic:
        """Sum the output of COUNTERS_SCRIPT: four counters per interface."""
        values = [int(word) for word in text.split()]
        return cls(*(sum(values[offset::4]) for offset in range(4)))


# Prints rx_bytes, tx_bytes, rx_packets and tx_packets of every interface but lo.
COUNTERS_SCRIPT = (
    'for d in /sys/class/net/*; do [ "${d##*/}" = lo ] || '
    "cat $d/statistics/rx_bytes $d/statistics/tx_bytes "
    "$d/statistics/rx_packets $d/statistics/tx_packets; done"
)


@dataclass(frozen=True)
class SshHost:
    """The benchmark's sshd container and the OpenSSH config that reaches it."""

    container: str
    config: Path

    def ssh_argv(self, remote: str) -> tuple[str, ...]:
        return ("ssh", "-F", str(self.config), "-T", HOST_ALIAS, remote)

    def rsync_shell(self) -> str:
        return shlex.join(["ssh", "-F", str(self.config), "-T"])

    def run(
        self, remote: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `remote` on the host and raise SystemExit if it fails."""
        result = subprocess.run(
            self.ssh_argv(remote),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
        if result.returncode != 0:
            raise SystemExit(
                f"`ssh {HOST_ALIAS} {remote}` failed with exit code "
                f"{result.returncode}: {first_line(result.stderr)}"
            )
        return result

    def traffic(self) -> Traffic:
        """Read the counters of every interface of the container except `lo`."""
        result = subprocess.run(
            ["docker", "exec", self.container, "sh", "-c", COUNTERS_SCRIPT],
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT_S,
        )
        if result.returncode != 0:
            raise SystemExit(
                f"reading the counters failed: {first_line(result.stderr)}"
            )
        return Traffic.parse(result.stdout)

    def settled_traffic(self) -> Traffic:
        """Read the counters until two reads agree, so closing packets are in."""
        previous = self.traffic()
        for _ in range(5):
            current = self.traffic()
            if current == previous:
                return current
            previous = current
        return previous


@dataclass(frozen=True)
class Side:
    """One command measured in every round, with what runs before it, untimed.

    `problem` reads a finished run's log and returns why the run does not count,
    or None.
    """

    key: str
    label: str
    command: Command
    prepare: Callable[[], None] = lambda: None
    problem: Callable[[Path], str | None] = lambda log_path: None


@dataclass
class SideResult:
    """The samples of one side: wall time, traffic, and the time on the host."""

    measurement: Measurement = field(default_factory=Measurement)
    to_host: list[int] = field(default_factory=list)
    from_host: list[int] = field(default_factory=list)
    inner_seconds: list[float] = field(default_factory=list)
    rsync_sent: list[int] = field(default_factory=list)
    files_copied: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Step:
    """One ssh or rsync call of the profiled agent run."""

    kind: str
    seconds: float
    traffic: Traffic
    entered_ns: int
    left_ns: int
    argv: tuple[str, ...]


@dataclass(frozen=True)
class ProfiledRun:
    """One agent run through the shims: its calls and the time around them."""

    steps: list[Step]
    started_ns: int
    ended_ns: int
    total: Traffic
    exit_code: int
    bytecode: tuple[int, int]


@dataclass
class Profile:
    """The profiled agent runs, and timings of their parts taken separately."""

    runs: list[ProfiledRun] = field(default_factory=list)
    timings: dict[str, list[float]] = field(default_factory=dict)
    file_count: int = 0
    prune_list_bytes: int = 0

    @property
    def remote_commands_with_pip(self) -> int:
        return sum(
            1
            for run in self.runs
            for step in run.steps
            if re.search(r"\bpip\b", " ".join(step.argv))
        )


@dataclass
class Report:
    """Everything one benchmark invocation measured, ready to format."""

    repeat: int
    versions: dict[str, str]
    load: list[float] = field(default_factory=list)
    cold_apply: Measurement = field(default_factory=Measurement)
    results: dict[str, SideResult] = field(default_factory=dict)
    idle: Traffic = Traffic()
    reinstall: list[tuple[str, str]] = field(default_factory=list)
    profile: Profile | None = None
    notes: list[str] = field(default_factory=list)


DESCRIPTIONS = {
    "prism-run": "`prism agent run -f ssh.yml`, after a one-file edit",
    "rsync-edit": "`rsync -a` of the edit to the previous version",
    "host-run": "`ssh HOST prism run` in that folder",
    "rsync-fresh": "`rsync -a` of the project to a fresh folder",
    "ssh-floor": "`ssh HOST true`",
    "apply-noop": "`prism agent apply -f ssh.yml`, already applied",
    "build": "`prism agent build -f ssh.yml`, project unchanged",
}


PRISM_PROJECT = '''\
"""Settings of the shop metrics project that the SSH benchmark generates."""

from pathlib import Path

THREADS = 2
WKDIR = Path(__file__).parent
DATA = WKDIR / "data"
CONFIG = WKDIR / "config"
'''

LOAD_TASK = '''\
"""Load the orders of {year} from data/orders_{year}.csv."""

import csv

from dateutil.parser import isoparse
from prism.decorators import task

import prism_project


@task()
def orders_{year}(tasks, hooks):
    with open(prism_project.DATA / "orders_{year}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["date"] = isoparse(row["date"])
        row["quantity"] = int(row["quantity"])
        row["price"] = float(row["price"])
    return rows
'''

STORE_TASK = '''\
"""Read the settings of store {index:02d}."""

import yaml
from prism.decorators import task

import prism_project


@task()
def store_{index:02d}(tasks, hooks):
    text = (prism_project.CONFIG / "store_{index:02d}.yml").read_text()
    return yaml.safe_load(text)
'''

METRIC_TASK = '''\
"""Metric {index:02d}: revenue of one store in {year}, scaled by a helper."""

{imports}from prism.decorators import {decorators}

from lib.helpers_{helper:03d} import scale


@task({arguments})
def metric_{index:02d}(tasks, hooks):
    orders = tasks.ref("load/orders_{year}")
    store = tasks.ref("stores/store_{store:02d}")
    revenue = sum(
        row["quantity"] * row["price"]
        for row in orders
        if row["store"] == store["code"]
    )
    return {result}
'''

SUMMARY_TASK = '''\
"""Write the summary report of every metric."""

import prism.target
from prism.decorators import target, task


@task(targets=[target(type=prism.target.Txt, loc="reports/summary.md")])
def summary(tasks, hooks):
    values = [
{refs}
    ]
    lines = ["# Shop metrics", ""]
    for index, value in enumerate(values):
        lines.append(f"- metric {{index:02d}}: {{value:.2f}}")
    return "\\n".join(lines) + "\\n"
'''

HELPER_MODULE = '''\
"""Helper {index:03d}: scale a value by the factor of this module."""

FACTOR = {factor!r}


def scale(value: float) -> float:
    return round(value * FACTOR, 2)


def describe(value: float) -> str:
    return f"{{value:.2f}} x {{FACTOR}}"
'''


def write_text(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def orders_csv(year: int, generator: random.Random) -> str:
    lines = ["date,store,product,quantity,price"]
    for _ in range(ORDERS_PER_YEAR):
        day = f"{year}-{generator.randint(1, 12):02d}-{generator.randint(1, 28):02d}"
        store = f"S{generator.randint(0, STORES - 1):02d}"
        product = f"P{generator.randint(1, 400):04d}"
        quantity = generator.randint(1, 9)
        price = generator.randint(100, 9999) / 100
        lines.append(f"{day},{store},{product},{quantity},{price:.2f}")
    return "\n".join(lines) + "\n"


def metric_source(index: int) -> str:
    year = YEARS[index % len(YEARS)]
    has_target = index % METRIC_TARGET_EVERY == 0
    fields = {
        "index": index,
        "year": year,
        "store": index % STORES,
        "helper": index % HELPER_MODULES,
        "imports": "import prism.target\n" if has_target else "",
        "decorators": "target, task" if has_target else "task",
        "arguments": (
            "targets=[target(type=prism.target.JSON, "
            f'loc="output/metric_{index:02d}.json")]'
            if has_target
            else ""
        ),
        "result": '{"revenue": scale(revenue)}' if has_target else "scale(revenue)",
    }
    return METRIC_TASK.format(**fields)


def summary_source() -> str:
    refs = []
    for index in range(METRICS):
        ref = f'tasks.ref("metrics/metric_{index:02d}")'
        if index % METRIC_TARGET_EVERY == 0:
            ref += '["revenue"]'
        refs.append(f"        {ref},")
    return SUMMARY_TASK.format(refs="\n".join(refs))


def write_project(root: Path, agent_text: str) -> None:
    """Write the shop metrics project at `root`, replacing an earlier copy.

    About 200 files: 95 task modules, 90 helper modules, 10 YAML files, 4 CSV
    files of about 58 KB each, and the project's own files.
    """
    if root.exists():
        shutil.rmtree(root)
    generator = random.Random(20261204)
    write_text(root, "prism_project.py", PRISM_PROJECT)
    write_text(root, "requirements.txt", "\n".join(REQUIREMENTS) + "\n")
    write_text(root, ".gitignore", GITIGNORE)
    write_text(root, "README.md", "# Shop metrics\n\nGenerated by benchmarks/ssh.py.\n")
    write_text(root, AGENT_FILE, agent_text)
    for year in YEARS:
        write_text(root, f"data/orders_{year}.csv", orders_csv(year, generator))
        write_text(root, f"tasks/load/orders_{year}.py", LOAD_TASK.format(year=year))
    for index in range(STORES):
        settings = f"code: S{index:02d}\nname: Store {index}\nregion: r{index % 3}\n"
        write_text(root, f"config/store_{index:02d}.yml", settings)
        write_text(
            root, f"tasks/stores/store_{index:02d}.py", STORE_TASK.format(index=index)
        )
    write_text(root, "lib/__init__.py", "")
    for index in range(HELPER_MODULES):
        factor = round(generator.uniform(0.5, 1.5), 3)
        write_text(
            root,
            f"lib/helpers_{index:03d}.py",
            HELPER_MODULE.format(index=index, factor=factor),
        )
    for index in range(METRICS):
        write_text(root, f"tasks/metrics/metric_{index:02d}.py", metric_source(index))
    write_text(root, "tasks/summary.py", summary_source())


def agent_text(config: Path) -> str:
    return (
        "agent:\n"
        "  type: ssh\n"
        f"  host: {HOST_ALIAS}\n"
        f"  ssh_config: {config}\n"
        f"  workdir: {AGENT_FOLDER}\n"
        "  requirements: requirements.txt\n"
    )


def write_ssh_config(port: int) -> Path:
    """Write a key pair and an OpenSSH config with the alias HOST_ALIAS."""
    CLIENT_DIR.mkdir(parents=True, exist_ok=True)
    key = CLIENT_DIR / "id_ed25519"
    for path in (key, key.with_suffix(".pub"), CLIENT_DIR / "known_hosts"):
        path.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
        check=True,
        timeout=SETUP_TIMEOUT_S,
    )
    config = CLIENT_DIR / "ssh_config"
    config.write_text(
        f"Host {HOST_ALIAS}\n"
        f"  HostName 127.0.0.1\n"
        f"  Port {port}\n"
        f"  User prism\n"
        f"  IdentityFile {key}\n"
        f"  IdentitiesOnly yes\n"
        f"  BatchMode yes\n"
        f"  StrictHostKeyChecking accept-new\n"
        f"  UserKnownHostsFile {CLIENT_DIR / 'known_hosts'}\n"
    )
    return config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_container(image: str, public_key: str, port: int) -> str:
    """Start the sshd container, published on 127.0.0.1:`port`; return its id."""
    argv = [
        "docker",
        "run",
        "--detach",
        "--rm",
        "--pull",
        "never",
        "--label",
        CONTAINER_LABEL,
        "--publish",
        f"127.0.0.1:{port}:22",
        "--env",
        f"SSH_AUTHORIZED_KEYS={public_key}",
        image,
    ]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=SETUP_TIMEOUT_S
    )
    if result.returncode != 0:
        raise SystemExit(f"starting {image} failed: {first_line(result.stderr)}")
    return result.stdout.strip()


def wait_for_sshd(port: int) -> None:
    deadline = time.monotonic() + SSHD_WAIT_S
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(4).startswith(b"SSH"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"sshd on 127.0.0.1:{port} did not respond in {SSHD_WAIT_S:g} s")


def remove_container(container: str) -> None:
    subprocess.run(
        ["docker", "rm", "--force", container],
        capture_output=True,
        timeout=SETUP_TIMEOUT_S,
    )


def check_image(image: str) -> None:
    require_image(
        image,
        "Build it with scripts/build-test-images.sh, or name another with --image.",
    )


def bench_env() -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(CACHE_DIR)}


def prism_command(prism: Path, *args: str) -> Command:
    timeout = APPLY_TIMEOUT_S if "apply" in args or "build" in args else RUN_TIMEOUT_S
    return Command((str(prism), *args), PROJECT_ROOT, timeout)


def rsync_command(host: SshHost, destination: str) -> Command:
    argv = (
        "rsync",
        "-a",
        "--stats",
        "--filter=:- .gitignore",
        "-e",
        host.rsync_shell(),
        f"{PROJECT_ROOT}/",
        f"{HOST_ALIAS}:{destination}/",
    )
    return Command(argv, PROJECT_ROOT, RUN_TIMEOUT_S)


def host_run_script() -> str:
    """Return the remote shell command that times `prism run` on the host."""
    return (
        f"cd {EDIT_FOLDER} && start=$(date +%s%N) && {REMOTE_PYTHON} -m prism run; "
        f'code=$?; echo "{HOST_RUN_MARKER} $start $(date +%s%N)"; exit $code'
    )


def lacks_text(text: str) -> Callable[[Path], str | None]:
    def problem(log_path: Path) -> str | None:
        if text in log_path.read_text(errors="replace"):
            return None
        return f"the output lacks {text!r}; output in {log_path}"

    return problem


def lacks_file(path: Path) -> Callable[[Path], str | None]:
    def problem(log_path: Path) -> str | None:
        if path.is_file():
            return None
        return f"exit code 0 but {path} is missing; output in {log_path}"

    return problem


def all_of(*checks: Callable[[Path], str | None]) -> Callable[[Path], str | None]:
    def problem(log_path: Path) -> str | None:
        for check in checks:
            found = check(log_path)
            if found is not None:
                return found
        return None

    return problem


def remove_folder(host: SshHost, folder: str) -> Callable[[], None]:
    def remove() -> None:
        host.run(f"rm -rf {folder}")

    return remove


def build_sides(prism: Path, host: SshHost) -> list[Side]:
    report = PROJECT_ROOT / REPORT_TARGET
    return [
        Side(
            "prism-run",
            DESCRIPTIONS["prism-run"],
            prism_command(prism, "agent", "run", "-f", AGENT_FILE),
            prepare=functools.partial(report.unlink, missing_ok=True),
            problem=lacks_file(report),
        ),
        Side(
            "rsync-edit", DESCRIPTIONS["rsync-edit"], rsync_command(host, EDIT_FOLDER)
        ),
        Side(
            "host-run",
            DESCRIPTIONS["host-run"],
            Command(host.ssh_argv(host_run_script()), PROJECT_ROOT, RUN_TIMEOUT_S),
            problem=lacks_text(HOST_RUN_MARKER),
        ),
        Side(
            "rsync-fresh",
            DESCRIPTIONS["rsync-fresh"],
            rsync_command(host, FRESH_FOLDER),
            prepare=remove_folder(host, FRESH_FOLDER),
        ),
        Side(
            "ssh-floor",
            DESCRIPTIONS["ssh-floor"],
            Command(host.ssh_argv("true"), PROJECT_ROOT, RUN_TIMEOUT_S),
        ),
        Side(
            "apply-noop",
            DESCRIPTIONS["apply-noop"],
            prism_command(prism, "agent", "apply", "-f", AGENT_FILE),
            problem=lacks_text(UP_TO_DATE_TEXT),
        ),
        Side(
            "build",
            DESCRIPTIONS["build"],
            prism_command(prism, "agent", "build", "-f", AGENT_FILE),
            prepare=functools.partial(report.unlink, missing_ok=True),
            problem=all_of(lacks_text(UP_TO_DATE_TEXT), lacks_file(report)),
        ),
    ]


def host_seconds(log_path: Path) -> float | None:
    """Return the seconds `prism run` took on the host, from the marker line."""
    for line in log_path.read_text(errors="replace").splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == HOST_RUN_MARKER:
            return (int(words[2]) - int(words[1])) / 1e9
    return None


def rsync_stat(log_path: Path, name: str) -> int | None:
    """Return the number on the `name:` line of rsync's --stats, if present."""
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split(":", 1)[1].split()[0].replace(",", ""))
    return None


def run_side(
    side: Side, host: SshHost, log_path: Path
) -> tuple[Sample, Traffic, str | None]:
    """Run `side` once and return its sample, its traffic and why it failed."""
    side.prepare()
    before = host.settled_traffic()
    sample = run_process(side.command, log_path, bench_env())
    traffic = host.settled_traffic() - before
    failure = failure_of(sample, side.command, log_path)
    if failure is not None:
        return sample, traffic, failure.note
    return sample, traffic, side.problem(log_path)


def record(
    result: SideResult, sample: Sample, traffic: Traffic, log_path: Path
) -> None:
    result.measurement.seconds.append(sample.seconds)
    result.to_host.append(traffic.to_host)
    result.from_host.append(traffic.from_host)
    inner = host_seconds(log_path)
    if inner is not None:
        result.inner_seconds.append(inner)
    sent = rsync_stat(log_path, "Total bytes sent")
    if sent is not None:
        result.rsync_sent.append(sent)
    files = rsync_stat(log_path, "Number of regular files transferred")
    if files is not None:
        result.files_copied.append(files)


def measure_rounds(
    sides: Sequence[Side],
    host: SshHost,
    repeat: int,
    edit: Callable[[], None],
    after_round: Callable[[], None],
) -> dict[str, SideResult]:
    """Run one check round and `repeat` timed rounds over every side.

    Each round starts with the same one-file edit, so the agent run and the rsync
    of the edit both ship exactly one changed file. `after_round` runs after each
    timed round. A side that fails is reported and not run again.
    """
    results = {side.key: SideResult() for side in sides}
    active = list(sides)
    for attempt in range(repeat + 1):
        label = "check" if attempt == 0 else str(attempt)
        edit()
        for side in list(active):
            log_path = LOGS_DIR / f"{side.key}-{label}.log"
            sample, traffic, problem = run_side(side, host, log_path)
            log(
                f"  {label:>5} {side.key:<12} {sample.seconds:.3f} s "
                f"{traffic.to_host:>8} B to host {traffic.from_host:>8} B back"
            )
            if problem is not None:
                log(f"    failed: {problem}")
                failed = Measurement(status="failed", note=problem)
                results[side.key] = SideResult(measurement=failed)
                active.remove(side)
            elif attempt > 0:
                record(results[side.key], sample, traffic, log_path)
        if attempt > 0:
            after_round()
    return results


def measure_idle(host: SshHost, seconds: float = 2.0) -> Traffic:
    before = host.settled_traffic()
    time.sleep(seconds)
    return host.settled_traffic() - before


def measure_cold_apply(prism: Path) -> Measurement:
    """Time the first `prism agent apply` (the wheelhouse may be cached)."""
    command = prism_command(prism, "agent", "apply", "-f", AGENT_FILE)
    log_path = LOGS_DIR / "cold-apply.log"
    log("cold apply")
    sample = run_process(command, log_path, bench_env())
    failure = failure_of(sample, command, log_path)
    if failure is not None:
        raise SystemExit(f"the first apply failed: {failure.note}")
    log(f"  {sample.seconds:.3f} s")
    return Measurement(seconds=[sample.seconds])


def venv_snapshot(host: SshHost) -> dict[str, str]:
    """Return the inode and mtime of the agent's venv, the mtime of its
    fingerprint, and how many paths in the venv are newer than VENV_MARKER."""
    script = (
        f"cd {AGENT_FOLDER} && stat -c '%i %Y' venv && stat -c '%Y' fingerprint && "
        f"find venv -newer $HOME/{VENV_MARKER} | wc -l"
    )
    lines = host.run(script).stdout.split("\n")
    return {
        "venv inode and mtime": lines[0].strip(),
        "fingerprint mtime": lines[1].strip(),
        "venv paths newer than the apply": lines[2].strip(),
    }


def reinstall_evidence(
    before: dict[str, str], after: dict[str, str], results: dict[str, SideResult]
) -> list[tuple[str, str]]:
    rows = [
        (name, f"{before[name]} -> {after[name]}")
        for name in ("venv inode and mtime", "fingerprint mtime")
    ]
    rows.append(
        (
            "paths in venv/ newer than the apply, after all runs",
            after["venv paths newer than the apply"],
        )
    )
    for key in ("apply-noop", "build"):
        result = results.get(key)
        if result is not None and result.measurement.ok:
            rows.append((DESCRIPTIONS[key], f"printed {UP_TO_DATE_TEXT!r} every time"))
    return rows


SHIM = """\
#!/bin/bash
# Records one {tool} call of a profiled Prism command: its times and traffic.
if [ -n "$PRISM_BENCH_SHIM" ]; then exec {real} "$@"; fi
export PRISM_BENCH_SHIM=1
entered=$(date +%s%N)
before=$({counters})
start=$(date +%s%N)
{real} "$@"
code=$?
end=$(date +%s%N)
after=$({counters})
left=$(date +%s%N)
printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t' {tool} "$entered" "$start" "$end" \\
    "$left" "$(echo $before)" "$(echo $after)" >> {log}
printf '%s\\x1f' "$@" >> {log}
printf '\\x1e\\n' >> {log}
exit $code
"""


def write_shims(shim_dir: Path, container: str, log_path: Path) -> None:
    """Write `ssh` and `rsync` wrappers into `shim_dir` that log each call.

    Each call's line in `log_path` includes the traffic counters of `container`.
    Nested calls (the ssh that rsync starts) go straight to the real program, so
    each rsync counts once, with its ssh inside it.
    """
    shim_dir.mkdir(parents=True, exist_ok=True)
    counters = f"docker exec {container} sh -c {shlex.quote(COUNTERS_SCRIPT)}"
    for tool in ("ssh", "rsync"):
        real = shutil.which(tool)
        if real is None:
            raise SystemExit(f"`{tool}` is not on PATH")
        shim = shim_dir / tool
        shim.write_text(
            SHIM.format(tool=tool, real=real, counters=counters, log=log_path)
        )
        shim.chmod(0o755)


def step_kind(tool: str, argv: Sequence[str]) -> str:
    text = " ".join(argv)
    if tool == "rsync":
        pulls = len(argv) > 1 and argv[-2].startswith(f"{HOST_ALIAS}:")
        return "rsync: copy outputs back" if pulls else "rsync: push the project"
    if "-G" in argv:
        return "ssh -G: read the configuration (local)"
    if "-O" in argv:
        return "ssh -O exit: close the connection"
    if "fingerprint" in text:
        return "ssh: check the environment (opens the connection)"
    if "echo $HOME" in text:
        return "ssh: find the home folder"
    if "prism.agents.remote" in text and "os.walk" in text:
        return "ssh: prune deleted files and run the project"
    if "prism.agents.remote" in text:
        return "ssh: run the project on the host"
    if "os.walk" in text:
        return "ssh: prune deleted files"
    return "ssh: other"


def read_steps(log_path: Path) -> list[Step]:
    """Read the shims' log: tab-separated fields, then the arguments, each ended by
    0x1f, and 0x1e and a newline after each call."""
    steps = []
    for record in log_path.read_text().split("\x1e\n"):
        if not record:
            continue
        tool, entered, start, end, left, before, after, argv = record.split("\t", 7)
        words = tuple(argv.split("\x1f")[:-1])
        steps.append(
            Step(
                kind=step_kind(tool, words),
                seconds=(int(end) - int(start)) / 1e9,
                traffic=Traffic.parse(after) - Traffic.parse(before),
                entered_ns=int(entered),
                left_ns=int(left),
                argv=words,
            )
        )
    return steps


HOST_TIMINGS = """\
import json, os, shutil, subprocess, sys, time

python, edit = sys.argv[1:3]
PRISM_RUN = [python, "-m", "prism", "run"]
IMPORTS = (
    "import prism.agents.remote, prism.console.session, prism.engine.run"
)


def timed(argv, cwd=None, before=None):
    if before:
        before()
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def drop_bytecode():
    for folder, names, _ in os.walk(edit):
        if "__pycache__" in names:
            shutil.rmtree(os.path.join(folder, "__pycache__"))


print(json.dumps({
    "host: python -c pass": timed([python, "-c", "pass"]),
    "host: python -c 'import prism.agents.remote ...'": timed([python, "-c", IMPORTS]),
    "host: prism run, bytecode cached": timed(PRISM_RUN, cwd=edit),
    "host: prism run, no bytecode": timed(PRISM_RUN, cwd=edit, before=drop_bytecode),
}))
"""

CLIENT_TIMINGS = """\
import json, statistics, sys, time
from pathlib import Path

root, mirror = Path(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
import prism.cli.main
imported = time.perf_counter() - start
from prism.agents.bundle import collect_bundle
from prism.agents.deps import prism_source_hash


def timed(function, repeat=5):
    samples = []
    for _ in range(repeat):
        getattr(function, "cache_clear", lambda: None)()
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


files = collect_bundle(root).files
print(json.dumps({
    "client: import prism.cli.main": imported,
    "client: prism_source_hash()": timed(prism_source_hash),
    "client: collect_bundle(project)": timed(lambda: collect_bundle(root)),
    "files": len(files),
    "prune list bytes": len("\\0".join(f"{mirror}{path}" for path in files).encode()),
}))
"""


def host_timings(host: SshHost) -> dict[str, float]:
    argv = f"{REMOTE_PYTHON} - {REMOTE_PYTHON} $HOME/{EDIT_FOLDER}"
    result = host.run(argv, stdin=HOST_TIMINGS)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def client_timings(prism: Path, host: SshHost) -> dict[str, float]:
    """Time the client's own work, and size the prune step's list of files."""
    mirror = f"{host.run('echo $HOME').stdout.strip()}/{AGENT_FOLDER}/files"
    result = subprocess.run(
        [str(interpreter_of(prism)), "-c", CLIENT_TIMINGS, str(PROJECT_ROOT), mirror],
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise SystemExit(f"timing the client failed: {first_line(result.stderr)}")
    return dict(json.loads(result.stdout))


def bytecode_counts(host: SshHost) -> tuple[int, int]:
    """Return the .pyc files in the agent's mirror of the project: all, and those
    written after the marker."""
    mirror = f"{AGENT_FOLDER}/files{shlex.quote(str(PROJECT_ROOT))}"
    marker = f"$HOME/{RUN_MARKER}"
    script = (
        f"find {mirror} -name '*.pyc' | wc -l; "
        f"find {mirror} -name '*.pyc' -newer {marker} | wc -l"
    )
    lines = host.run(script).stdout.split()
    return int(lines[0]), int(lines[1])


def profiled_run(prism: Path, host: SshHost, edit: Callable[[], None]) -> ProfiledRun:
    """Run `prism agent run` through the shims, after a one-file edit."""
    steps_log = LOGS_DIR / "profile-steps.log"
    steps_log.unlink(missing_ok=True)
    edit()
    host.run(f"touch $HOME/{RUN_MARKER}")
    command = prism_command(prism, "agent", "run", "-f", AGENT_FILE)
    env = {**bench_env(), "PATH": f"{SHIM_DIR}:{os.environ.get('PATH', '')}"}
    before = host.settled_traffic()
    started_ns = time.time_ns()
    sample = run_process(command, LOGS_DIR / "profile-run.log", env)
    ended_ns = time.time_ns()
    total = host.settled_traffic() - before
    return ProfiledRun(
        steps=read_steps(steps_log),
        started_ns=started_ns,
        ended_ns=ended_ns,
        total=total,
        exit_code=sample.exit_code,
        bytecode=bytecode_counts(host),
    )


def profile_round(
    profile: Profile, prism: Path, host: SshHost, edit: Callable[[], None]
) -> None:
    """Add one profiled agent run and one sample of each part's timing."""
    run = profiled_run(prism, host, edit)
    log(f"  profile exit code {run.exit_code}, {len(run.steps)} calls")
    profile.runs.append(run)
    timings = client_timings(prism, host)
    profile.file_count = int(timings.pop("files"))
    profile.prune_list_bytes = int(timings.pop("prune list bytes"))
    timings.update(host_timings(host))
    for name, seconds in timings.items():
        profile.timings.setdefault(name, []).append(seconds)


def remote_versions(host: SshHost) -> dict[str, str]:
    result = host.run(
        "python3 -c 'import platform; print(platform.python_version())'; "
        "rsync --version | head -1"
    )
    lines = result.stdout.splitlines()
    return {"host Python": lines[0].strip(), "host rsync": rsync_version(lines[1])}


def rsync_version(line: str) -> str:
    words = line.split()
    return words[2] if len(words) > 2 else "unknown"


def local_versions() -> dict[str, str]:
    rsync = subprocess.run(
        ["rsync", "--version"], capture_output=True, text=True, timeout=SETUP_TIMEOUT_S
    )
    ssh = subprocess.run(
        ["ssh", "-V"], capture_output=True, text=True, timeout=SETUP_TIMEOUT_S
    )
    return {
        "client rsync": rsync_version(first_line(rsync.stdout)),
        "client ssh": first_line(ssh.stderr).split(",")[0],
    }


def seed_edit_folder(host: SshHost) -> None:
    """Accept the host key, then copy the project to EDIT_FOLDER on the host."""
    host.run("true")
    host.run(f"rm -rf prism-bench && mkdir -p {EDIT_FOLDER}")
    command = rsync_command(host, EDIT_FOLDER)
    log_path = LOGS_DIR / "setup-rsync-edit.log"
    failure = failure_of(run_process(command, log_path), command, log_path)
    if failure is not None:
        raise SystemExit(f"seeding the edit folder failed: {failure.note}")


def run_benchmark(args: argparse.Namespace) -> Report:
    SSH_WORK_DIR.mkdir(parents=True, exist_ok=True)
    check_image(args.image)
    hash_before = source_hash(args.prism)
    port = free_port()
    config = write_ssh_config(port)
    write_project(PROJECT_ROOT, agent_text(config))
    public_key = (CLIENT_DIR / "id_ed25519.pub").read_text()
    log(f"starting {args.image} on 127.0.0.1:{port}")
    container = start_container(args.image, public_key, port)
    try:
        wait_for_sshd(port)
        report = measure_all(args, SshHost(container, config))
    finally:
        log("removing the container")
        remove_container(container)
    if source_hash(args.prism) != hash_before:
        report.notes.append(
            "- Prism's source changed during the benchmark, so the agent's "
            "fingerprint stopped matching. Rerun on an unchanged tree."
        )
    return report


def measure_all(args: argparse.Namespace, host: SshHost) -> Report:
    """Apply the agent on `host`, then run the rounds and the profiled runs."""
    versions = {
        "prism": version_of_ours(args.prism),
        **local_versions(),
        **remote_versions(host),
    }
    report = Report(args.repeat, versions, load=[os.getloadavg()[0]])
    seed_edit_folder(host)
    report.cold_apply = measure_cold_apply(args.prism)
    host.run(f"touch $HOME/{VENV_MARKER}")
    before = venv_snapshot(host)
    report.idle = measure_idle(host)

    edit = append_comment(PROJECT_ROOT / EDITED_TASK)
    profile = Profile()
    write_shims(SHIM_DIR, host.container, LOGS_DIR / "profile-steps.log")
    log("rounds")
    report.results = measure_rounds(
        build_sides(args.prism, host),
        host,
        args.repeat,
        edit,
        functools.partial(profile_round, profile, args.prism, host, edit),
    )
    report.profile = profile
    report.reinstall = reinstall_evidence(before, venv_snapshot(host), report.results)
    report.load.append(os.getloadavg()[0])
    return report


def median_of(values: Sequence[float]) -> float:
    return statistics.median(values)


def format_seconds(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return f"{median_of(values):.3f} ({min(values):.3f})"


def format_bytes(values: Sequence[int]) -> str:
    if not values:
        return "n/a"
    return f"{int(median_of(values)):,}"


def ratio_text(numerator: Sequence[float], denominator: Sequence[float]) -> str:
    if not numerator or not denominator:
        return "n/a"
    median = median_of(numerator) / median_of(denominator)
    best = min(numerator) / min(denominator)
    return f"{median:.2f} ({best:.2f})"


def goal_text(
    numerator: Sequence[float], denominator: Sequence[float], goal: float | None
) -> tuple[str, str]:
    if goal is None:
        return "context only", "no goal"
    if not numerator or not denominator:
        return f"<= {goal:g}", "n/a"
    met = median_of(numerator) / median_of(denominator) <= goal
    return f"<= {goal:g}", "yes" if met else "no"


def sums(first: Sequence[float], second: Sequence[float]) -> list[float]:
    """Pair the samples of two measurements of the same rounds, in order."""
    return [a + b for a, b in zip(first, second, strict=False)]


def format_ratios(report: Report) -> str:
    results = report.results
    prism = results["prism-run"]
    edit = results["rsync-edit"]
    fresh = results["rsync-fresh"]
    host = results["host-run"]
    rows = []
    cases: list[tuple[str, Sequence[float], Sequence[float], float | None]] = [
        (
            "bytes to host: agent run / rsync of the edit",
            prism.to_host,
            edit.to_host,
            BYTE_GOAL,
        ),
        (
            "bytes to host: agent run / rsync to a fresh folder",
            prism.to_host,
            fresh.to_host,
            None,
        ),
        (
            "bytes to host: agent run / (rsync of the edit + `ssh HOST prism run`)",
            prism.to_host,
            sums(edit.to_host, host.to_host),
            None,
        ),
        (
            "bytes both ways: agent run / rsync of the edit",
            sums(prism.to_host, prism.from_host),
            sums(edit.to_host, edit.from_host),
            None,
        ),
        (
            "time: agent run / (rsync of the edit + `prism run` on the host)",
            prism.measurement.seconds,
            sums(edit.measurement.seconds, host.inner_seconds),
            TIME_GOAL,
        ),
        (
            "time: agent run / (rsync of the edit + `ssh HOST prism run`)",
            prism.measurement.seconds,
            sums(edit.measurement.seconds, host.measurement.seconds),
            None,
        ),
    ]
    for label, numerator, denominator, goal in cases:
        goal_cell, met = goal_text(numerator, denominator, goal)
        rows.append([label, ratio_text(numerator, denominator), goal_cell, met])
    return markdown_table(["ratio", "median (best)", "goal", "met"], rows)


def format_sides(report: Report) -> str:
    header = [
        "command",
        "time (s)",
        "on the host (s)",
        "bytes to host",
        "bytes from host",
        "rsync --stats: bytes sent",
        "files copied",
    ]
    rows = []
    for key, result in report.results.items():
        ok = result.measurement.status == "ok"
        rows.append(
            [
                DESCRIPTIONS[key],
                (
                    format_seconds(result.measurement.seconds)
                    if ok
                    else result.measurement.status
                ),
                format_seconds(result.inner_seconds) if result.inner_seconds else "",
                format_bytes(result.to_host) if ok else "",
                format_bytes(result.from_host) if ok else "",
                format_bytes(result.rsync_sent) if result.rsync_sent else "",
                format_bytes(result.files_copied) if result.files_copied else "",
            ]
        )
    return markdown_table(header, rows)


def step_totals(run: ProfiledRun) -> dict[str, tuple[int, float, Traffic]]:
    """Return the calls, seconds and traffic of each kind of step of `run`."""
    totals: dict[str, tuple[int, float, Traffic]] = {}
    for step in run.steps:
        calls, seconds, traffic = totals.get(step.kind, (0, 0.0, Traffic()))
        totals[step.kind] = (calls + 1, seconds + step.seconds, traffic + step.traffic)
    return totals


def breakdown_rows(profile: Profile) -> list[list[str]]:
    """Return one row per kind of step and per client gap, medians over the runs."""
    per_run = [step_totals(run) for run in profile.runs]
    kinds = list(dict.fromkeys(kind for totals in per_run for kind in totals))
    rows = []
    for kind in kinds:
        present = [totals[kind] for totals in per_run if kind in totals]
        rows.append(
            [
                kind,
                f"{median_of([calls for calls, _, _ in present]):g}",
                f"{median_of([seconds for _, seconds, _ in present]):.3f}",
                traffic_text([traffic for _, _, traffic in present]),
                traffic_text([traffic for _, _, traffic in present], to_host=False),
            ]
        )
    gaps = [client_gaps(run) for run in profile.runs]
    for label in dict.fromkeys(label for gap in gaps for label in gap):
        seconds = median_of([gap[label] for gap in gaps if label in gap])
        rows.append([label, "", f"{seconds:.3f}", "", ""])
    counted = [
        sum(step.seconds for step in run.steps) + sum(gap.values())
        for run, gap in zip(profile.runs, gaps, strict=True)
    ]
    rows.append(
        [
            "whole run (traffic counted around the process)",
            "",
            f"{median_of(counted):.3f}",
            traffic_text([run.total for run in profile.runs]),
            traffic_text([run.total for run in profile.runs], to_host=False),
        ]
    )
    return rows


def traffic_text(items: Sequence[Traffic], to_host: bool = True) -> str:
    """Return the median bytes and, in brackets, packets of one direction."""
    if to_host:
        data = median_of([item.to_host for item in items])
        packets = median_of([item.packets_to_host for item in items])
    else:
        data = median_of([item.from_host for item in items])
        packets = median_of([item.packets_from_host for item in items])
    return f"{data:,.0f} ({packets:.0f})"


def client_gaps(run: ProfiledRun) -> dict[str, float]:
    """Return the client's own time before, between and after its calls.

    The shims read the counters outside their timed span, so a gap runs from one
    shim's exit to the next shim's entry and leaves the reads out. It still
    includes the start and exit of the shim's bash, a few ms per call.
    """
    if not run.steps:
        return {"client: whole run": (run.ended_ns - run.started_ns) / 1e9}
    first, last = run.steps[0], run.steps[-1]
    between = sum(
        max(0, current.entered_ns - previous.left_ns)
        for previous, current in zip(run.steps, run.steps[1:], strict=False)
    )
    return {
        "client: start-up until the first call": (first.entered_ns - run.started_ns)
        / 1e9,
        "client: between calls": between / 1e9,
        "client: after the last call": (run.ended_ns - last.left_ns) / 1e9,
    }


def format_profile(profile: Profile) -> str:
    table = markdown_table(
        [
            "step",
            "calls",
            "time (s)",
            "to host: bytes (packets)",
            "back: bytes (packets)",
        ],
        breakdown_rows(profile),
    )
    timings = [
        [name, format_seconds(samples)] for name, samples in profile.timings.items()
    ]
    exit_codes = sorted({run.exit_code for run in profile.runs})
    all_pyc = [run.bytecode[0] for run in profile.runs]
    new_pyc = [run.bytecode[1] for run in profile.runs]
    facts = [
        f"- Exit codes of the profiled runs: {', '.join(map(str, exit_codes))}.",
        f"- Files Prism ships: {profile.file_count}. A NUL-separated list of their "
        f"full paths on the host is {profile.prune_list_bytes:,} bytes long.",
        f"- Bytecode in the agent's copy of the project after each run: "
        f"{median_of(all_pyc):g} .pyc files (median), {median_of(new_pyc):g} of "
        "them written by that run.",
        f"- ssh or rsync calls of the profiled runs whose command line has the "
        f"word pip: {profile.remote_commands_with_pip}.",
    ]
    return "\n".join(
        [
            table,
            "",
            markdown_table(["part, timed alone", "time (s)"], timings),
            "",
            *facts,
        ]
    )


def format_report(report: Report) -> str:
    versions = ", ".join(f"{name} {value}" for name, value in report.versions.items())
    load = " and ".join(f"{value:.2f}" for value in report.load)
    load += " (1 min) at the start and the end"
    runs = "1 round" if report.repeat == 1 else f"{report.repeat} rounds"
    machine = machine_description()
    parts = [
        "# Prism SSH agent benchmark",
        "",
        f"Machine: {machine}, load average {load}. Versions: {versions}.",
        "",
        f"Each time is the median (best) wall clock of {runs} of a whole process, "
        "after one untimed check round; every round starts with the same one-file "
        "edit and runs the commands in the order below. Bytes are the median "
        "change of the sshd container's interface counters (rx and tx of every "
        "interface but lo, read with `docker exec` before and after each "
        "process), so they include SSH, TCP and IP overhead for every command. "
        f"Idle traffic over 2 s: {report.idle.to_host} bytes to the host, "
        f"{report.idle.from_host} from it.",
        "",
        "## Ratios",
        "",
        format_ratios(report),
        "",
        "## Commands",
        "",
        format_sides(report),
        "",
        f"The first apply took {format_seconds(report.cold_apply.seconds)} s.",
        "",
        "## Re-runs with unchanged requirements",
        "",
        markdown_table(["check", "result"], [list(row) for row in report.reinstall]),
    ]
    if report.profile is not None and report.profile.runs:
        parts += [
            "",
            "## Where the agent run spends its time and bytes",
            "",
            format_profile(report.profile),
        ]
    notes = list(report.notes)
    notes += [
        f"- {DESCRIPTIONS[key]}: {result.measurement.status}, {result.measurement.note}"
        for key, result in report.results.items()
        if result.measurement.note
    ]
    if notes:
        parts += ["", "## Notes", "", *notes]
    return "\n".join(parts) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="timed rounds after one check round (default: 5)",
    )
    parser.add_argument(
        "--prism",
        type=Path,
        default=OURS_PRISM,
        help=f"the `prism` executable (default: {OURS_PRISM})",
    )
    parser.add_argument(
        "--image",
        default=DEFAULT_IMAGE,
        help=f"the sshd image to start (default: {DEFAULT_IMAGE})",
    )
    parser.add_argument(
        "--output", type=Path, help="also write the Markdown report to this file"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    if not args.prism.exists():
        parser.error(f"--prism {args.prism} not found")
    for tool in ("docker", "ssh", "ssh-keygen", "rsync"):
        if shutil.which(tool) is None:
            parser.error(f"the `{tool}` command is not on PATH")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    write_report(format_report(run_benchmark(args)), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
