"""A Prism environment in one folder on a host reached over SSH.

The SSH agent and the agents that create hosts (EC2) share this: the folder
layout, the offline install of the requirements, shipping the project, running
it with events streamed back, copying outputs back and removing the folder.

The folder contains `venv/` with the dependencies, installed offline from a
wheelhouse the client builds for the host's Python and platform, and
`wheelhouses/`. It also contains `files/`, where the project is mirrored at its
local absolute path, so relative paths between the project and the folders it
imports from stay the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prism.agents.aws import wait_for
from prism.agents.bundle import collect_bundle, output_paths
from prism.agents.deps import (
    PythonTarget,
    build_wheelhouse,
    install_command,
    probe_script,
)
from prism.agents.openssh import SshConnection
from prism.engine.manifest import record_targets
from prism.errors import ConfigError

if TYPE_CHECKING:
    from prism.agents.base import Agent
    from prism.agents.remote import RemoteRun
    from prism.engine.events import EventSink, RunFinished

__all__ = ["HostEnvironment"]

logger = logging.getLogger(__name__)

# Run on the host with the shipped files' paths, relative to the project,
# zlib-compressed and in base64 (4.6 KB of paths become 0.8 KB for 204 files),
# as its second argument or, when "-", on stdin: removes files under the
# mirrored project that are no longer part of it, such as a deleted task. The
# bytecode of earlier runs stays, so unchanged modules are not compiled again;
# Python checks each .pyc against its source's mtime and size, which rsync keeps.
_PRUNE = """
import base64, os, sys, zlib
root, encoded = sys.argv[1], sys.argv[2]
if encoded == "-":
    encoded = sys.stdin.read()
names = zlib.decompress(base64.b64decode(encoded)).decode().split("\\0")
keep = {os.path.join(root, name) for name in names}
for folder, folders, files in os.walk(root):
    folders[:] = [name for name in folders if name != "__pycache__"]
    for name in files:
        path = os.path.join(folder, name)
        if path not in keep:
            os.remove(path)
