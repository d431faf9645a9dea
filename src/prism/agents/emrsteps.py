"""The EMR agent's `steps` transport: each run is an EMR step.

For clusters that cannot be reached over SSH. Everything travels through the
agent's S3 staging area (`prism.agents.s3store`):

- `apply` uploads a wheelhouse for the master's Python and platform (Amazon
  Linux 2023 on EMR 7, the architecture of the master's instance type) and
  runs a setup step that installs it offline into a virtual environment on the
  master and configures Spark (`prism.agents.sparkenv`).
- A run uploads the project as a tar named by its content hash (an unchanged
  project is not sent again) and the run's request, then adds a step that runs
  `command-runner.jar bash -c SCRIPT`. The script fetches both, runs
  `prism.agents.steprun`, and uploads the events and the outputs.

Only a step that ends `COMPLETED` counts as a success; every other end state,
and any state Prism does not know, fails the run with exit code 1. The events
are shown once the step has ended. When they are missing (the step failed
before Prism started, say), the step's logs are read from the cluster's
`log_uri`, which EMR fills only when the cluster has one. Ctrl-C cancels the
step. Outputs come back even when the run fails.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import shlex
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prism.agents.aws import Aws
from prism.agents.deps import PythonTarget, build_wheelhouse, install_command
from prism.agents.s3store import S3Location, get_object
from prism.agents.sparkenv import setup_script
from prism.agents.steprun import OUTPUTS_MANIFEST
from prism.errors import ConfigError

if TYPE_CHECKING:
    from prism.agents.emr import EmrAgent
    from prism.agents.emrcluster import Cluster
    from prism.agents.remote import RemoteRun
    from prism.engine.events import EventSink, RunFinished

__all__ = [
    "StepOutcome",
    "follow_step",
    "install_environment",
    "is_installed",
    "run_step_script",
    "start_step",
    "step_outcome",
]

logger = logging.getLogger(__name__)

WAITING_STATES = ("PENDING", "CANCEL_PENDING", "RUNNING")
FAILED_STATES = ("CANCELLED", "FAILED", "INTERRUPTED")
# Amazon Linux 2023, the system of EMR 7 nodes, ships glibc 2.34.
_EMR_GLIBC = ("glibc", "2.34")
_POLL_SECONDS = 10.0
_LOG_WAIT_SECONDS = 60.0
_SETUP_TIMEOUT_SECONDS = 1800.0


@dataclass(frozen=True)
class StepOutcome:
    """The end of a step: its state, the reason, and the exit code for it."""

    state: str
    exit_code: int
    reason: str = ""
    log_file: str = ""

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


def step_outcome(step: dict[str, Any]) -> StepOutcome | None:
    """Return how a described step ended, or None while it has not ended."""
    status = step.get("Status", {})
    state = str(status.get("State", ""))
    if state in WAITING_STATES:
        return None
    if state == "COMPLETED":
        return StepOutcome(state, 0)
    details = status.get("FailureDetails") or {}
    reason = "; ".join(
        str(details[key]) for key in ("Reason", "Message") if details.get(key)
    )
    if state not in FAILED_STATES:
        reason = f"EMR reported the step state {state!r}, which Prism does not know"
    change = (status.get("StateChangeReason") or {}).get("Message")
    if not reason and change:
        reason = str(change)
    return StepOutcome(state, 1, reason, str(details.get("LogFile") or ""))


def follow_step(
    aws: Aws,
    cluster_id: str,
    step_id: str,
    *,
    interval: float = _POLL_SECONDS,
    timeout: float | None = None,
    abandon: threading.Event | None = None,
) -> StepOutcome:
    """Poll a step until it ends; a cluster that ends first fails it.

    `abandon`, once set, stops the polling with a CANCELLED outcome. After
    `timeout` seconds the step is cancelled, and the outcome's reason states it.
    """
    from prism.agents.emrcluster import describe_cluster

    started = time.monotonic()
    while True:
        response = aws.call(
            "emr", "describe_step", ClusterId=cluster_id, StepId=step_id
        )
        outcome = step_outcome(response["Step"])
        if outcome is not None:
            return outcome
        cluster = describe_cluster(aws, cluster_id)
        if not cluster.is_live:
            return StepOutcome(
                cluster.state,
                1,
                f"cluster {cluster_id} ended: {cluster.describe_end()}",
            )
        if abandon is not None and abandon.is_set():
            return StepOutcome("CANCELLED", 130, "stopped on request")
        if timeout is not None and time.monotonic() - started > timeout:
            cancel_step(aws, cluster_id, step_id)
            return StepOutcome(
                "CANCELLED", 1, f"The run timed out after {timeout:g}s and was stopped"
            )
        time.sleep(interval)


def cancel_step(aws: Aws, cluster_id: str, step_id: str, *, kill: bool = False) -> None:
    option = "TERMINATE_PROCESS" if kill else "SEND_INTERRUPT"
    try:
        aws.call(
            "emr",
            "cancel_steps",
            ClusterId=cluster_id,
            StepIds=[step_id],
            StepCancellationOption=option,
        )
    except ConfigError as error:
        logger.warning("Could not cancel step %s: %s", step_id, error)


def add_step(aws: Aws, cluster_id: str, name: str, script: str) -> str:
    """Add a step that runs `bash -c script` with command-runner.jar."""
    response = aws.call(
        "emr",
        "add_job_flow_steps",
        JobFlowId=cluster_id,
        Steps=[
            {
                "Name": name,
                "ActionOnFailure": "CONTINUE",
                "HadoopJarStep": {
                    "Jar": "command-runner.jar",
                    "Args": ["bash", "-c", script],
                },
            }
        ],
    )
    return str(response["StepIds"][0])


def master_folder(agent: EmrAgent) -> str:
    """Return the agent's folder on the master in shell syntax, as SSH runs use."""
    import hashlib

    root = agent.project_root
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    return f"$HOME/{shlex.quote(f'.prism/{root.name}-{digest}/{agent.name}')}"


