"""What runs inside a server, from the panel: container logs (through the real gateway),
container actions and compose apps (through the real worker code, run in-process),
in real virtual servers, with a real Caddy in front."""

import json
import time

import docker as docker_sdk
import pytest
from django.test import Client
from django.urls import reverse
from markupsafe import escape
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from accounts.models import ActivityLog
from hosting import services
from hosting.services import domains
from hosting.activity import Action
from hosting.benchmarks import inside
from hosting.models import App, AppDeployment, ContainerSnapshot

from .conftest import TEST_APP_IMAGE, inner_client, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker, pytest.mark.usefixtures("eager_tasks")]
ORIGIN = "http://testserver"
TICKER = "echo first-line; echo on-stderr >&2; i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.2; done"  # a container's log


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def refreshed(server):
    from hosting.worker import monitor

    server.refresh_from_db()
    monitor.refresh_server(server)
    return {c.name: c for c in ContainerSnapshot.objects.filter(server=server)}


def log_stream(gateway, container, cookie, tail=500):
    return connect(f"ws://127.0.0.1:{gateway.port}/ws/servers/{container.server_id}/containers/{container.pk}/logs/?tail={tail}",
                   additional_headers={"Cookie": f"sessionid={cookie}", "Origin": ORIGIN}, open_timeout=20,
                   ping_interval=None).__enter__()


def read_lines(ws, until, timeout=20):
    lines, deadline = [], time.monotonic() + timeout
    while not any(until in text for _, _, text in lines):
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message["type"] == "ended":
            return lines, message["reason"]
        lines += message["lines"]
    return lines, None


def test_a_containers_log_follows_it_stops_from_the_page_shows_its_last_lines_and_goes(gateway, running_server, alice, bob):
    server = running_server
    inside.inner_container_run(str(server.socket_dir), TEST_APP_IMAGE,
                               ["sh", "-c", TICKER], name="ticker")
    container = wait_until(lambda: refreshed(server).get("ticker"), what="the container listed")
    started = gateway()
    client = logged_in(alice)
    page = client.get(reverse("hosting:container_logs", args=[container.pk])).content.decode()
    assert f"/ws/servers/{server.pk}/containers/{container.pk}/logs/" in page

    # The last lines, told apart by stream and timestamped, then it follows.
    ws = log_stream(started, container, client.cookies["sessionid"].value)
    lines, _ = read_lines(ws, "tick-8")
    assert {text: stream for stream, _, text in lines if text in ("first-line", "on-stderr")} == {"first-line": "out", "on-stderr": "err"}
    assert all(len(time_) == 19 for _, time_, _ in lines)

    # Bob gets nothing of it: refused like a container that does not exist.
    for cookie in (logged_in(bob).cookies["sessionid"].value, None):
        with pytest.raises(InvalidStatus):
            connect(f"ws://127.0.0.1:{started.port}/ws/servers/{server.pk}/containers/{container.pk}/logs/",
                    additional_headers={"Origin": ORIGIN, **({"Cookie": f"sessionid={cookie}"} if cookie else {})}, open_timeout=20)
    assert logged_in(bob).get(reverse("hosting:container_logs", args=[container.pk])).status_code == 404

    # Stopped from the page: the stream ends, the page shows it exited, its log keeps its last lines.
    assert client.post(reverse("hosting:container_stop", args=[container.pk])).status_code == 302
    lines, ended = read_lines(ws, "never printed", timeout=30)
    assert ended and "ended" in ended
    stopped = refreshed(server)["ticker"]
    assert stopped.state == "exited" and not stopped.action and not stopped.action_error
    again = log_stream(started, stopped, client.cookies["sessionid"].value, tail=3)
    lines, ended = read_lines(again, "never printed")
    assert len(lines) == 3 and lines[-1][2].startswith("tick-") and ended
    assert ActivityLog.objects.filter(action=Action.CONTAINER_ACTION, message__startswith="Stop container").exists()

    # Removed, after the confirmation page.
    assert "Remove the container" in client.get(reverse("hosting:container_remove", args=[stopped.pk])).content.decode()
    client.post(reverse("hosting:container_remove", args=[stopped.pk]))
    assert "ticker" not in refreshed(server)


