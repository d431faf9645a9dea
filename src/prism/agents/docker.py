"""The Docker agent: an image with the project's dependencies, a container per run.

In Docker's terms: `apply` builds an image `FROM` the agent's `image`, adding a
virtual environment at `/opt/prism/venv` with `requirements` and this Prism,
installed offline from a wheelhouse built on the client. The project's code is
not in the image. Each run creates a container and copies the bundle into it at
the project's absolute path. It then starts the run, streams its events, copies
the folders its targets wrote (and `artifacts`) back, and removes the container. So
a code change rebuilds nothing, and `env` reaches the container only at run
time, never in an image layer.

Everything Prism creates carries the labels `prism.project` and `prism.agent`,
and `delete` removes exactly what carries this project's and agent's labels.
The engine is `server_url` when set, else `DOCKER_HOST`, else the default socket.

Not supported: pulling from registries that need a login, GPUs, and ports.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prism.agents.base import Agent
from prism.agents.bundle import collect_bundle, output_paths
from prism.agents.deps import (
    PythonTarget,
    build_wheelhouse,
    prism_source_hash,
    probe_script,
)
from prism.agents.process import (
    GRACE_SECONDS,
    closing_event,
    follow_interruptibly,
)
from prism.agents.stream import EventReader
from prism.engine.events import EventSink, RunFinished, TaskFinished
from prism.engine.manifest import record_targets
from prism.errors import ConfigError, PrismError

if TYPE_CHECKING:
    import docker

    from prism.agents.remote import RemoteRun

__all__ = ["DockerAgent"]

logger = logging.getLogger(__name__)

VENV = "/opt/prism/venv"
_DOCKERFILE = """\
FROM {base}
COPY wheelhouse /tmp/prism-wheelhouse
RUN python3 -m venv {venv} \\
 && {venv}/bin/python -m pip install --no-index --no-cache-dir \\
    --disable-pip-version-check --quiet --find-links /tmp/prism-wheelhouse \\
    -r /tmp/prism-wheelhouse/requirements.txt \\
 && rm -rf /tmp/prism-wheelhouse