def is_installed(agent: EmrAgent, cluster: Cluster) -> bool:
    """Return True when the setup step installed this environment on `cluster`."""
    data = agent.staging.get_bytes("environment.json")
    if data is None:
        return False
    record = json.loads(data)
    return bool(
        record.get("cluster") == cluster.id
        and record.get("fingerprint") == agent.environment_fingerprint()
    )


def install_environment(agent: EmrAgent, cluster: Cluster, fingerprint: str) -> None:
    """Build the master's environment with a setup step, unless it is current."""
    if is_installed(agent, cluster):
        return
    target = master_target(agent, cluster)
    with agent.step("Building the wheelhouse"):
        wheelhouse = build_wheelhouse(agent.config.requirements_path, target)
    name = f"wheelhouses/{wheelhouse.key}.tar"
    if not agent.staging.exists(name):
        with agent.step(f"Uploading the wheelhouse to {agent.staging.uri(name)}"):
            agent.staging.put_bytes(name, _tar_folder(wheelhouse.path))
    script = _setup_step_script(
        agent, wheelhouse.key, agent.staging.uri(name), fingerprint
    )
    with agent.step(f"Installing requirements on cluster {cluster.id} (a setup step)"):
        step_id = add_step(agent.aws, cluster.id, "prism setup", script)
        outcome = follow_step(
            agent.aws, cluster.id, step_id, timeout=_SETUP_TIMEOUT_SECONDS
        )
    if not outcome.succeeded:
        raise ConfigError(
            f"The setup step {step_id} on cluster {cluster.id} ended {outcome.state}"
            + (f": {outcome.reason}" if outcome.reason else ""),
            hint=_log_hint(cluster, step_id),
        )
    record = {"cluster": cluster.id, "fingerprint": fingerprint}
    agent.staging.put_bytes("environment.json", json.dumps(record).encode())


def master_target(agent: EmrAgent, cluster: Cluster) -> PythonTarget:
    """Describe the master's interpreter without logging in to it."""
    python = agent.python
    version = python.removeprefix("python")
    if not version.startswith("3.") or not version[2:].isdigit():
        raise ConfigError(
            f"{agent.config.path}: agent.python: with transport: steps, Prism cannot "
            f"ask {python!r} for its version",
            hint="Name the interpreter by its version, such as python3.11.",
        )
    instance_type = _master_instance_type(agent, cluster)
    response = agent.aws.call(
        "ec2", "describe_instance_types", InstanceTypes=[instance_type]
    )
    types = response.get("InstanceTypes") or [{}]
    architectures = types[0].get("ProcessorInfo", {}).get("SupportedArchitectures", [])
    machine = "aarch64" if "arm64" in architectures else "x86_64"
    return PythonTarget(
        version=version,
        implementation="cpython",
        machine=machine,
        libc=_EMR_GLIBC,
        platform=f"linux-{machine}",
    )


def _master_instance_type(agent: EmrAgent, cluster: Cluster) -> str:
    groups = agent.config.spec.instance_groups or {}
    if not agent.is_attached and "master" in groups:
        return str(groups["master"]["instance_type"])
    response = agent.aws.call("emr", "list_instance_groups", ClusterId=cluster.id)
    for group in response.get("InstanceGroups", []):
        if group.get("InstanceGroupType") == "MASTER":
            return str(group["InstanceType"])
    raise ConfigError(f"Cluster {cluster.id} has no master instance group")


