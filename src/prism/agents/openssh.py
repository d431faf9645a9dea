"""Commands on a remote host through the system's OpenSSH client and rsync.

Using the system client means the user's SSH configuration applies as in their
shell: host aliases, `ProxyJump`, keys held by ssh-agent. One master connection
(ControlMaster) carries every command of a Prism command and is closed when it
ends. Host keys are checked: a host seen for the first time is accepted and
remembered unless the configuration sets `StrictHostKeyChecking` itself.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prism.errors import ConfigError

__all__ = ["SshConnection", "SshEndpoint"]

logger = logging.getLogger(__name__)

_CONNECT_TIMEOUT = 15


@dataclass(frozen=True)
class SshEndpoint:
    """The connection settings; None leaves a value to the SSH configuration."""

    host: str
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    config_file: str | None = None
    proxy: str | None = None
    known_hosts: str | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


class SshConnection:
    """Runs commands and copies files over one shared SSH connection."""

    def __init__(self, endpoint: SshEndpoint) -> None:
        self.endpoint = endpoint
        self._control_folder = tempfile.mkdtemp(prefix="prism-ssh-")
        self._options = self._build_options()

    def _build_options(self) -> list[str]:
        endpoint = self.endpoint
        options: list[str] = []
        if endpoint.config_file:
            options += ["-F", endpoint.config_file]
        if endpoint.port:
            options += ["-p", str(endpoint.port)]
        if endpoint.identity_file:
            options += ["-i", os.path.expanduser(endpoint.identity_file)]
        if endpoint.proxy:
            key = "ProxyCommand" if " " in endpoint.proxy else "ProxyJump"
            options += ["-o", f"{key}={endpoint.proxy}"]
        if endpoint.known_hosts:
            options += ["-o", f"UserKnownHostsFile={endpoint.known_hosts}"]
        options += [
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={_CONNECT_TIMEOUT}",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={self._control_folder}/%C",
            "-o",
            "ControlPersist=120",
        ]
        if self._configured_host_key_policy(options) == "ask":
            options += ["-o", "StrictHostKeyChecking=accept-new"]
        return options

    def _configured_host_key_policy(self, options: list[str]) -> str:
        # `ssh -G` prints the configuration that applies to the host; "ask" is
        # OpenSSH's default, which cannot work without a terminal.
        result = subprocess.run(
            ["ssh", "-G", *options, self.endpoint.destination],
            capture_output=True,
            text=True,
        )
        for line in result.stdout.splitlines():
            key, _, value = line.partition(" ")
            if key == "stricthostkeychecking":
                return value.strip()
        return "ask"

    def command(self, remote: str, *, tty: bool = False) -> list[str]:
        """Return the local argv that runs the shell command `remote` on the host."""
        flags = ["-tt"] if tty else ["-T"]
        return ["ssh", *flags, *self._options, self.endpoint.destination, remote]

    def run(
        self,
        remote: str,
        *,
        input: bytes | None = None,
        check: bool = True,
        action: str = "run a command",
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `remote` on the host and wait; raise ConfigError if it fails."""
        logger.debug("ssh %s: %s", self.endpoint.destination, remote)
        result = subprocess.run(self.command(remote), input=input, capture_output=True)
        if check and result.returncode != 0:
            raise self.error_for(action, result)
        return result

    def popen(self, remote: str) -> subprocess.Popen[bytes]:
        """Start `remote` on the host with piped stdin, stdout and stderr."""
        logger.debug("ssh %s: %s", self.endpoint.destination, remote)
        return subprocess.Popen(
            self.command(remote),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def rsync_shell(self) -> str:
        """Return the `rsync -e` value that reuses this connection's options."""
        return shlex.join(["ssh", "-T", *self._options])

    def push(self, local_root: Path, files: list[str], remote_root: str) -> int:
        """Copy `files` below `local_root` to `remote_root`; return the bytes sent."""
        with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as listing:
            listing.write("\n".join(files) + "\n")
        try:
            return self._rsync(
                [
                    "--files-from",
                    listing.name,
                    f"{local_root}/",
                    f"{self.endpoint.destination}:{remote_root}/",
                ],
                "copy the project to the host",
            )
        finally:
            os.unlink(listing.name)

    def push_folder(self, local: Path, remote: str) -> int:
        """Mirror the folder `local` to `remote` on the host; return bytes sent."""
        return self._rsync(
            ["--delete", f"{local}/", f"{self.endpoint.destination}:{remote}/"],
            f"copy {local} to the host",
        )

    def pull(self, remote_root: str, paths: list[str], local_root: Path) -> None:
        """Copy `paths` (files or folders, relative) below `remote_root` on the host
        to the same paths below `local_root`, in one rsync."""
        if not paths:
            return
        with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as listing:
            listing.write("\n".join(paths) + "\n")
        try:
            # -r recurses into the listed folders, which --files-from turns off;
            # --no-implied-dirs leaves the attributes of their parents alone.
            self._rsync(
                [
                    "-r",
                    "--no-implied-dirs",
                    "--files-from",
                    listing.name,
                    f"{self.endpoint.destination}:{remote_root}/",
                    f"{local_root}/",
                ],
                "copy the outputs back from the host",
                missing_ok=True,
            )
        finally:
            os.unlink(listing.name)

    def _rsync(
        self, arguments: list[str], action: str, missing_ok: bool = False
    ) -> int:
        # --modify-window=-1 compares modification times to the nanosecond, so an
        # edit that keeps the size within the same second is still copied.
        command = [
            "rsync",
            "-a",
            "--modify-window=-1",
            "--stats",
            "-e",
            self.rsync_shell(),
            *arguments,
        ]
        logger.debug("Running %s", shlex.join(command))
        result = subprocess.run(command, capture_output=True, text=True)
        # rsync exits 23 for a partial transfer, e.g. a source that does not exist.
        if result.returncode == 23 and missing_ok:
            return 0
        if result.returncode != 0:
            detail = result.stderr.strip().splitlines()[-3:]
            raise ConfigError(
                f"Failed to {action} with rsync (exit {result.returncode}): "
                + " ".join(detail)
            )
        return _bytes_sent(result.stdout)

    def close(self) -> None:
        """Close the shared connection, if one was opened."""
        subprocess.run(
            ["ssh", *self._options, "-O", "exit", self.endpoint.destination],
            capture_output=True,
        )
        try:
            os.rmdir(self._control_folder)
        except OSError:
            pass

    def error_for(
        self, action: str, result: subprocess.CompletedProcess[bytes]
    ) -> ConfigError:
        """Return the error to raise for a failed remote command."""
        text = result.stderr.decode("utf-8", "replace").strip()
        detail = text.splitlines()[-1] if text else f"exit {result.returncode}"
        if result.returncode == 255:
            return ConfigError(
                f"Cannot connect to {self.endpoint.destination} over SSH: {detail}",
                hint="Check the host, user, port and key; `ssh "
                f"{self.endpoint.destination}` should log in without a password.",
            )
        return ConfigError(f"Failed to {action} on {self.endpoint.host}: {detail}")


def _bytes_sent(stats: str) -> int:
    for line in stats.splitlines():
        if line.startswith("Total bytes sent:"):
            return int(line.split(":", 1)[1].strip().replace(",", ""))
    return 0
