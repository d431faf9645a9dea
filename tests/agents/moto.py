"""moto's server on 127.0.0.1, standing in for the AWS APIs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.agents.sshd import free_port
from tests.integration import require


@contextmanager
def running_moto(log: Path) -> Iterator[str]:
    """Start `moto_server` on a free port of 127.0.0.1; yield its endpoint URL."""
    server = Path(sys.executable).with_name("moto_server")
    require(
        server.exists() or shutil.which("moto_server") is not None,
        "moto's server is not installed; run `pip install 'moto[server]'`",
    )
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_ready(endpoint, process)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(endpoint: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"moto_server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"moto_server at {endpoint} did not answer")


def boto_client(service: str, endpoint: str) -> Any:
    """Return a boto3 client for `service` on the moto server at `endpoint`."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