"""


class HostEnvironment:
    """The agent's folder on a host: its virtual environment and project mirror.

    `workdir` None puts the folder at `~/.prism/<project>-<hash>/<agent>`; a
    relative `workdir` or one starting with `~/` lives under the login's home.
    """

    def __init__(
        self,
        agent: Agent,
        connection: SshConnection,
        *,
        host: str,
        workdir: str | None,
        python: str,
    ) -> None:
        self.agent = agent
        self.connection = connection
        self.host = host
        self.python = python
        self._workdir = workdir[2:] if workdir and workdir.startswith("~/") else workdir
        self._home: str | None = None

    @property
    def folder(self) -> str:
        """The agent's folder on the host, for the remote shell (may use $HOME)."""
        if self._workdir is not None and self._workdir.startswith("/"):
            return shlex.quote(self._workdir)
        return f"$HOME/{shlex.quote(self.rsync_folder)}"

    @property
    def rsync_folder(self) -> str:
        """The agent's folder as rsync names it: relative paths start at home."""
        if self._workdir is not None:
            return self._workdir
        root = self.agent.project_root
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
        return f".prism/{root.name}-{digest}/{self.agent.name}"

    def is_current(self, fingerprint: str) -> bool:
        """Return True when the folder contains the environment for `fingerprint`."""
        result = self.connection.run(
            f"test -x {self.folder}/venv/bin/python && cat {self.folder}/fingerprint",
            check=False,
        )
        if result.returncode == 255:
            raise self.connection.error_for("reach the host", result)
        return result.returncode == 0 and result.stdout.decode().strip() == fingerprint

    def wait_for_login(self, name: str, timeout: float = 300) -> None:
        """Wait until SSH logs in to a host that is starting; `name` is its id."""
        last_error: list[str] = []

        def check() -> str | None:
            result = self.connection.run("true", check=False)
            if result.returncode == 0:
                return "ok"
            if result.returncode != 255:
                raise self.connection.error_for("log in", result)
            last_error[:] = [self.connection.error_for("log in", result).message]
            return None

        with self.agent.step(f"Waiting for SSH on {name} ({self.host})"):
            try:
                wait_for(f"SSH on {name}", check, timeout=timeout, interval=5)
            except ConfigError as error:
                detail = f" ({last_error[0]})" if last_error else ""
                raise ConfigError(
                    f"{error.message}{detail}",
                    hint="Check agent.ssh_cidr (your address must be in it), "
                    "agent.ssh_proxy and the key; then apply again.",
                ) from None

    def probe(self) -> PythonTarget:
        """Return the Python version and platform of the host's interpreter."""
        result = self.connection.run(
            f"{shlex.quote(self.python)} -c {shlex.quote(probe_script())}",
            check=False,
        )
        if result.returncode == 255:
            raise self.connection.error_for("reach the host", result)
        if result.returncode != 0:
            raise ConfigError(
                f"{self.agent.config.path}: agent.python: {self.python!r} does not "
                f"run on {self.host}",
                hint="Install Python 3.10 or newer with its venv module there, or "
                "set agent.python to its path.",
            )
        target = PythonTarget.from_probe(result.stdout.decode())
        if not target.supported:
            raise ConfigError(
                f"{self.agent.config.path}: agent.python: {self.python!r} on "
                f"{self.host} is Python {target.version}; Prism needs 3.10 or newer",
                hint="Install a newer Python there (e.g. python3.11) and set "
                "agent.python to it.",
            )
        return target

    def install(self, fingerprint: str) -> PythonTarget:
        """Build the virtual environment for `fingerprint` from a wheelhouse."""
        target = self.probe()
        with self.agent.step("Building the wheelhouse"):
            wheelhouse = build_wheelhouse(self.agent.config.requirements_path, target)
        remote_wheelhouse = f"wheelhouses/{wheelhouse.key}"
        with self.agent.step(f"Copying the wheelhouse to {self.host}"):
            self.connection.run(f"mkdir -p {self.folder}/wheelhouses")
            self.connection.push_folder(
                wheelhouse.path, f"{self.rsync_folder}/{remote_wheelhouse}"
            )
        # Each environment is built in envs/<key> and `venv` is a symbolic link
        # to it, swapped in one step: an interrupted apply leaves the previous
        # environment working, and console scripts keep valid #! lines.
        key = fingerprint[:16]
        python = f"envs/{key}/bin/python"
        install = shlex.join(install_command(python, remote_wheelhouse))
        swap = (
            "import os; os.symlink({!r}, 'venv.tmp'); os.replace('venv.tmp', 'venv')"
        ).format(f"envs/{key}")
        script = " && ".join(
            [
                f"cd {self.folder}",
                f"rm -rf envs/{key} venv.tmp",
                "mkdir -p envs",
                f"{shlex.quote(self.python)} -m venv envs/{key}",
                install,
                "{ test -L venv || rm -rf venv; }",
                f"{python} -c {shlex.quote(swap)}",
                f"echo {fingerprint} > fingerprint",
                f"find envs -mindepth 1 -maxdepth 1 ! -name {key} -exec rm -rf {{}} +",
                f"find wheelhouses -mindepth 1 -maxdepth 1 ! -name {wheelhouse.key} "
                "-exec rm -rf {} +",
            ]
        )
        with self.agent.step(f"Installing requirements on {self.host}"):
            self.connection.run(script, action="create the virtual environment")
        return target

    def start(
        self,
        request: RemoteRun,
        payload: bytes,
        environment: dict[str, str] | None = None,
    ) -> Callable[[EventSink], RunFinished]:
        """Ship the project, start it, and return the function that follows it.

        `environment` adds variables to the run's process on its command line,
        so it must hold no secret; `env` values travel in `payload`, and win.
        """
        # Runs share the host's mirror of the project, so one runs at a time.
        run_lock = contextlib.ExitStack()
        run_lock.enter_context(self.agent.lock("run"))
        try:
            return self._start_locked(request, payload, environment or {}, run_lock)
        except BaseException:
            run_lock.close()
            raise

    def _start_locked(
        self,
        request: RemoteRun,
        payload: bytes,
        environment: dict[str, str],
        run_lock: contextlib.ExitStack,
    ) -> Callable[[EventSink], RunFinished]:
        project_root = self.agent.project_root
        bundle = collect_bundle(project_root, with_targets=bool(request.selectors))
        files = [str(path).lstrip("/") for path in bundle.files]
        sent = self.connection.push(Path("/"), files, f"{self.rsync_folder}/files")
        logger.debug("Sent %d bytes of project files", sent)

        remote_root = f"{self.folder}/files{shlex.quote(str(project_root))}"
        variables = "".join(
            f"{name}={shlex.quote(value)} " for name, value in environment.items()
        )
        command = (
            f"cd {remote_root} && {self._prune_command(bundle.files)} && "
            f"echo $$ > {self.folder}/run.pid && "
            f"exec {'env ' + variables if variables else ''}"
            f"{self.folder}/venv/bin/python -m prism.agents.remote"
        )
        process = self.connection.popen(command)
        assert process.stdin is not None
        process.stdin.write(payload)
        process.stdin.close()

        def follow(sink: EventSink) -> RunFinished:
            from prism.agents.process import stream_process
            from prism.engine.events import RunStarted, TaskFinished

            written: set[str] = set()
            mirrors: list[str] = []

            def collect(event: Any) -> None:
                # Targets come as the host's paths. The project's path on the
                # host, from the first event, gives the mirror's prefix, which
                # maps them back to this machine's.
                if isinstance(event, RunStarted):
                    mirrors.append(_mirror_prefix(event.project, project_root))
                if isinstance(event, TaskFinished) and mirrors:
                    written.update(
                        path[len(mirrors[0]) :]
                        for path in event.targets
                        if path.startswith(mirrors[0] + "/")
                    )
                sink(event)

            try:
                finished = stream_process(
                    process,
                    collect,
                    timeout=self.agent.config.spec.timeout,
                    stop=lambda: self._signal_run("TERM"),
                    kill=lambda: self._kill(process),
                )
                if finished.exit_code == 255:
                    # ssh itself exits 255 when the connection fails.
                    return dataclasses.replace(
                        finished,
                        exit_code=1,
                        error=f"Lost the SSH connection to {self.host} during the "
                        f"run: {finished.error}",
                    )
                return finished
            finally:
                try:
                    self._copy_outputs(written)
                finally:
                    run_lock.close()

        return follow

    def _prune_command(self, files: tuple[Path, ...]) -> str:
        """Return the shell command, run in the mirrored project, that prunes it.

        The list of files travels in the command itself, which saves a round
        trip, unless it is too long for one argument (Linux allows 128 KiB);
        then it is sent to the host first.
        """
        import base64
        import zlib

        project_root = self.agent.project_root
        names = "\0".join(
            str(path.relative_to(project_root))
            for path in files
            if path.is_relative_to(project_root)
        )
        encoded = base64.b64encode(zlib.compress(names.encode())).decode()
        prune = f'{self.folder}/venv/bin/python -c {shlex.quote(_PRUNE)} "$PWD"'
        if len(encoded) <= 100_000:
            return f"{prune} {encoded}"
        listing = f"{self.folder}/prune-list"
        self.connection.run(
            f"cat > {listing}", input=encoded.encode(), action="send the file list"
        )
        return f"{prune} - < {listing}"

    def home_path(self) -> str:
        """Return the folder without shell syntax, for use inside remote Python code."""
        if self._workdir is not None and self._workdir.startswith("/"):
            return self._workdir
        if self._home is None:
            result = self.connection.run("echo $HOME", action="find the home folder")
            self._home = result.stdout.decode().strip()
        return f"{self._home}/{self.rsync_folder}"

    def _signal_run(self, signal: str) -> None:
        self.connection.run(
            f"kill -{signal} -- -$(cat {self.folder}/run.pid) 2>/dev/null; true",
            check=False,
        )

    def _kill(self, process: Any) -> None:
        self._signal_run("KILL")
        process.kill()

    def _copy_outputs(self, written: set[str]) -> None:
        project_root = self.agent.project_root
        paths = output_paths(project_root, written, self.agent.config.spec.artifacts)
        self.connection.pull(
            f"{self.rsync_folder}/files{project_root}",
            [str(path.relative_to(project_root)) for path in paths],
            project_root,
        )
        record_targets(project_root, written)

    def delete(self) -> bool:
        """Remove the folder if it contains an agent's files; return True if it did."""
        # The default folder sits in one folder per project; drop it once empty.
        remove_parent = (
            ""
            if self._workdir is not None
            else f"rmdir {self.folder.rsplit('/', 1)[0]} 2>/dev/null; "
        )
        result = self.connection.run(
            f"test -f {self.folder}/fingerprint -o -d {self.folder}/files "
            f"&& rm -rf {self.folder} && echo removed; {remove_parent}true",
            check=False,
        )
        if result.returncode == 255:
            raise self.connection.error_for("reach the host", result)
        return b"removed" in result.stdout

    def status(self) -> list[tuple[str, str]]:
        """Describe the folder: where it is, its size and its Python."""
        result = self.connection.run(
            f"cd {self.folder} 2>/dev/null && du -sh . | cut -f1 && "
            "venv/bin/python -c 'import sys; print(sys.version.split()[0])'",
            check=False,
        )
        if result.returncode == 255:
            raise self.connection.error_for("reach the host", result)
        lines = result.stdout.decode().split()
        where = f"{self.host}:{self.rsync_folder}"
        if result.returncode != 0 or len(lines) < 2:
            return [("host folder", f"{where} (none)")]
        return [("host folder", where), ("size", lines[0]), ("python", lines[1])]


def _mirror_prefix(remote_project: str, project_root: Path) -> str:
    """Return the host's prefix of the mirrored project's local absolute path."""
    local = str(project_root)
    if remote_project.endswith(local):
        return remote_project[: -len(local)]
    return remote_project
