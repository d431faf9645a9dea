"""A Prism environment in one folder on a host reached over SSH.

The SSH agent and the agents that create hosts (EC2) share this: the folder
layout, the offline install of the requirements, shipping the project, running
it with events streamed back, copying outputs back and removing the folder.

The folder holds `venv/` with the dependencies, installed offline from a
wheelhouse the client builds for the host's Python and platform, and
`wheelhouses/`. It also holds `files/`, where the project is mirrored at its
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

# Run on the host with the list of shipped files on stdin: removes files under
# the mirrored project that are no longer part of it, such as a deleted task.
_PRUNE = """
import os, sys
root, keep = sys.argv[1], set(sys.stdin.read().split("\\0"))
for folder, _, names in os.walk(root):
    for name in names:
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
        """Return True when the folder holds the environment for `fingerprint`."""
        result = self.connection.run(
            f"test -x {self.folder}/venv/bin/python && cat {self.folder}/fingerprint",
            check=False,
        )
        if result.returncode == 255:
            raise self.connection.error_for("reach the host", result)
        return result.returncode == 0 and result.stdout.decode().strip() == fingerprint

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
        install = shlex.join(install_command("venv.new/bin/python", remote_wheelhouse))
        # Build beside the old environment and swap, so an interrupted apply
        # leaves the previous one working.
        script = " && ".join(
            [
                f"cd {self.folder}",
                "rm -rf venv.new",
                f"{shlex.quote(self.python)} -m venv venv.new",
                install,
                "rm -rf venv",
                "mv venv.new venv",
                f"echo {fingerprint} > fingerprint",
                f"find wheelhouses -mindepth 1 -maxdepth 1 ! -name {wheelhouse.key} "
                "-exec rm -rf {} +",
            ]
        )
        with self.agent.step(f"Installing requirements on {self.host}"):
            self.connection.run(script, action="create the virtual environment")
        return target

    def start(
        self, request: RemoteRun, payload: bytes
    ) -> Callable[[EventSink], RunFinished]:
        """Ship the project, start it, and return the function that follows it."""
        # Runs share the host's mirror of the project, so one runs at a time.
        run_lock = contextlib.ExitStack()
        run_lock.enter_context(self.agent.lock("run"))
        try:
            return self._start_locked(request, payload, run_lock)
        except BaseException:
            run_lock.close()
            raise

    def _start_locked(
        self, request: RemoteRun, payload: bytes, run_lock: contextlib.ExitStack
    ) -> Callable[[EventSink], RunFinished]:
        project_root = self.agent.project_root
        bundle = collect_bundle(project_root, with_targets=bool(request.selectors))
        files = [str(path).lstrip("/") for path in bundle.files]
        sent = self.connection.push(Path("/"), files, f"{self.rsync_folder}/files")
        logger.debug("Sent %d bytes of project files", sent)
        self._prune(bundle.files)

        remote_root = f"{self.folder}/files{shlex.quote(str(project_root))}"
        command = (
            f"cd {remote_root} && echo $$ > {self.folder}/run.pid && "
            f"exec {self.folder}/venv/bin/python -m prism.agents.remote"
        )
        process = self.connection.popen(command)
        assert process.stdin is not None
        process.stdin.write(payload)
        process.stdin.close()

        def follow(sink: EventSink) -> RunFinished:
            from prism.agents.process import stream_process
            from prism.engine.events import TaskFinished

            written: set[str] = set()
            mirror = f"{self.home_path()}/files"

            def collect(event: Any) -> None:
                # Targets come as the host's paths; the mirror prefix maps them
                # back to this machine's.
                if isinstance(event, TaskFinished):
                    written.update(
                        path[len(mirror) :]
                        for path in event.targets
                        if path.startswith(mirror + "/")
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

    def _prune(self, files: tuple[Path, ...]) -> None:
        remote_files = "\0".join(f"{self.home_path()}/files{path}" for path in files)
        root = f"{self.home_path()}/files{self.agent.project_root}"
        self.connection.run(
            f"{self.folder}/venv/bin/python -c {shlex.quote(_PRUNE)} "
            f"{shlex.quote(root)}",
            input=remote_files.encode(),
            action="remove deleted project files",
        )

    def home_path(self) -> str:
        """The folder without shell syntax, for use inside remote Python code."""
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
        for path in output_paths(
            project_root, written, self.agent.config.spec.artifacts
        ):
            remote = f"{self.rsync_folder}/files{path}"
            self.connection.pull(remote, path)
        record_targets(project_root, written)

    def delete(self) -> bool:
        """Remove the folder if it holds an agent's files; True if it did."""
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
