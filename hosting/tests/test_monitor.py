"""The poll cycle's bookkeeping, with daemons faked at the hosting.backends.docker boundary."""

import re
import threading
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from controlpanel.testing import run_in_threads
from hosting.backends import docker
from hosting.worker import monitor
from hosting import services
from hosting.models import ContainerSnapshot, MonitorRun, VirtualServer

pytestmark = pytest.mark.django_db


def entry(n, state="running", **extra):
    return {"Id": f"{n:064x}", "Names": [f"/app{n}"], "Image": "busybox", "Command": "sleep 1", "Created": 1_700_000_000,
            "State": state, "Status": "Up 1 minute", "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
            "Labels": {"app": str(n)}, "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
            "Mounts": [{"Source": "/data", "Destination": "/data"}], **extra}


def inner_url(server):
    return str(server.socket_dir)


def test_cycle_writes_host_and_inner_snapshots(server, fake_docker):
    fake_docker.inner[inner_url(server)] = [entry(1), entry(2, state="exited")]
    run = monitor.run_cycle()
    assert run.daemons_polled == 2 and run.daemons_failed == 0
    rows = {r.name: r for r in ContainerSnapshot.objects.filter(server=server)}
    assert set(rows) == {"app1", "app2"}
    assert rows["app1"].ports == ["0.0.0.0:8080→80/tcp"] and rows["app2"].state == "exited"
    assert rows["app1"].labels == {"app": "1"} and rows["app1"].networks == {"bridge": "172.17.0.2"}
    assert rows["app1"].mounts == ["/data:/data"] and rows["app1"].created.year == 2023
    host = ContainerSnapshot.objects.get(server__isnull=True)
    assert host.name == server.container_name
    server.refresh_from_db()
    assert server.observed_state == "running" and server.inner_seen_at and server.observed_at


def test_changes_vanished_and_unchanged_rows(server, fake_docker):
    url = inner_url(server)
    fake_docker.inner[url] = [entry(1), entry(2)]
    monitor.run_cycle()
    first = ContainerSnapshot.objects.get(name="app1").last_changed
    fake_docker.inner[url] = [entry(1, state="exited", Status="Exited (0)")]
    run = monitor.run_cycle()
    row = ContainerSnapshot.objects.get(server=server)
    assert row.name == "app1" and row.state == "exited" and row.last_changed > first
    assert run.rows_written == 1
    # Unchanged: not one row is written again, while the daemon's last read moves on.
    seen = VirtualServer.objects.get(pk=server.pk).inner_seen_at
    assert monitor.run_cycle().rows_written == 0
    assert ContainerSnapshot.objects.get(server=server).last_changed == row.last_changed
    assert VirtualServer.objects.get(pk=server.pk).inner_seen_at > seen


@pytest.mark.parametrize("status, seconds, around", [
    ("Up Less than a second", 0, ("Up ", "")),
    ("Up 25 seconds (healthy)", 25, ("Up ", " (healthy)")),
    ("Up About a minute", 60, ("Up ", "")),
    ("Exited (137) About an hour ago", 3600, ("Exited (137) ", " ago")),
    ("Restarting (1) 3 days ago", 3 * 86400, ("Restarting (1) ", " ago")),
    ("Created", None, None),
    ("Up forever, promise", None, None),  # from inside a server: anything
])
def test_a_containers_state_began_when_its_status_text_says(server, fake_docker, as_alice, status, seconds, around):
    fake_docker.inner[inner_url(server)] = [entry(1, Status=status)]
    before = timezone.now()
    monitor.run_cycle()
    row = ContainerSnapshot.objects.get(server=server)
    assert row.status_around_age == around
    if seconds is None:
        assert row.state_since is None
    else:
        assert before - timedelta(seconds=seconds + 1) <= row.state_since <= timezone.now() - timedelta(seconds=seconds)
    # The page shows the age as a <time> it counts on from there, Docker's own words around it.
    page = as_alice.get(reverse("hosting:server_detail", args=[server.pk])).content.decode()
    if around:
        shown = re.search(f'{re.escape(around[0])}<time class="age" datetime="{re.escape(row.state_since.isoformat())}" data-seconds="(\\d+)">', page)
        assert shown and seconds <= int(shown[1]) <= seconds + 5, page
    else:
        assert f">{status}</td>" in page and '<time class="age"' not in page


def test_an_unchanged_cycle_reads_and_writes_no_snapshot_row(server, fake_docker):
    fake_docker.inner[inner_url(server)] = [entry(n) for n in range(20)]
    monitor.run_cycle()
    with CaptureQueriesContext(connection) as context:
        run = monitor.run_cycle()
    touching = [q["sql"] for q in context.captured_queries if "hosting_containersnapshot" in q["sql"]
                and not q["sql"].startswith("DELETE")]  # the prune, which finds nothing
    assert run.rows_written == 0 and run.rows_pruned == 0 and touching == []
    assert ContainerSnapshot.objects.filter(server=server).count() == 20