def _setup_step_script(
    agent: EmrAgent, key: str, wheelhouse_uri: str, fingerprint: str
) -> str:
    folder = master_folder(agent)
    wheelhouse = f"wheelhouses/{key}"
    install = shlex.join(install_command("venv.new/bin/python", wheelhouse))
    return "\n".join(
        [
            "set -euo pipefail",
            f"mkdir -p {folder}/wheelhouses",
            f"cd {folder}",
            f"if [ ! -d {wheelhouse} ]; then",
            f"  aws s3 cp --quiet {shlex.quote(wheelhouse_uri)} wheelhouse.tar",
            f"  rm -rf {wheelhouse}.new && mkdir -p {wheelhouse}.new",
            f"  tar -C {wheelhouse}.new -xf wheelhouse.tar && rm wheelhouse.tar",
            f"  mv {wheelhouse}.new {wheelhouse}",
            "fi",
            "rm -rf venv.new",
            f"{shlex.quote(agent.python)} -m venv venv.new",
            install,
            "rm -rf venv",
            "mv venv.new venv",
            f"echo {shlex.quote(fingerprint)} > fingerprint",
            setup_script(folder, fingerprint),
        ]
    )


def _tar_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(folder.iterdir()):
            archive.add(path, arcname=path.name)
    return buffer.getvalue()


def start_step(
    agent: EmrAgent, cluster: Cluster, request: RemoteRun, payload: bytes
) -> Callable[[EventSink], RunFinished]:
    """Ship the project to S3, add the run's step, and return its follower."""
    from prism.agents.bundle import collect_bundle

    bundle = collect_bundle(agent.project_root, with_targets=bool(request.selectors))
    bundle_name = f"bundles/{bundle.digest}.tar"
    if not agent.staging.exists(bundle_name):
        agent.staging.put_bytes(bundle_name, bundle.to_tar())
    run = f"runs/{uuid.uuid4().hex}"
    agent.staging.put_bytes(f"{run}/request.json", payload)
    script = run_step_script(agent, agent.staging.uri(bundle_name), run)
    step_id = add_step(agent.aws, cluster.id, f"prism run {run[5:]}", script)
    logger.debug("Added step %s to cluster %s", step_id, cluster.id)
    return StepRun(agent, cluster, step_id, run).follow


def run_step_script(agent: EmrAgent, bundle_uri: str, run: str) -> str:
    """Return the step's script: fetch the project and request, run, upload."""
    folder = master_folder(agent)
    root = shlex.quote(str(agent.project_root))
    artifacts = " ".join(shlex.quote(item) for item in agent.config.spec.artifacts)
    request, events, outputs = (
        shlex.quote(agent.staging.uri(f"{run}/{name}"))
        for name in ("request.json", "events.jsonl", "outputs.tar")
    )
    steprun = f"{folder}/venv/bin/python -m prism.agents.steprun {folder}"
    return "\n".join(
        [
            "set -uo pipefail",
            "work=$(mktemp -d) && trap 'rm -rf \"$work\"' EXIT || exit 1",
            f'aws s3 cp --quiet {shlex.quote(bundle_uri)} "$work/bundle.tar" || exit 1',
            f'aws s3 cp --quiet {request} "$work/request.json" || exit 1',
            f"aws s3 rm --quiet {request}",
            f"rm -rf {folder}/files && mkdir -p {folder}/files || exit 1",
            f'tar -C {folder}/files -xf "$work/bundle.tar" || exit 1',
            f"cd {folder}/files{root} || exit 1",
            f'{steprun} "$work/outputs.tar" {artifacts} < "$work/request.json" '
            '| tee "$work/events.jsonl"',
            "status=${PIPESTATUS[0]}",
            f'aws s3 cp --quiet "$work/events.jsonl" {events}',
            f'aws s3 cp --quiet "$work/outputs.tar" {outputs}',
            'exit "$status"',
        ]
    )


