"""Faults: Redis goes away for a minute in the middle of the monitor's life."""

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from hosting.models import ContainerSnapshot, MonitorRun

from .conftest import IN_MEMORY_SCHEDULE, ROOT, TEST_INSTANCE, free_port, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker, pytest.mark.services]
OUTAGE_SECONDS = int(os.environ.get("FAULT_OUTAGE_SECONDS", "60"))


def start_redis(port, workdir):
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG",
               timeout=10, what="redis")
    return process


def test_redis_down_for_a_minute_loses_nothing_and_the_monitor_recovers(real_docker, tmp_path):
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL shared with the worker: run it with .ci/test")
    # Something on the host daemon for the monitor to record (removed by the fixture).
    real_docker.containers.run("controlpanel/testapp:local", ["sleep", "600"], detach=True,
                               labels={"controlpanel.instance": TEST_INSTANCE})
    port = free_port()
    redis = start_redis(port, tmp_path)
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres:///{connection.settings_dict['NAME']}",
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "MONITOR_INTERVAL": "5",
        "PANEL_INSTANCE": TEST_INSTANCE,
        "SERVER_CONTAINER_PREFIX": settings.SERVER_CONTAINER_PREFIX,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "controlpanel", "worker", "--beat", "--pool", "solo",
         *IN_MEMORY_SCHEDULE, "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_until(lambda: MonitorRun.objects.count() >= 2, timeout=60, what="two cycles before the outage")
        rows_before = set(ContainerSnapshot.objects.values_list("docker_id", flat=True))
        assert rows_before, "the host daemon's containers should be recorded"

        redis.kill()  # Redis gone, mid-life
        redis.wait()
        outage_started = timezone.now()
        time.sleep(OUTAGE_SECONDS)
        assert set(ContainerSnapshot.objects.values_list("docker_id", flat=True)) >= rows_before, "rows were lost"

        redis = start_redis(port, tmp_path)
        back = timezone.now()
        wait_until(lambda: MonitorRun.objects.filter(started_at__gt=back).exists(), timeout=120,
                   what="a successful cycle after Redis came back")
        first = MonitorRun.objects.filter(started_at__gt=back).order_by("started_at").first()
        assert (first.started_at - back).total_seconds() <= 120
        assert first.daemons_failed == 0
        time.sleep(15)
        after = MonitorRun.objects.filter(started_at__gt=back).count()
        assert after <= 15 / 5 + 2, f"{after} cycles in 15 s: queued cycles piled up"
        assert not MonitorRun.objects.filter(started_at__gt=outage_started, started_at__lt=back).exists()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        redis.kill()
