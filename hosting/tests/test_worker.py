"""The real path: service → on_commit → Redis → a Celery worker process → Docker."""

import subprocess
import sys

import pytest
import redis
from django.conf import settings

from hosting import services
from hosting.models import VirtualServer

from .conftest import panel_env, ROOT, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]


@pytest.fixture
def celery_worker(real_docker):
    redis.Redis.from_url(settings.REDIS_URL).delete("celery")  # leftovers of earlier runs
    env = panel_env(settings)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "controlpanel", "worker", "--pool", "solo", "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    yield worker
    if worker.poll() is None:
        worker.terminate()
    output, _ = worker.communicate(timeout=30)
    print(output)  # shown when the test fails
    assert "hosting.tasks.server_reconcile" in output


def test_a_real_worker_creates_and_stops_a_server(celery_worker, alice):
    from controlpanel.celery import app

    assert not app.conf.task_always_eager
    server = services.server_create(owner=alice, name="via worker")  # commits: the task goes to Redis

    def settled():
        server.refresh_from_db()
        return not server.operation and server

    wait_until(settled, timeout=60, what="the worker to create the server")
    assert server.state == "running", server.last_error

    services.server_stop(actor=alice, server=server)
    wait_until(settled, timeout=60, what="the worker to stop the server")
    assert server.state == "exited"
    assert VirtualServer.objects.get(pk=server.pk).desired_state == "stopped"


def test_a_worker_killed_in_the_middle_of_a_create_never_leaves_it_creating(celery_worker, alice, settings):
    """SIGKILL the worker while it creates; the periodic reconcile finishes the job."""
    import signal

    server = services.server_create(owner=alice, name="interrupted")
    # Kill as soon as the worker has started on it (the container appears), before it reports back.
    import docker as docker_sdk

    client = docker_sdk.from_env()
    # The name filter is a pattern ("-1" would match "-12"), and sparse: no inspect of what may be gone.
    wait_until(lambda: client.containers.list(all=True, sparse=True, filters={"name": f"^/{server.container_name}$"}), timeout=30,
               interval=0.02, what="the worker to start creating")
    celery_worker.send_signal(signal.SIGKILL)
    celery_worker.wait(10)
    server.refresh_from_db()
    if server.operation == "":
        pytest.fail("the worker finished before it could be killed: nothing was tested")

    settings.SERVER_OPERATION_TIMEOUT = 0  # the stuck operation is due at once
    from controlpanel.celery import app
    from hosting import tasks

    app.conf.task_always_eager = True
    try:
        assert tasks.servers_reconcile_stuck.apply().get() == [server.pk]
    finally:
        app.conf.task_always_eager = False
    server.refresh_from_db()
    assert server.operation == "" and server.state in ("running", "failed"), server.state
    assert server.state == "running", server.last_error
