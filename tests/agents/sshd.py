"""An OpenSSH server in a container on 127.0.0.1, as the far side of SSH agents."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration import require, require_test_image

SSHD_IMAGE = "prism-test/sshd:bookworm"


@dataclass(frozen=True)
class SshHost:
    """A running sshd container and an OpenSSH config that reaches it as `alias`.

    The login is `prism`, with the key `key`; `port` is published on 127.0.0.1.
    """

    alias: str
    config: Path
    known_hosts: Path
    container: Any
    key: Path
    port: int

    def command(self, remote: str) -> list[str]:
        """Return the argv that runs `remote` on the host, trusting it on first use."""
        return [
            "ssh",
            "-F",
            str(self.config),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            self.alias,
            remote,
        ]

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(command), capture_output=True, text=True, timeout=30
        )

    @property
    def proxy_command(self) -> str:
        """An `ssh_proxy` value that reaches this host's sshd through itself."""
        return (
            f"ssh -F {self.config} -o BatchMode=yes "
            f"-o StrictHostKeyChecking=accept-new -W 127.0.0.1:22 {self.alias}"
        )

    def authorize(self, public_key: str) -> None:
        """Let `public_key` log in as `prism`, as cloud-init does on a new instance."""
        result = self.container.exec_run(
            [
                "sh",
                "-c",
                'printf "%s\\n" "$1" >> /home/prism/.ssh/authorized_keys',
                "sh",
                public_key.strip(),
            ],
        )
        assert result.exit_code == 0, result.output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_sshd(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(4).startswith(b"SSH"):
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"sshd on 127.0.0.1:{port} did not answer")


@contextmanager
def running_sshd(folder: Path, image: str = SSHD_IMAGE) -> Iterator[SshHost]:
    """Start an sshd container of `image` with a fresh key and config in `folder`."""
    client = require_test_image(image)
    require(
        subprocess.run(["which", "rsync"], capture_output=True).returncode == 0,
        "rsync is not installed on this machine; run `apt-get install rsync`",
    )
    key = folder / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
    )
    port = free_port()
    container = client.containers.run(
        image,
        detach=True,
        remove=True,
        ports={"22/tcp": ("127.0.0.1", port)},
        environment={"SSH_AUTHORIZED_KEYS": key.with_suffix(".pub").read_text()},
        labels={"prism-test": "sshd"},
    )
    known_hosts = folder / "known_hosts"
    config = folder / "ssh_config"
    config.write_text(
        f"Host test-host\n"
        f"  HostName 127.0.0.1\n"
        f"  Port {port}\n"
        f"  User prism\n"
        f"  IdentityFile {key}\n"
        f"  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known_hosts}\n"
    )
    try:
        _wait_for_sshd(port)
        yield SshHost("test-host", config, known_hosts, container, key, port)
    finally:
        _remove_container(container.id)


def _remove_container(container_id: str) -> None:
    # Deleting a container's files (a host's virtual environments) can take
    # longer than the usual client's 10-second timeout on a busy machine.
    import docker

    client = docker.from_env(timeout=180)
    try:
        client.api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as error:
        # The container runs with auto-remove, which may already be under way.
        if "already in progress" not in str(error):
            raise
    finally:
        client.close()
