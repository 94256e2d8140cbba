"""A tenant misbehaving inside its server hits its own limits; the panel and the others carry on."""

import statistics
import threading
import time

import pytest
import requests

from hosting.backends import docker
from hosting import services

from .conftest import inner_daemon_answers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker, pytest.mark.usefixtures("eager_tasks")]


@pytest.fixture
def two_servers(real_docker, alice, bob, settings):
    settings.SERVER_DEFAULT_PIDS = 256
    settings.SERVER_DEFAULT_MEMORY_MB = 256
    a = services.server_create(owner=alice, name="noisy")
    b = services.server_create(owner=bob, name="quiet")
    for server in (a, b):
        server.refresh_from_db()
        assert server.state == "running", server.last_error
        inner_daemon_answers(server)
    return a, b


def panel_latencies(url, stop):
    latencies = []
    session = requests.Session()
    while not stop.is_set():
        started = time.perf_counter()
        session.get(url, timeout=10)
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)
    return latencies


def p95(values):
    return statistics.quantiles(values, n=20)[-1]


def test_a_fork_bomb_stops_at_the_pids_limit_and_the_panel_keeps_answering(two_servers, real_docker, live_server):
    noisy, quiet = two_servers
    counter = _pids_current(real_docker, noisy)  # found first: once the bomb runs, its cgroup may already be gone for a restart
    stop, results = threading.Event(), []
    watcher = threading.Thread(target=lambda: results.extend(panel_latencies(live_server.url + "/login/", stop)))
    watcher.start()
    try:
        # A classic bash fork bomb, for 15 seconds, inside the noisy server.
        real_docker.containers.get(noisy.container_name).exec_run(
            ["timeout", "-s", "KILL", "15", "bash", "-c", "bomb() { bomb | bomb & }; bomb"], detach=True)
        # Sampled often: the bomb may take the server's own daemon down within a
        # second, and the server then restarts in a fresh cgroup, without the bomb.
        peak, deadline = 0, time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                peak = max(peak, int(open(counter).read()))
            except (FileNotFoundError, ValueError):
                pass  # its cgroup is gone (the restart), or is being made again
            time.sleep(0.02)
    finally:
        stop.set()  # else a failure leaves the thread polling, and pytest never exits
        watcher.join(30)
    restarts = real_docker.api.inspect_container(noisy.container_name)["RestartCount"]
    assert peak <= 256, f"{peak} processes: the limit did not hold"
    assert peak > 100, f"the bomb never got going ({peak} processes, {restarts} restarts): this test proves nothing"
    assert docker.inner_ping(str(quiet.socket_dir), timeout=5)
    assert len(results) > 20 and p95(results) < 1.0, f"panel p95 {p95(results):.2f}s"


def test_a_memory_hog_is_killed_inside_its_server_only(two_servers, real_docker, live_server):
    noisy, quiet = two_servers
    container = real_docker.containers.get(noisy.container_name)
    # Ask for 1 GiB in a 256 MiB server (bash keeps the whole string in memory).
    code, output = container.exec_run(["bash", "-c", "x=$(head -c 1073741824 /dev/zero | tr '\\0' a); echo ${#x}"])
    assert code == 137, (code, output[-200:])  # SIGKILL: the OOM killer, inside the server's cgroup
    stats = real_docker.api.inspect_container(noisy.container_name)
    assert stats["HostConfig"]["Memory"] == 256 * 2**20
    assert real_docker.containers.get(quiet.container_name).status == "running"
    assert docker.inner_ping(str(quiet.socket_dir), timeout=5)
    assert requests.get(live_server.url + "/login/", timeout=5).status_code == 200


def _pids_current(real_docker, server):
    """The container's pids counter in the host's cgroup tree (v1 or v2)."""
    from pathlib import Path

    container_id = real_docker.api.inspect_container(server.container_name)["Id"]
    for candidate in (
        f"/sys/fs/cgroup/pids/docker/{container_id}/pids.current",
        f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/pids.current",
        f"/sys/fs/cgroup/docker/{container_id}/pids.current",
    ):
        if Path(candidate).exists():
            return candidate
    pytest.fail(f"no pids.current for {container_id[:12]} under /sys/fs/cgroup")
