"""The monitor against real daemons: the host engine and real virtual servers' inner daemons."""

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection

from hosting.worker import monitor
from hosting import services
from hosting.models import ContainerSnapshot, MonitorRun, VirtualServer

from .conftest import (
    IN_MEMORY_SCHEDULE,
    ROOT,
    TEST_APP_IMAGE,
    TEST_INSTANCE,
    inner_client,
    inner_daemon_answers,
    wait_until,
)

pytestmark = [pytest.mark.django_db, pytest.mark.docker, pytest.mark.usefixtures("eager_tasks")]


def rows(server):
    return {row.name: row for row in ContainerSnapshot.objects.filter(server=server)}


def test_cycle_follows_containers_inside_a_server(running_server, settings):
    server = running_server
    inner = inner_client(server)
    inner.containers.run(TEST_APP_IMAGE, ["httpd", "-f", "-p", "80", "-h", "/www"], name="web", detach=True,
                         ports={"80/tcp": 8080}, labels={"tier": "front"})
    inner.containers.run(TEST_APP_IMAGE, ["sleep", "600"], name="worker", detach=True)

    run = monitor.run_cycle()
    assert run.daemons_failed == 0, run.failures
    seen = rows(server)
    assert set(seen) == {"web", "worker"}
    web = seen["web"]
    assert web.image == TEST_APP_IMAGE and web.state == "running" and web.status.startswith("Up")
    assert web.labels == {"tier": "front"}
    assert "0.0.0.0:8080→80/tcp" in web.ports
    assert web.created and web.docker_id == inner.containers.get("web").id
    assert "httpd" in web.command

    inner.containers.get("worker").stop(timeout=0)
    monitor.run_cycle()
    assert rows(server)["worker"].state == "exited"

    inner.containers.get("worker").remove()
    monitor.run_cycle()
    assert set(rows(server)) == {"web"}

    # The host daemon's view: the server container itself.
    host_row = ContainerSnapshot.objects.get(server__isnull=True, name=server.container_name)
    assert host_row.state == "running" and host_row.labels["controlpanel.server-id"] == str(server.pk)


def test_a_stopped_server_shows_exited_and_its_rows_go_stale(running_server, alice, real_docker, settings):
    server = running_server
    settings.MONITOR_STALE_AFTER = timedelta(seconds=4)
    inner_client(server).containers.run(TEST_APP_IMAGE, ["sleep", "600"], name="sleeper", detach=True)
    monitor.run_cycle()
    assert set(rows(server)) == {"sleeper"}

    container = real_docker.containers.get(server.container_name)
    container.stop(timeout=1)  # behind the panel's back
    # Docker answers the stop before its container list (a copy it updates next) says so: the monitor reads that list.
    wait_until(lambda: real_docker.api.containers(all=True, filters={"id": container.id})[0]["State"] == "exited",
               what="Docker's container list to show the stop")
    monitor.run_cycle()
    server.refresh_from_db()
    container.reload()
    assert server.observed_state == "exited" and server.state == "exited", container.attrs["State"]
    assert set(rows(server)) == {"sleeper"}, "rows stay until they are stale"
    time.sleep(4.2)
    run = monitor.run_cycle()
    assert rows(server) == {} and run.rows_pruned >= 1


def test_a_hanging_daemon_is_cut_off_and_the_others_are_still_read(running_server, alice, committed, settings):
    # A second server whose daemon socket is replaced by one that accepts and never answers.
    with committed():
        hung = services.server_create(owner=alice, name="hung")
    hung.refresh_from_db()
    inner_daemon_answers(hung)
    inner_client(running_server).containers.run(TEST_APP_IMAGE, ["sleep", "600"], name="alive", detach=True)
    monitor.run_cycle()
    ContainerSnapshot.objects.create(server=hung, docker_id="f" * 64, name="kept", digest="x")

    sock_path = hung.socket_dir / "docker.sock"
    sock_path.unlink()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    listener.listen(8)
    accepted = []
    threading.Thread(target=lambda: [accepted.append(listener.accept()) for _ in range(3)], daemon=True).start()

    settings.MONITOR_DAEMON_TIMEOUT = 1.0
    started = time.monotonic()
    run = monitor.run_cycle()
    elapsed = time.monotonic() - started
    listener.close()
    assert elapsed < 5
    assert run.daemons_failed == 1 and run.failures[0]["daemon"] == f"server {hung.pk}"
    assert "rows" not in run.failures[0]["error"].lower()
    assert set(rows(running_server)) == {"alive"}
    assert ContainerSnapshot.objects.filter(server=hung, name="kept").exists(), "a failing daemon's rows stay"
    hung.refresh_from_db()
    assert hung.state == "unreachable"


def test_a_huge_answer_is_cut_off(running_server, settings):
    inner = inner_client(running_server)
    inner.containers.run(TEST_APP_IMAGE, ["sleep", "600"], name="big", detach=True, labels={"blob": "x" * 20_000})
    settings.MONITOR_MAX_BODY_BYTES = 4096
    run = monitor.run_cycle()
    assert run.daemons_failed == 1 and "larger than 4096 bytes" in run.failures[0]["error"]
    settings.MONITOR_MAX_BODY_BYTES = 4 * 1024 * 1024
    VirtualServer.objects.filter(pk=running_server.pk).update(inner_next_poll_at=None)  # skip the back-off
    run = monitor.run_cycle()
    assert run.daemons_failed == 0
    assert len(rows(running_server)["big"].labels["blob"]) == 512


def test_a_panel_action_refreshes_the_server_at_once(running_server, alice, committed):
    server = running_server
    inner_client(server).containers.run(TEST_APP_IMAGE, ["sleep", "600"], name="survivor", detach=True, restart_policy={"Name": "always"})
    with committed():
        services.server_restart(actor=alice, server=server)
    # No cycle ran: the restart task itself re-read the inner daemon.
    assert "survivor" in rows(server)
    assert not MonitorRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_beat_fires_the_cycle_through_a_real_worker_and_redis(real_docker, tmp_path):
    if not settings.REDIS_URL or connection.vendor != "postgresql":
        pytest.fail("This test needs REDIS_URL and PostgreSQL: run it with .ci/test")
    import redis

    redis.Redis.from_url(settings.REDIS_URL).delete("celery")
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres:///{connection.settings_dict['NAME']}",
        "MONITOR_INTERVAL": "2",
        "SERVER_CONTAINER_PREFIX": settings.SERVER_CONTAINER_PREFIX,
        "PANEL_INSTANCE": TEST_INSTANCE,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "controlpanel", "worker", "--beat", "--pool", "solo",
         *IN_MEMORY_SCHEDULE, "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_until(lambda: MonitorRun.objects.count() >= 2, timeout=60, what="two monitor cycles from beat")
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    assert "hosting.tasks.monitor_cycle" in output, output
    run = MonitorRun.objects.first()
    assert run.daemons_polled >= 1 and run.daemons_failed == 0, run.failures