def test_a_failed_action_is_explained_on_the_page(running_server, alice):
    server = running_server
    inner_client(server).containers.create(TEST_APP_IMAGE, ["/no/such/program"], name="broken")
    container = wait_until(lambda: refreshed(server).get("broken"), what="the container listed")
    client = logged_in(alice)
    client.post(reverse("hosting:container_start", args=[container.pk]))
    container.refresh_from_db()
    assert not container.action and "refused" in container.action_error and "no such" in container.action_error.lower()
    assert str(escape(container.action_error)) in client.get(reverse("hosting:server_detail", args=[server.pk])).content.decode()
    assert ActivityLog.objects.filter(action=Action.CONTAINER_ACTION, message__contains="failed").exists()


TWO_SERVICES = f"""
services:
  web:
    image: {TEST_APP_IMAGE}
    command: ["sh", "-c", "echo 'version one' > /www/index.html && httpd -f -p 8080 -h /www"]
    ports: ["8081:8080"]
  worker:
    image: {TEST_APP_IMAGE}
    command: ["sleep", "3600"]
"""


def deployed(app):
    app.refresh_from_db()
    return not app.is_busy and app


def test_a_two_service_app_deploys_groups_is_served_redeploys_and_goes(running_server, alice, caddy):
    server = running_server
    client = logged_in(alice)
    response = client.post(reverse("hosting:app_new", args=[server.pk]), {"name": "blog", "compose_file": TWO_SERVICES})
    app = App.objects.get(name="blog")
    assert response.status_code == 302 and response.url == reverse("hosting:app_detail", args=[app.pk])
    wait_until(lambda: deployed(app), timeout=120, what="the deploy")
    latest = app.deployments.first()
    assert (app.status, latest.result) == ("running", "succeeded"), latest.output
    assert "Started" in latest.output or "Running" in latest.output
    rows = refreshed(server)
    assert {rows[name].project for name in rows} == {"blog"} and len(rows) == 2
    page = client.get(reverse("hosting:server_detail", args=[server.pk])).content.decode()
    assert f'App <a href="{reverse("hosting:app_detail", args=[app.pk])}">blog</a>' in page

    domains.domain_add(actor=alice, server=server, name="blog.example.org", port=8081, ssl=False)
    assert wait_until(lambda: "version one" in caddy.get("blog.example.org").text, what="the app through Caddy")

    client.post(reverse("hosting:app_deploy", args=[app.pk]), {"compose_file": TWO_SERVICES.replace("version one", "version two")})
    wait_until(lambda: deployed(app), timeout=120, what="the redeploy")
    assert app.status == "running" and "version two" in app.compose_file
    assert wait_until(lambda: "version two" in caddy.get("blog.example.org").text, what="the new version through Caddy")
    assert app.deployments.count() == 2

    # The server stopped, then started: the app comes back by itself, its containers say so on both pages.
    services.server_stop(actor=alice, server=server)
    server.refresh_from_db()
    assert server.state == "exited"
    # Its daemon stopped its containers and exited, given the time they needed (10 s: they ignore SIGTERM);
    # killed, it would leave them "Exited (255)".
    assert docker_sdk.from_env().containers.get(server.container_name).attrs["State"]["ExitCode"] == 0
    assert "Server not running" in client.get(reverse("hosting:app_detail", args=[app.pk])).content.decode()
    services.server_start(actor=alice, server=server)
    server.refresh_from_db()
    assert server.state == "running", server.last_error
    wait_until(lambda: deployed(app), timeout=120, what="the app's start with its server")
    started = app.deployments.first()
    assert (started.action, started.actor, started.result) == ("start", None, "succeeded"), started.output
    rows = refreshed(server)
    assert all(c.is_running for c in rows.values()) and len(rows) == 2, {c.name: c.status for c in rows.values()}
    for page in (reverse("hosting:app_detail", args=[app.pk]), reverse("hosting:server_detail", args=[server.pk])):
        assert "Running (2 of 2)" in client.get(page).content.decode(), page
    assert wait_until(lambda: "version two" in caddy.get("blog.example.org").text, what="the site again after the restart")
    # Stopped by its owner, it stays stopped when its server starts, and offers Start.
    client.post(reverse("hosting:app_stop", args=[app.pk]))
    wait_until(lambda: deployed(app), timeout=60, what="the app's stop")
    services.server_restart(actor=alice, server=server)
    assert app.deployments.first().action == "stop" and App.objects.get(pk=app.pk).status == "stopped"
    page = client.get(reverse("hosting:app_detail", args=[app.pk])).content.decode()
    assert reverse("hosting:app_start", args=[app.pk]) in page and reverse("hosting:app_stop", args=[app.pk]) not in page
    client.post(reverse("hosting:app_start", args=[app.pk]))
    wait_until(lambda: deployed(app), timeout=120, what="the app's start")
    assert app.status == "running" and all(c.is_running for c in refreshed(server).values())

    response = client.post(reverse("hosting:app_remove", args=[app.pk]))
    assert response.url == reverse("hosting:server_detail", args=[server.pk])  # the app's page is about to go
    wait_until(lambda: not App.objects.filter(pk=app.pk).exists(), timeout=60,
               what=f"the removal ({AppDeployment.objects.filter(app_id=app.pk).values_list('output', flat=True).first()!r})")
    assert not refreshed(server)
    assert ActivityLog.objects.filter(action=Action.APP_REMOVED).exists()