ENV PATH={venv}/bin:$PATH PYTHONUNBUFFERED=1
"""


class DockerAgent(Agent):
    """Runs the project in a fresh container of an image built for the agent."""

    type = "docker"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: docker.DockerClient | None = None
        self._target_cache: PythonTarget | None = None

    @property
    def labels(self) -> dict[str, str]:
        return {
            "prism.project": _project_id(self.project_root),
            "prism.agent": self.name,
        }

    @property
    def repository(self) -> str:
        return f"prism/{_project_id(self.project_root)}-{_slug(self.name)}"

    def _tag(self, fingerprint: str) -> str:
        return f"{self.repository}:{fingerprint[:16]}"

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = _connect(self.config.spec.server_url)
        return self._client

    def _fingerprint_parts(self) -> tuple[str, ...]:
        return (prism_source_hash(),)

    def _is_current(self, fingerprint: str | None) -> bool:
        if fingerprint is None:
            return False
        with _docker_errors("look up the agent's image"):
            import docker.errors

            try:
                self.client.images.get(self._tag(fingerprint))
            except docker.errors.ImageNotFound:
                return False
        return True

    def _apply(self, fingerprint: str) -> str:
        base = self._base_image()
        target = self._probe_python(base)
        with self.step("Building the wheelhouse"):
            wheelhouse = build_wheelhouse(self.config.requirements_path, target)
        tag = self._tag(fingerprint)
        with self.step(f"Building image {tag} from {self.config.spec.image}"):
            self._build_image(base.id, wheelhouse.path, tag, fingerprint)
        removed = self._remove_images(keep=tag)
        self.state.add_resource(self.name, "image", tag, {"python": target.version})
        extra = f"; removed {len(removed)} older image(s)" if removed else ""
        return f"Agent {self.name}: image {tag} ready{extra}"

    def _base_image(self) -> Any:
        import docker.errors

        name = self.config.spec.image or ""
        with _docker_errors(f"find the image {name}"):
            try:
                return self.client.images.get(name)
            except docker.errors.ImageNotFound:
                pass
            with self.step(f"Pulling image {name}"):
                try:
                    return self.client.images.pull(name)
                except docker.errors.APIError as error:
                    raise ConfigError(
                        f"{self.config.path}: agent.image: {name} is not on the "
                        f"Docker engine and could not be pulled ({_explain(error)})",
                        hint="Pull or build the image first, or name one that exists "
                        "(`docker images` lists them).",
                    ) from None

    def _probe_python(self, base: Any) -> PythonTarget:
        if self._target_cache is not None:
            return self._target_cache
        with _docker_errors(f"start a container of {self.config.spec.image}"):
            import docker.errors

            try:
                output = self.client.containers.run(
                    base.id,
                    ["python3", "-c", probe_script()],
                    remove=True,
                    labels=self.labels,
                    network_mode="none",
                )
            except docker.errors.ContainerError as error:
                raise ConfigError(
                    f"{self.config.path}: agent.image: {self.config.spec.image} has no "
                    f"working python3 ({_explain(error)})",
                    hint="Use an image with Python 3.10 or newer, e.g. a python:3.x "
                    "image or a Debian image with python3 and python3-venv.",
                ) from None
        target = PythonTarget.from_probe(output.decode())
        if not target.supported:
            raise ConfigError(
                f"{self.config.path}: agent.image: {self.config.spec.image} has "
                f"Python {target.version}; Prism needs 3.10 or newer"
            )
        self._target_cache = target
        return target

    def _build_image(
        self, base_id: str, wheelhouse: Path, tag: str, fingerprint: str
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="prism-build-") as folder:
            context = Path(folder)
            shutil.copytree(wheelhouse, context / "wheelhouse")
            (context / "Dockerfile").write_text(
                _DOCKERFILE.format(base=base_id, venv=VENV)
            )
            labels = {**self.labels, "prism.fingerprint": fingerprint}
            with _docker_errors("build the agent's image"):
                stream = self.client.api.build(
                    path=str(context),
                    tag=tag,
                    labels=labels,
                    rm=True,
                    forcerm=True,
                    decode=True,
                    pull=False,
                )
                _follow_build(stream)

    def _remove_images(self, keep: str) -> list[str]:
        removed = []
        with _docker_errors("remove the agent's old images"):
            for image in self.client.images.list(
                filters={"label": _label_filters(self.labels)}
            ):
                if keep in image.tags:
                    continue
                name = image.tags[0] if image.tags else image.short_id
                self.client.images.remove(image.id, force=True)
                removed.append(name)
        return removed

    def _start(
        self, request: RemoteRun, payload: bytes, early: Any = None
    ) -> Callable[[EventSink], RunFinished]:
        record = self.state.agent(self.name)
        assert record is not None and record.fingerprint is not None
        bundle = collect_bundle(self.project_root, with_targets=bool(request.selectors))
        spec = self.config.spec
        command = [f"{VENV}/bin/python", "-m", "prism.agents.remote"]
        options: dict[str, Any] = {}
        if spec.cpus:
            options["nano_cpus"] = int(spec.cpus * 1e9)
        if spec.memory:
            options["mem_limit"] = spec.memory
        with _docker_errors("create the run's container"):
            container = self.client.containers.create(
                self._tag(record.fingerprint),
                command,
                working_dir=str(self.project_root),
                labels={**self.labels, "prism.run": "true"},
                detach=True,
                stdin_open=True,
                **options,
            )
        try:
            with _docker_errors("copy the project into the container"):
                container.put_archive("/", bundle.to_tar())
            with _docker_errors("start the run's container"):
                stdin = container.attach_socket(params={"stdin": 1, "stream": 1})
                container.start()
                _send_payload(stdin, payload)
        except BaseException:
            _remove_container(container)
            raise
        logger.debug("Started container %s for agent %s", container.short_id, self.name)
        return lambda sink: self._follow(container, sink)

    def _follow(self, container: Any, sink: EventSink) -> RunFinished:
        started = time.perf_counter()
        written: set[str] = set()

        def collect(event: Any) -> None:
            if isinstance(event, TaskFinished):
                written.update(event.targets)
            sink(event)

        reader = EventReader(collect)
        errors: list[str] = []
        timed_out = threading.Event()
        timer = None
        if self.config.spec.timeout is not None:
            timer = threading.Timer(
                self.config.spec.timeout, _expire, args=(timed_out, container)
            )
            timer.daemon = True
            timer.start()
        statuses: list[int] = []
        try:
            interrupted = follow_interruptibly(
                lambda: statuses.append(self._stream(container, reader, errors)),
                stop=lambda: _stop_container(container),
                kill=lambda: _kill_container(container),
            )
            self._copy_outputs(container, written)
        finally:
            if timer is not None:
                timer.cancel()
            _remove_container(container)
        status = statuses[0] if statuses else 137

        return closing_event(
            reader,
            duration=time.perf_counter() - started,
            timeout=self.config.spec.timeout if timed_out.is_set() else None,
            interrupted=interrupted,
            status=status,
            errors=errors,
        )

    def _stream(self, container: Any, reader: EventReader, errors: list[str]) -> int:
        with _docker_errors("read the run's output"):
            pending = {"stdout": b"", "stderr": b""}
            received = False
            chunks = container.attach(
                stdout=True, stderr=True, stream=True, logs=True, demux=True
            )
            for out, err in chunks:
                received = received or bool(out)
                for name, data in (("stdout", out), ("stderr", err)):
                    if not data:
                        continue
                    *lines, pending[name] = (pending[name] + data).split(b"\n")
                    for line in lines:
                        if name == "stdout":
                            reader.feed_line(line)
                        else:
                            errors.append(line.decode("utf-8", "replace"))
            if pending["stdout"]:
                reader.feed_line(pending["stdout"])
            if pending["stderr"]:
                errors.append(pending["stderr"].decode("utf-8", "replace"))
            result = container.wait()
            if not received:
                # Once, under heavy load, the stream carried nothing although
                # the run ended normally; the container's log keeps the output.
                log = container.logs(stdout=True, stderr=False)
                reader.feed(log.split(b"\n"))
        return int(result.get("StatusCode", 1))

    def _copy_outputs(self, container: Any, written: set[str]) -> None:
        for path in output_paths(
            self.project_root, written, self.config.spec.artifacts
        ):
            _copy_back(container, path)
        record_targets(self.project_root, written)

    def _delete(self) -> list[str]:
        removed = []
        with _docker_errors("remove the agent's containers and images"):
            filters = {"label": _label_filters(self.labels)}
            for container in self.client.containers.list(all=True, filters=filters):
                container.remove(force=True)
                removed.append(f"removed container {container.short_id}")
            for image in self.client.images.list(filters=filters):
                name = image.tags[0] if image.tags else image.short_id
                self.client.images.remove(image.id, force=True)
                removed.append(f"removed image {name}")
        return removed

    def _status(self) -> list[tuple[str, str]]:
        with _docker_errors("list the agent's images"):
            images = self.client.images.list(
                filters={"label": _label_filters(self.labels)}
            )
        if not images:
            return [("image", "none")]
        image = images[0]
        created = image.attrs.get("Created", "")[:19].replace("T", " ")
        return [
            ("image", image.tags[0] if image.tags else image.short_id),
            ("size", f"{image.attrs.get('Size', 0) / 1e6:.1f} MB"),
            ("built", created),
            ("base image", self.config.spec.image or ""),
        ]


def _connect(server_url: str | None) -> docker.DockerClient:
    try:
        import docker
    except ImportError:
        raise ConfigError(
            "The Docker agent needs the Docker SDK for Python",
            hint="Install it with: pip install 'prism-pipelines[docker]'",
        ) from None
    where = server_url or "DOCKER_HOST or the default socket"
    try:
        client = (
            docker.DockerClient(base_url=server_url)
            if server_url
            else docker.from_env()
        )
        client.ping()
    except docker.errors.DockerException as error:
        raise ConfigError(
            f"Cannot reach the Docker engine at {where}: {_explain(error)}",
            hint="Start Docker, or set agent.server_url (e.g. unix:///var/run/"
            "docker.sock or tcp://127.0.0.1:2375).",
        ) from None
    return client


@contextmanager
def _docker_errors(action: str) -> Iterator[None]:
    """Turn the Docker SDK's exceptions into one Prism error naming the action."""
    import docker.errors

    try:
        yield
    except PrismError:
        raise
    except docker.errors.DockerException as error:
        raise ConfigError(f"Failed to {action}: {_explain(error)}") from error


