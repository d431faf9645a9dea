"""moto's server on 127.0.0.1, standing in for the AWS APIs."""

from __future__ import annotations

import base64
import json
import os
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
def running_moto(log: Path, recording: Path | None = None) -> Iterator[str]:
    """Start `moto_server` on a free port of 127.0.0.1; yield its endpoint URL.

    With `recording`, moto appends every request it receives to that file, one
    JSON object a line (see `recorded_requests`).
    """
    server = Path(sys.executable).with_name("moto_server")
    require(
        server.exists() or shutil.which("moto_server") is not None,
        "moto's server is not installed; run `pip install 'moto[server]'`",
    )
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # AWS's managed IAM policies exist in every real account; moto loads them
    # only on request.
    environment = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    if recording is not None:
        environment["MOTO_ENABLE_RECORDING"] = "1"
        environment["MOTO_RECORDER_FILEPATH"] = str(recording)
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
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


def recorded_requests(recording: Path, target: str) -> list[dict[str, Any]]:
    """Return the JSON bodies of the recorded requests whose X-Amz-Target is `target`.

    `target` is the JSON protocol's operation name, such as
    `ElasticMapReduce.RunJobFlow`.
    """
    bodies = []
    for line in recording.read_text().splitlines():
        entry = json.loads(line)
        headers = {key.lower(): value for key, value in entry["headers"].items()}
        if headers.get("x-amz-target") != target:
            continue
        body = entry["body"]
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode()
        bodies.append(json.loads(body))
    return bodies