def test_bad_compose_input_is_a_clear_message_and_loses_nothing(running_server, alice):
    server = running_server
    client = logged_in(alice)
    for text, message in [("services: [unclosed", "not YAML"), ("x" * (65 * 1024), "at most 64 KiB"), ("just: text", "services")]:
        response = client.post(reverse("hosting:app_new", args=[server.pk]), {"name": "bad", "compose_file": text})
        assert response.status_code == 400 and message in response.content.decode(), message
    assert not App.objects.exists()

    client.post(reverse("hosting:app_new", args=[server.pk]), {"name": "good", "compose_file": TWO_SERVICES})
    app = App.objects.get()
    wait_until(lambda: deployed(app), timeout=120, what="the deploy")
    # A key compose itself refuses: nothing is deployed, the running app and its file stay.
    client.post(reverse("hosting:app_deploy", args=[app.pk]), {"compose_file": TWO_SERVICES.replace("command:", "comand:", 1)})
    wait_until(lambda: deployed(app), timeout=60, what="compose's check")
    failed = app.deployments.first()
    assert failed.result == "failed" and "comand" in failed.output and "nothing was deployed" in failed.output
    assert app.status == "running" and app.compose_file.strip() == TWO_SERVICES.strip()
    assert len(refreshed(server)) == 2 and all(c.is_running for c in refreshed(server).values())
    edit = client.get(reverse("hosting:app_detail", args=[app.pk])).content.decode()
    assert "comand:" in edit, "the file that failed is what the form shows, to fix"


def test_another_users_apps_and_containers_are_404(running_server, alice, bob):
    app = services.app_create(actor=alice, server=running_server, name="mine", compose_file=TWO_SERVICES)
    wait_until(lambda: deployed(app), timeout=120, what="the deploy")
    container = next(iter(refreshed(running_server).values()))
    as_bob = logged_in(bob)
    for name, target in [("app_detail", app), ("app_live", app), ("app_remove", app), ("container_logs", container), ("container_remove", container)]:
        assert as_bob.get(reverse(f"hosting:{name}", args=[target.pk])).status_code == 404, name
    for name, target in [("app_deploy", app), ("app_stop", app), ("app_remove", app), ("container_stop", container), ("container_remove", container)]:
        assert as_bob.post(reverse(f"hosting:{name}", args=[target.pk]), {"compose_file": "services: {x: {image: y}}"}).status_code == 404, name
    app.refresh_from_db()
    assert app.status == "running" and AppDeployment.objects.count() == 1