def _explain(error: BaseException) -> str:
    explanation = getattr(error, "explanation", None)
    text = explanation if isinstance(explanation, str) and explanation else str(error)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text.strip().splitlines()[-1] if text.strip() else type(error).__name__


def _follow_build(stream: Any) -> None:
    tail: list[str] = []
    for chunk in stream:
        if "error" in chunk:
            detail = "\n  ".join([*tail[-6:], chunk["error"].strip()])
            raise ConfigError(f"The image build failed:\n  {detail}")
        text = chunk.get("stream", "").rstrip()
        if not text:
            continue
        tail.append(text)
        if text.startswith("Step "):
            logger.info("  %s", text if len(text) < 100 else text[:97] + "...")
        else:
            logger.debug("  %s", text)


def _label_filters(labels: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in labels.items()]


def _project_id(root: Path) -> str:
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    return f"{_slug(root.name)}-{digest}"


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "project"


def _copy_back(container: Any, path: Path) -> None:
    import docker.errors

    try:
        chunks, _ = container.get_archive(str(path))
    except docker.errors.NotFound:
        return
    data = b"".join(chunks)
    destination = path.parent
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = [
            member
            for member in archive.getmembers()
            if (destination / member.name).resolve().is_relative_to(destination)
        ]
        archive.extractall(destination, members=members, filter="data")


def _stop_container(container: Any) -> None:
    import docker.errors

    try:
        container.stop(timeout=int(GRACE_SECONDS))
    except docker.errors.DockerException:
        pass


def _send_payload(stdin: Any, payload: bytes) -> None:
    # The socket of `attach_socket` wraps the raw connection; closing our side of
    # it closes the container's stdin, because the container has stdin_once.
    raw = getattr(stdin, "_sock", stdin)
    try:
        raw.sendall(payload)
        raw.shutdown(socket.SHUT_WR)
    finally:
        stdin.close()


def _kill_container(container: Any) -> None:
    import docker.errors

    try:
        container.kill()
    except docker.errors.DockerException:
        pass


def _remove_container(container: Any) -> None:
    import docker.errors

    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.DockerException as error:
        logger.warning("Could not remove container %s: %s", container.short_id, error)


def _expire(flag: threading.Event, container: Any) -> None:
    flag.set()
    _stop_container(container)