class StepRun:
    """A run's step on the cluster, followed to its end from this machine."""

    def __init__(
        self, agent: EmrAgent, cluster: Cluster, step_id: str, run: str
    ) -> None:
        self.agent = agent
        self.cluster = cluster
        self.step_id = step_id
        self.run = run
        self.interval = _POLL_SECONDS
        self.log_wait = _LOG_WAIT_SECONDS

    def follow(self, sink: EventSink) -> RunFinished:
        """Wait for the step, then show its events and bring its outputs back."""
        from prism.agents.process import follow_interruptibly
        from prism.agents.stream import EventReader

        logger.info("Step %s on cluster %s started", self.step_id, self.cluster.id)
        started = time.perf_counter()
        abandon = threading.Event()
        outcomes: list[StepOutcome] = []

        def poll() -> None:
            outcomes.append(
                follow_step(
                    self.agent.aws,
                    self.cluster.id,
                    self.step_id,
                    interval=self.interval,
                    timeout=self.agent.config.spec.timeout,
                    abandon=abandon,
                )
            )

        def kill() -> None:
            cancel_step(self.agent.aws, self.cluster.id, self.step_id, kill=True)
            abandon.set()

        try:
            interrupted = follow_interruptibly(
                poll,
                stop=lambda: cancel_step(self.agent.aws, self.cluster.id, self.step_id),
                kill=kill,
            )
            outcome = outcomes[0]
            reader = EventReader(sink)
            reader.feed(self.events())
            return self._closing_event(reader, outcome, interrupted, started)
        finally:
            self._copy_outputs()
            self._remove_run_objects()

    def events(self) -> list[str]:
        """Return the run's event lines: from staging, else from the step's log."""
        data = self.agent.staging.get_bytes(f"{self.run}/events.jsonl")
        if data is None:
            data = self.step_log("stdout")
        return data.decode("utf-8", "replace").splitlines() if data else []

    def step_log(self, name: str) -> bytes | None:
        """Return the step's `stdout` or `stderr` log from the cluster's log_uri."""
        log_uri = self.cluster.log_uri
        if not log_uri:
            logger.warning(
                "Cluster %s has no log_uri, so EMR keeps no logs of step %s; set "
                "agent.log_uri to keep them",
                self.cluster.id,
                self.step_id,
            )
            return None
        location = S3Location.parse(log_uri)
        key = location.key(f"{self.cluster.id}/steps/{self.step_id}/{name}.gz")
        # EMR copies step logs to S3 a while after the step ends.
        deadline = time.monotonic() + self.log_wait
        while True:
            data = get_object(self.agent.aws, location.bucket, key)
            if data is not None:
                return gzip.decompress(data)
            if time.monotonic() >= deadline:
                logger.warning(
                    "The %s log of step %s is not in %s yet",
                    name,
                    self.step_id,
                    log_uri,
                )
                return None
            time.sleep(min(5.0, self.log_wait))

    def _closing_event(
        self, reader: Any, outcome: StepOutcome, interrupted: bool, started: float
    ) -> RunFinished:
        from prism.engine.events import RunFinished

        duration = time.perf_counter() - started
        if interrupted:
            return RunFinished(exit_code=130, duration=duration)
        finished: RunFinished | None = reader.finished
        if outcome.state == "COMPLETED" and (
            finished is None or finished.exit_code == 0
        ):
            return finished or RunFinished(exit_code=0, duration=duration)
        if finished is not None and finished.exit_code != 0:
            return finished
        detail = outcome.reason or "no reason given"
        errors = self.step_log("stderr") if finished is None else None
        if errors:
            tail = errors.decode("utf-8", "replace").strip().splitlines()[-20:]
            detail += "\n" + "\n".join(tail)
        return RunFinished(
            exit_code=1,
            duration=duration,
            error=f"Step {self.step_id} on cluster {self.cluster.id} ended "
            f"{outcome.state}: {detail}",
        )

    def _copy_outputs(self) -> None:
        from prism.engine.manifest import record_targets

        data = self.agent.staging.get_bytes(f"{self.run}/outputs.tar")
        if data is None:
            return
        root = self.agent.project_root
        written = extract_outputs(data, root)
        record_targets(root, {str(root / path) for path in written})

    def _remove_run_objects(self) -> None:
        for name in ("request.json", "events.jsonl", "outputs.tar"):
            try:
                self.agent.aws.call(
                    "s3",
                    "delete_object",
                    Bucket=self.agent.staging.location.bucket,
                    Key=self.agent.staging.location.key(f"{self.run}/{name}"),
                )
            except ConfigError as error:
                logger.debug("Could not delete %s: %s", name, error)


def extract_outputs(data: bytes, root: Path) -> list[str]:
    """Unpack a step's outputs into `root`; return the targets it wrote.

    Members that would land outside `root` (absolute paths, `..`, links) are
    skipped.
    """
    written: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            if member.name == OUTPUTS_MANIFEST:
                stream = archive.extractfile(member)
                written = json.loads(stream.read()) if stream else []
                continue
            target = (root / member.name).resolve()
            if not target.is_relative_to(root) or member.issym() or member.islnk():
                logger.warning(
                    "Not copying %s back: it is outside the project", member.name
                )
                continue
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                stream = archive.extractfile(member)
                if stream is not None:
                    target.write_bytes(stream.read())
    return [str(path) for path in written]


def _log_hint(cluster: Cluster, step_id: str) -> str:
    if cluster.log_uri:
        return (
            f"The step's logs are in {cluster.log_uri}{cluster.id}/steps/{step_id}/ "
            "(EMR copies them a few minutes after the step ends)."
        )
    return (
        "The cluster has no log_uri, so EMR keeps no step logs; set agent.log_uri "
        "to keep them, or look at the step in the EMR console."
    )
