"""Real Docker for the integration tests (marked `docker`).

Containers made here carry the instance label `controlpanel-test` and a test
prefix, so cleaning up never touches a panel running on the same engine.
"""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import docker as docker_sdk
import pytest

from hosting import docker

ROOT = Path(__file__).resolve().parents[2]
TEST_INSTANCE = "controlpanel-test"
TEST_APP_IMAGE = "controlpanel/testapp:local"


def _remove_test_objects():
    client = docker_sdk.from_env()
    for container in client.containers.list(all=True, filters={"label": f"controlpanel.instance={TEST_INSTANCE}"}):
        container.remove(force=True)
    for volume in client.volumes.list(filters={"name": "cptest-dind-"}):
        volume.remove(force=True)
    client.close()


@pytest.fixture(scope="session")
def docker_engine():
    try:
        docker.engine_ping()
    except docker.DockerError as error:
        pytest.fail(f"{error} The integration tests need a Docker engine: `.ci/test` starts one.")
    subprocess.run([ROOT / "hosting/images/build"], check=True)
    _remove_test_objects()
    yield
    _remove_test_objects()


@pytest.fixture
def real_docker(docker_engine, settings):
    sockets = tempfile.mkdtemp(prefix="cpt-")  # short: unix socket paths max out at 108 bytes
    settings.SERVER_CONTAINER_PREFIX = "cptest-dind-"
    settings.PANEL_INSTANCE = TEST_INSTANCE
    settings.SERVER_NETWORK = "controlpanel-test-users"
    settings.SERVER_SOCKET_ROOT = Path(sockets)
    settings.SERVER_DEFAULT_MEMORY_MB = 512
    settings.SERVER_DEFAULT_CPUS = 1.0
    settings.SERVER_DEFAULT_PIDS = 512
    yield docker_sdk.from_env()
    _remove_test_objects()
    shutil.rmtree(sockets, ignore_errors=True)


def wait_until(predicate, timeout=30, interval=0.25, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def inner_daemon_answers(server):
    def ping():
        try:
            return docker.inner_ping(str(server.socket_dir), timeout=2)
        except docker.DockerError:
            return False

    return wait_until(ping, what=f"the inner daemon of {server.container_name}")
