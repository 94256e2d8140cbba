"""The real path: service → on_commit → Redis → a Celery worker process → Docker."""

import subprocess
import sys
import time

import pytest
import redis
from django.conf import settings

from hosting import services, tasks
from hosting.models import App, MonitorRun, VirtualServer

from .conftest import panel_env, ROOT, wait_until
from .test_walls_panel import APP, owner_shell

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


# Walls (#24): one tenant's work never holds up another's, nor the monitor ------------------

HUNG_PLUGIN = ("mkdir -p ~/.docker/cli-plugins && printf '#!/bin/sh\\nexec sleep 3600\\n' > ~/.docker/cli-plugins/docker-compose "
               "&& chmod +x ~/.docker/cli-plugins/docker-compose")


@pytest.fixture
def workers(real_docker):
    """The two workers of a deployment: lifecycles and the monitor; tenants' work, apart."""
    redis.Redis.from_url(settings.REDIS_URL).delete("celery", settings.TENANT_QUEUE)  # leftovers of earlier runs
    env = panel_env(settings, APP_CHECK_SECONDS=10, APP_RUN_SECONDS=10)
    started = [subprocess.Popen([sys.executable, "-m", "celery", "-A", "controlpanel", "worker", "--queues", queue, "--hostname",
                                 f"{queue}-test@%h", "--concurrency", "2", "--loglevel", "INFO"],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for queue in ("celery", settings.TENANT_QUEUE)]
    yield started
    for worker in started:
        worker.terminate()
    for worker in started:
        output, _ = worker.communicate(timeout=30)
        print(output[-4000:])  # shown when the test fails


def settled(server):
    server.refresh_from_db()
    return not server.operation and server


def test_two_hung_deploys_never_delay_another_users_stop_or_the_monitor(workers, alice, bob, make_server, real_docker):
    """The review's attack: a deploy hung by the tenant's own compose plugin held a
    worker; two held both, another user's stop waited 4 minutes and the monitor
    stopped. Here two hang at once (one server each) and neither holds anything up."""
    from controlpanel.celery import app as celery_app

    assert not celery_app.conf.task_always_eager
    hostile = [make_server(name=f"hostile {n}") for n in range(2)]
    victim = make_server(name="bob's", owner=bob)
    for server in (*hostile, victim):
        wait_until(lambda: settled(server), timeout=90, what=f"{server.name} to be made")
        assert server.state == "running", server.last_error
    apps = []
    for server in hostile:
        container = real_docker.containers.get(server.container_name)
        wait_until(lambda: owner_shell(container, "docker info >/dev/null").exit_code == 0, timeout=60, what="its daemon")
        assert owner_shell(container, HUNG_PLUGIN).exit_code == 0
        apps.append(services.app_create(actor=alice, server=server, name="hung", compose_file=APP))
    time.sleep(3)  # both deploys are now inside their hung plugins, each holding a tenant worker

    started = time.monotonic()
    services.server_stop(actor=bob, server=victim)
    wait_until(lambda: settled(victim), timeout=30, what="bob's stop")
    stop_seconds = time.monotonic() - started
    assert victim.state == "exited"
    runs = MonitorRun.objects.count()
    tasks.monitor_cycle.delay()
    wait_until(lambda: MonitorRun.objects.count() > runs, timeout=30, what="a monitor cycle")
    print(f"bob's stop took {stop_seconds:.1f} s beside two hung deploys")
    assert all(App.objects.get(pk=app.pk).is_busy for app in apps), "the hung deploys were still running meanwhile"

    # And the hung deploys end by their bound, failed, in words.
    for app in apps:
        app = wait_until(lambda: not App.objects.get(pk=app.pk).is_busy and App.objects.get(pk=app.pk), timeout=60, what="the bound")
        latest = app.deployments.first()
        assert latest.result == "failed" and "longer than" in latest.output, latest.output
