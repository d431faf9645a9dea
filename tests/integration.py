"""Checks for the external components that integration tests need.

A missing component skips the test, unless `PRISM_REQUIRE_INTEGRATION=1`: then it
fails the test, so a CI job that is meant to run the integration tests cannot pass
by skipping them.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

TEST_IMAGE = "prism-test/base:bookworm"
SETUP_COMMAND = (
    "bash .ci/install-docker.sh && bash scripts/build-test-images.sh --with-spark"
)


def require(condition: bool, reason: str) -> None:
    """Skip the test when `condition` is false, or fail it in a required run."""
    if condition:
        return
    if os.environ.get("PRISM_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"{reason} (PRISM_REQUIRE_INTEGRATION=1)", pytrace=False)
    pytest.skip(reason)


def docker_client() -> Any | None:
    """Return a Docker SDK client whose engine responds to a ping, or None."""
    try:
        import docker
    except ImportError:
        return None
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except docker.errors.DockerException:
        return None
    return client


def docker_available() -> bool:
    """Return True when the Docker SDK imports and the engine responds to a ping."""
    client = docker_client()
    if client is None:
        return False
    client.close()
    return True


def image_exists(client: Any, name: str = TEST_IMAGE) -> bool:
    """Return True when the engine behind `client` has the image `name`."""
    import docker

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def require_test_image(name: str = TEST_IMAGE) -> Any:
    """Return a Docker client whose engine has the image `name`, else skip or fail."""
    client = docker_client()
    require(
        client is not None,
        f"no Docker engine responds, or the docker SDK is missing: run "
        f"`{SETUP_COMMAND}`",
    )
    require(
        image_exists(client, name),
        f"the Docker image {name} is missing: run `{SETUP_COMMAND}`",
    )
    return client
