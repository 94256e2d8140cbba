"""Apps and container actions on the request side (Docker faked: the worker's part is
test_workloads.py, against real servers)."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from hosting import services
from hosting.models import App, AppDeployment, ContainerSnapshot, ImageSnapshot, VirtualServer

pytestmark = pytest.mark.django_db
GOOD = "services:\n  web:\n    image: nginx\n"


@pytest.mark.parametrize("text, code", [
    ("services: [", "not_yaml"), ("\t- nope: :", "not_yaml"), ("x" * (64 * 1024 + 1), "too_big"),
    ("just: text", "no_services"), ("services: {}", "no_services"), ("- a\n- list", "no_services"), ("", "no_services"),
    ("services: " + "[" * 5000 + "]" * 5000, "too_deep"), ("services: " + "{a: " * 4000 + "}" * 4000, "too_deep"),
])
def test_compose_files_that_cannot_be_deployed_say_why(text, code):
    with pytest.raises(ValidationError) as refused:
        services.compose_file_check(text)
    assert refused.value.code == code


def test_a_new_app_waits_for_the_worker_and_a_busy_one_takes_no_second_order(server, alice):
    app = services.app_create(actor=alice, server=server, name="blog", compose_file=GOOD)  # its task runs after the commit: not here
    assert app.status == App.Status.NEW and App.objects.get().status == App.Status.DEPLOYING
    assert AppDeployment.objects.get().compose_file == GOOD
    for change in (services.app_stop, services.app_remove):
        with pytest.raises(ValidationError, match="busy"):
            change(actor=alice, app=app)
    with pytest.raises(ValidationError, match="already has an app"):
        services.app_create(actor=alice, server=server, name="blog", compose_file=GOOD)


def test_the_app_form_takes_a_file_or_text_and_refuses_bad_names(as_alice, server):
    from django.core.files.uploadedfile import SimpleUploadedFile

    new = reverse("hosting:app_new", args=[server.pk])
    assert "lowercase letters" in as_alice.post(new, {"name": "Bad Name", "compose_file": GOOD}).content.decode()
    assert "not text" in as_alice.post(new, {"name": "bin", "upload": SimpleUploadedFile("c.yaml", b"\xff\xfe\x00")}).content.decode()
    assert as_alice.post(new, {"name": "up", "upload": SimpleUploadedFile("c.yaml", GOOD.encode())}).status_code == 302
    assert App.objects.get().name == "up"


def test_container_actions_need_an_idle_container_and_a_running_server(server, alice):
    container = ContainerSnapshot.objects.create(server=server, docker_id="b" * 64, name="web", state="running", digest="x")
    services.container_act(actor=alice, server=server, container=container, action="stop")  # waits for the worker
    with pytest.raises(ValidationError, match="busy"):
        services.container_act(actor=alice, server=server, container=container, action="start")
    ContainerSnapshot.objects.filter(pk=container.pk).update(action="")
    type(server).objects.filter(pk=server.pk).update(observed_state="exited")
    server.refresh_from_db()
    with pytest.raises(ValidationError, match="stopped"):
        services.container_act(actor=alice, server=server, container=container, action="start")


@pytest.mark.parametrize("status, states, running, shown", [
    (App.Status.RUNNING, {"running": 2}, True, ("running", "Running (2 of 2)")),
    (App.Status.RUNNING, {"running": 1}, True, ("running", "Running")),
    (App.Status.RUNNING, {"running": 1, "exited": 1}, True, ("partial", "1 of 2 running")),
    (App.Status.RUNNING, {"exited": 2}, True, ("exited", "Exited")),
    (App.Status.RUNNING, {"running": 1, "restarting": 1}, True, ("restarting", "Restarting (1 of 2 running)")),
    (App.Status.RUNNING, {}, True, ("failed", "No containers")),
    (App.Status.RUNNING, {"running": 2}, False, ("exited", "Server not running")),
    (App.Status.STOPPED, {"exited": 2}, True, ("stopped", "Stopped")),
    (App.Status.DEPLOYING, {}, True, ("busy", "Deploying")),
])
def test_a_deployed_apps_state_is_read_from_its_containers(status, states, running, shown):
    assert App(name="blog", status=status).health(states, server_running=running) == shown


def _snapshot(server, n, project, state):
    return ContainerSnapshot.objects.create(server=server, docker_id=f"{n:064x}", name=f"c{n}", state=state, digest="x",
                                            labels={ContainerSnapshot.COMPOSE_PROJECT: project} if project else {})


def test_both_pages_say_how_an_app_is_and_a_stopped_one_offers_start(server, as_alice):
    VirtualServer.objects.filter(pk=server.pk).update(observed_state=VirtualServer.ObservedState.RUNNING)
    blog = App.objects.create(server=server, name="blog", status=App.Status.RUNNING, compose_file=GOOD)
    shop = App.objects.create(server=server, name="shop", status=App.Status.STOPPED, compose_file=GOOD)
    for n, (project, state) in enumerate([("blog", "running"), ("blog", "exited"), ("shop", "exited"), ("", "running")]):
        _snapshot(server, n, project, state)
    page = as_alice.get(reverse("hosting:server_detail", args=[server.pk])).content.decode()
    assert '<span class="state state-partial">1 of 2 running</span>' in page and '<span class="state state-stopped">Stopped</span>' in page
    blogs = as_alice.get(reverse("hosting:app_detail", args=[blog.pk])).content.decode()
    assert "1 of 2 running" in blogs and reverse("hosting:app_start", args=[blog.pk]) in blogs  # its exited one may be started
    shops = as_alice.get(reverse("hosting:app_detail", args=[shop.pk])).content.decode()
    assert reverse("hosting:app_start", args=[shop.pk]) in shops and reverse("hosting:app_stop", args=[shop.pk]) not in shops
    assert as_alice.post(reverse("hosting:app_start", args=[shop.pk])).status_code == 302
    assert (App.objects.get(pk=shop.pk).status, shop.deployments.get().action) == (App.Status.STARTING, AppDeployment.Action.START)


def test_a_server_that_starts_by_itself_starts_its_deployed_apps(server, fake_docker, monkeypatch):
    """Its machine came back (or a restart policy): the monitor sees its container's new start; the apps deployed
    and not stopped get a start each, on its node's tenants' queue. Seen again, nothing more happens."""
    from hosting import tasks
    from hosting.worker import monitor

    sent = []
    monkeypatch.setattr(tasks, "on_node", lambda task, node, *args, tenant=False: sent.append((task.name, args, tenant)))
    up = App.objects.create(server=server, name="blog", status=App.Status.RUNNING, compose_file=GOOD)
    App.objects.create(server=server, name="paused", status=App.Status.STOPPED, compose_file=GOOD)
    monitor.run_cycle()
    assert not sent  # its start by the worker was already known
    fake_docker.started_at[server.container_name] = "after the reboot"
    tasks.monitor_cycle()
    start = up.deployments.get()
    assert sent == [("hosting.tasks.app_run", (start.pk,), True)] and start.action == AppDeployment.Action.START and start.actor is None
    assert App.objects.get(pk=up.pk).status == App.Status.STARTING
    tasks.monitor_cycle()
    assert len(sent) == 1


def _image(n, *tags, **extra):
    return {"Id": f"sha256:{n:064x}", "RepoTags": list(tags), "Size": 5 * 2**20, "Created": 1_700_000_000, **extra}


def test_a_servers_images_are_listed_bounded_and_escaped_and_one_is_removed(server, fake_docker, as_alice, as_bob):
    from hosting.worker import workloads

    VirtualServer.objects.filter(pk=server.pk).update(observed_state=VirtualServer.ObservedState.RUNNING)
    fake_docker.images[str(server.socket_dir)] = [
        _image(1, "web:1", "web:latest"), _image(2, "<script>alert(1)</script>:x"), _image(3, "<none>:<none>"),
        {"Id": "../../etc", "RepoTags": ["bad"]}, "not even a mapping"]
    page = as_alice.get(reverse("hosting:server_images", args=[server.pk])).content.decode()
    assert "Listing them" in page
    workloads.images_refresh(server_id=server.pk)  # the task the page asked for
    page = as_alice.get(reverse("hosting:server_images", args=[server.pk])).content.decode()
    assert "web:latest" in page and "&lt;script&gt;" in page and "<script>alert" not in page and "untagged" in page
    assert "../../etc" not in page and server.images.count() == 3
    assert as_bob.get(reverse("hosting:server_images", args=[server.pk])).status_code == 404
    # The new-app form's example names an image the server has.
    assert "image: web:1" in as_alice.get(reverse("hosting:app_new", args=[server.pk])).content.decode()

    image = server.images.get(tags=["web:1", "web:latest"])
    assert as_bob.post(reverse("hosting:image_remove", args=[image.pk])).status_code == 404
    assert as_alice.post(reverse("hosting:image_remove", args=[image.pk])).status_code == 302
    assert ImageSnapshot.objects.get(pk=image.pk).action == "remove"
    assert "removing…" in as_alice.get(reverse("hosting:server_images", args=[server.pk])).content.decode()
    workloads.image_remove(image_id=image.pk)  # the task
    assert ("inner_image_remove", image.image_id) in fake_docker.calls and not server.images.filter(pk=image.pk).exists()