def test_unchanged_cycle_costs_constant_queries_not_one_per_container(alice, fake_docker, committed):
    def queries_for(count):
        with committed():
            server = services.server_create(owner=alice, name=f"n{count}")
        fake_docker.inner[inner_url(server)] = [entry(n) for n in range(count)]
        monitor.run_cycle()  # first cycle inserts
        with CaptureQueriesContext(connection) as context:
            run = monitor.run_cycle()
        VirtualServer.objects.filter(pk=server.pk).update(deleted_at=timezone.now())
        assert run.rows_written == 0
        return len(context.captured_queries)

    alice.server_quota = 10
    alice.save()
    assert queries_for(5) == queries_for(300)


def test_server_state_comes_from_the_host_view(server, fake_docker):
    fake_docker.containers[server.container_name] = "exited"
    monitor.run_cycle()
    server.refresh_from_db()
    assert server.observed_state == "exited" and server.state == "exited"
    del fake_docker.containers[server.container_name]
    monitor.run_cycle()
    server.refresh_from_db()
    assert server.observed_state == "missing"


def test_failing_daemon_keeps_its_rows_and_backs_off(server, fake_docker, alice, committed, monkeypatch):
    url = inner_url(server)
    fake_docker.inner[url] = [entry(1)]
    monitor.run_cycle()
    original = fake_docker.inner_containers_json

    def broken(socket_dir, **kwargs):
        if socket_dir == url:
            raise docker.DockerError("The daemon took longer than 5s to list its containers.")
        return original(socket_dir, **kwargs)

    monkeypatch.setattr(docker, "inner_containers_json", broken)
    run = monitor.run_cycle()
    assert run.daemons_failed == 1 and "longer than 5s" in run.failures[0]["error"]
    assert ContainerSnapshot.objects.filter(server=server).count() == 1
    server.refresh_from_db()
    assert server.state == "unreachable" and server.inner_failures == 1
    # Backed off: the next cycle does not ask that daemon again.
    assert monitor.run_cycle().daemons_polled == 1
    VirtualServer.objects.filter(pk=server.pk).update(inner_next_poll_at=timezone.now() - timedelta(seconds=1))
    assert monitor.run_cycle().daemons_polled == 2
    server.refresh_from_db()
    assert server.inner_failures == 2
    assert server.inner_next_poll_at - timezone.now() > timedelta(seconds=100)


def test_host_daemon_down_records_a_failed_cycle(server, fake_docker):
    fake_docker.fail_with = "The Docker engine is not reachable."
    run = monitor.run_cycle()
    assert run.daemons_failed == 1 and run.failures[0]["daemon"] == "host"
    server.refresh_from_db()
    assert server.observed_state == "running"  # unchanged: nothing was learnt


def test_stale_rows_are_pruned(server, fake_docker, settings):
    fake_docker.inner[inner_url(server)] = [entry(1)]
    monitor.run_cycle()
    VirtualServer.objects.update(inner_seen_at=timezone.now() - timedelta(minutes=10))
    fake_docker.containers[server.container_name] = "exited"  # not polled inside any more
    run = monitor.run_cycle()
    assert run.rows_pruned == 1
    assert not ContainerSnapshot.objects.filter(server=server).exists()
    # When it answers again, its rows are written again (its digest went with them).
    fake_docker.containers[server.container_name] = "running"
    assert monitor.run_cycle().rows_written == 2  # its row, and the host's row of it (running again)
    assert ContainerSnapshot.objects.filter(server=server).count() == 1


def test_a_deleted_servers_rows_go(server, fake_docker):
    fake_docker.inner[inner_url(server)] = [entry(1)]
    monitor.run_cycle()
    VirtualServer.objects.filter(pk=server.pk).update(deleted_at=timezone.now())
    assert monitor.run_cycle().rows_pruned == 1
    assert not ContainerSnapshot.objects.filter(server=server).exists()


def test_a_held_lock_makes_a_cycle_skip(fake_docker):
    cache.add(monitor.LOCK_KEY, "someone else", timeout=60)
    try:
        assert monitor.run_cycle() is None
        assert not MonitorRun.objects.exists()
    finally:
        cache.delete(monitor.LOCK_KEY)
    assert monitor.run_cycle() is not None
    assert cache.get(monitor.LOCK_KEY) is None


@pytest.mark.django_db(transaction=True)
def test_two_cycles_started_together_one_runs_one_skips(fake_docker, monkeypatch, settings):
    if not settings.REDIS_URL:
        # The file cache of a local run has no atomic add; production's Redis does, as does this.
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    original = fake_docker.host_containers_json
    gate = threading.Event()

    def slow(engine, **kwargs):
        gate.wait(5)
        return original(engine, **kwargs)

    monkeypatch.setattr(docker, "host_containers_json", slow)
    results = []

    threading.Timer(0.5, gate.set).start()  # both cycles are under way before either reads a daemon
    run_in_threads(lambda _: results.append(monitor.run_cycle()), range(2), timeout=10)
    assert sorted(r is None for r in results) == [False, True]
    assert MonitorRun.objects.count() == 1