def test_log_streams_end_on_logout_and_disable_and_count_in_the_users_limit(gateway, running_server, alice, admin):
    """The review's log WebSockets kept streaming after a disable and a logout, and 150
    opened against no limit: they are sessions of the gateway like terminals now."""
    from accounts import services as account_services

    server = running_server
    inside.inner_container_run(str(server.socket_dir), TEST_APP_IMAGE,
                               ["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.2; done"], name="ticker")
    container = wait_until(lambda: refreshed(server).get("ticker"), what="the container listed")
    started = gateway(SESSIONS_PER_USER=3)

    client = logged_in(alice)
    ws = log_stream(started, container, client.cookies["sessionid"].value)
    read_lines(ws, "tick-2")
    client.post(reverse("accounts:logout"))
    _, ended = read_lines(ws, "never printed", timeout=15)
    assert ended and "logged out" in ended

    client = logged_in(alice)
    streams = [log_stream(started, container, client.cookies["sessionid"].value) for _ in range(3)]
    for stream in streams:
        read_lines(stream, "tick-")
    fourth = log_stream(started, container, client.cookies["sessionid"].value)
    _, refused = read_lines(fourth, "never printed", timeout=15)
    assert refused and "most allowed" in refused

    account_services.user_update(actor=admin, user=alice, email=alice.email, is_admin=False, is_active=False)
    for stream in streams:
        _, ended = read_lines(stream, "never printed", timeout=15)
        assert ended and "disabled" in ended


def image_load(gateway, server, cookie, archive, piece=256 * 1024):
    """The images page's upload, as images.js sends it: pieces, each once the last is taken, then the end. What was said."""
    said = []
    with connect(f"ws://127.0.0.1:{gateway.port}/ws/servers/{server.pk}/images/load/",
                 additional_headers={"Cookie": f"sessionid={cookie}", "Origin": ORIGIN}, open_timeout=20, ping_interval=None) as ws:
        for start in range(0, len(archive), piece):
            ws.send(archive[start:start + piece])
            while (message := json.loads(ws.recv(timeout=30)))["type"] != "received":
                said.append(message)
                if message["type"] == "done":
                    return said
        ws.send(json.dumps({"type": "end"}))
        while (message := json.loads(ws.recv(timeout=60)))["type"] != "done":
            said.append(message)
        return said + [message]


def test_an_image_is_loaded_from_an_archive_listed_and_removed(gateway, running_server, alice):
    """For an installation with no registry in reach: `docker save`'s archive, through the gateway, into the server."""
    from hosting.worker import workloads

    server, client = running_server, logged_in(alice)
    archive = b"".join(docker_sdk.from_env().images.get(TEST_APP_IMAGE).save(named=True))
    cookie = client.cookies["sessionid"].value
    said = image_load(gateway(IMAGE_LOAD_MAX_MB=1), server, cookie, archive)  # larger than that: cut off, in words
    assert said[-1]["type"] == "done" and not said[-1]["ok"] and "larger than 1 MB" in said[-1]["reason"]
    said = image_load(gateway(), server, cookie, archive)
    assert said[-1] == {"type": "done", "ok": True, "reason": f"Loaded {TEST_APP_IMAGE}."}, said
    assert ActivityLog.objects.filter(action=Action.IMAGE_LOADED, message__contains=TEST_APP_IMAGE).exists()
    workloads.images_refresh(server_id=server.pk)
    image = server.images.get(tags__contains=[TEST_APP_IMAGE])
    page = client.get(reverse("hosting:server_images", args=[server.pk])).content.decode()
    assert TEST_APP_IMAGE in page and image.short_id in page
    # Used by a container: refused, in words; then no longer used, removed.
    docker_id = inside.inner_container_run(str(server.socket_dir), TEST_APP_IMAGE, ["sleep", "600"], name="user")
    client.post(reverse("hosting:image_remove", args=[image.pk]))
    image.refresh_from_db()
    assert not image.action and "running container" in image.action_error, image.action_error
    inner_client(server).containers.get(docker_id).remove(force=True)
    client.post(reverse("hosting:image_remove", args=[image.pk]))
    assert not server.images.filter(tags__contains=[TEST_APP_IMAGE]).exists()
