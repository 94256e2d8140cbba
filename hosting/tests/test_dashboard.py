import pytest
from django.urls import reverse

from hosting.worker import monitor
from hosting import services
from hosting.models import VirtualServer

pytestmark = pytest.mark.django_db


def test_admin_dashboard_counts_come_from_observed_state(as_admin, alice, fake_docker, committed):
    alice.server_quota = 5
    alice.save()
    with committed():
        running = services.server_create(owner=alice, name="up")
    with committed():
        stopped = services.server_create(owner=alice, name="down")
    # Intent says running, but the host shows it exited: the dashboard believes the host.
    fake_docker.containers[stopped.container_name] = "exited"
    fake_docker.inner[str(running.socket_dir)] = [{"Id": "a" * 64, "Names": ["/x"], "State": "running"}]
    monitor.run_cycle()
    assert VirtualServer.objects.get(pk=stopped.pk).desired_state == "running"

    response = as_admin.get(reverse("hosting:admin_dashboard"))
    assert response.context["servers"] == {"total": 2, "running": 1, "containers": 1}
    page = response.content.decode()
    assert "1 / 2" in page and "20.10.24" in page and "24.0\xa0GB" in page
    assert "Registration code" in page and "Latest activity" in page

    live = as_admin.get(reverse("hosting:admin_dashboard_live"))
    assert live.status_code == 200 and b"1 / 2" in live.content and b"<html" not in live.content

    # Claims waiting for the admin are on the dashboard, a link to them.
    running.domains.create(name="a.example.org", status="approval")
    running.domains.create(name="b.example.org", status="dns")
    page = as_admin.get(reverse("hosting:admin_dashboard")).content.decode()
    assert "1</span><span class=\"stat-label\">domain waiting for your approval · 2 in all · 1 waiting for DNS" in page
    assert reverse("hosting:admin_domain_list") + "?pending=on" in page


def test_dashboard_says_when_the_monitor_is_late(as_admin, fake_docker, settings):
    run = monitor.run_cycle()
    type(run).objects.filter(pk=run.pk).update(started_at=run.started_at.replace(year=run.started_at.year - 1))
    assert "is the worker with beat running?" in as_admin.get(reverse("hosting:admin_dashboard")).content.decode()


def test_dashboards_are_for_their_audience(as_alice, client):
    assert as_alice.get(reverse("hosting:admin_dashboard")).status_code == 403
    assert as_alice.get(reverse("hosting:admin_dashboard_live")).status_code == 403
    assert client.get(reverse("hosting:admin_dashboard")).status_code == 302


def test_user_dashboard_shows_state_domains_and_containers(as_alice, alice, fake_docker, committed, django_assert_max_num_queries):
    with committed():
        server = services.server_create(owner=alice, name="mine")
    fake_docker.inner[str(server.socket_dir)] = [{"Id": f"{n:064x}", "Names": [f"/c{n}"], "State": "running"} for n in range(3)]
    monitor.run_cycle()  # which counts them as it lists them
    server.domains.create(name="mine.example.org")
    with django_assert_max_num_queries(8):
        response = as_alice.get(reverse("hosting:server_list"))
    [row] = response.context["servers"]
    assert (row.domain_count, row.container_count) == (1, 3)
    assert "Running" in response.content.decode()


def test_admin_pages_say_plainly_what_the_isolation_mode_exposes(as_admin, fake_docker, settings):
    host = as_admin.get(reverse("hosting:admin_host")).content.decode()
    assert "rootless" in host and "unprivileged uid on this host" in host
    assert "Isolation:" not in as_admin.get(reverse("hosting:admin_dashboard")).content.decode()
    settings.SERVER_ISOLATION = "capabilities"
    dashboard = as_admin.get(reverse("hosting:admin_dashboard")).content.decode()
    assert "Isolation: capabilities" in dashboard and "root on this host" in dashboard