def test_hostile_data_is_bounded_and_escaped(server, fake_docker, as_alice):
    hostile = entry(
        7,
        Names=["/<script>alert('name')</script>"],
        Image="<img src=x onerror=alert(1)>" * 100,
        Labels={f"k{n}": "<b>" + "v" * 10_000 for n in range(500)},
        Ports=[{"PrivatePort": "<i>80</i>", "Type": "tcp"}] * 1000,
        Mounts="not a list",
        NetworkSettings=["wrong", "shape"],
        Created="yesterday",
    )
    fake_docker.inner[inner_url(server)] = [hostile, "not a dict", {"Id": "../../etc"}, {"Id": 5}]
    monitor.run_cycle()
    row = ContainerSnapshot.objects.get(server=server)
    assert len(row.image) == 512 and len(row.labels) == 64
    assert all(len(v) <= 512 for v in row.labels.values())
    assert len(row.ports) == 50 and row.mounts == [] and row.networks == {} and row.created is None
    page = as_alice.get(reverse("hosting:server_detail", args=[server.pk])).content.decode()
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>v" not in page and "<i>80" not in page
    assert "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;" in page


def test_orphans_are_shown_to_admins_and_left_alone(server, fake_docker, as_admin, settings):
    orphan = f"{settings.SERVER_CONTAINER_PREFIX}999999"
    fake_docker.containers[orphan] = "running"
    monitor.run_cycle()
    page = as_admin.get(reverse("hosting:admin_host")).content.decode()
    assert "Orphans" in page and orphan in page
    assert [o.name for o in services.orphan_containers()] == [orphan]
    assert fake_docker.containers[orphan] == "running"
    assert not VirtualServer.objects.filter(pk=999999).exists()


def test_monitor_status_panel(as_admin, fake_docker, server):
    page = as_admin.get(reverse("hosting:admin_host")).content.decode()
    assert "No poll cycle has run yet" in page
    monitor.run_cycle()
    panel = as_admin.get(reverse("hosting:admin_monitor_status"))
    text = panel.content.decode()
    assert "Daemons polled" in text and "Next run" in text and "<html" not in text


def test_live_partials_read_the_database_only(as_alice, server, fake_docker, monkeypatch, django_assert_max_num_queries):
    monkeypatch.setattr(docker, "host_containers_json", lambda *a, **k: pytest.fail("a page called Docker"))
    monkeypatch.setattr(docker, "inner_containers_json", lambda *a, **k: pytest.fail("a page called Docker"))
    monkeypatch.setattr(docker, "container_info", lambda *a, **k: pytest.fail("a page called Docker"))
    response = as_alice.get(reverse("hosting:server_live", args=[server.pk]))
    assert response.status_code == 200 and b'data-live-url' in response.content and b"<html" not in response.content
    assert as_alice.get(reverse("hosting:server_list_live")).status_code == 200
    assert as_alice.get(reverse("hosting:server_detail", args=[server.pk])).status_code == 200


def test_live_partials_are_private(as_bob, server, client):
    assert as_bob.get(reverse("hosting:server_live", args=[server.pk])).status_code == 404
    assert client.get(reverse("hosting:server_live", args=[server.pk])).status_code == 302


def test_admin_monitor_pages_are_admin_only(as_alice):
    assert as_alice.get(reverse("hosting:admin_host")).status_code == 403
    assert as_alice.get(reverse("hosting:admin_monitor_status")).status_code == 403


def test_beat_schedule_runs_the_cycle_every_interval(settings):
    entry_ = settings.CELERY_BEAT_SCHEDULE["monitor-cycle"]
    assert entry_["task"] == "hosting.tasks.monitor_cycle"
    assert entry_["schedule"] == timedelta(seconds=settings.MONITOR_INTERVAL)
    assert entry_["options"]["expires"] == settings.MONITOR_INTERVAL


def test_containers_are_paginated(as_alice, server, fake_docker):
    fake_docker.inner[inner_url(server)] = [entry(n) for n in range(120)]
    monitor.run_cycle()
    url = reverse("hosting:server_detail", args=[server.pk])
    first = as_alice.get(url)
    assert len(first.context["containers"]) == 50 and "Page 1 of 3" in first.content.decode()
    third = as_alice.get(reverse("hosting:server_live", args=[server.pk]), {"cpage": 3})
    assert len(third.context["containers"]) == 20 and "?cpage=3" in third.content.decode()


def test_the_hosts_list_is_read_whole_past_the_inner_daemons_cap(server, fake_docker, settings):
    # With more servers than MONITOR_MAX_CONTAINERS, the last ones were "missing".
    settings.MONITOR_MAX_CONTAINERS = 2
    ours = fake_docker.containers.pop(server.container_name)
    for n in range(5):
        fake_docker.containers[f"someone-else-{n}"] = "running"  # listed before ours
    fake_docker.containers[server.container_name] = ours
    fake_docker.inner[inner_url(server)] = [entry(n) for n in range(5)]
    monitor.run_cycle()
    server.refresh_from_db()
    assert server.observed_state == "running"
    assert ContainerSnapshot.objects.filter(server__isnull=True).count() == 6
    assert ContainerSnapshot.objects.filter(server=server).count() == 2  # a tenant's list stays bounded
