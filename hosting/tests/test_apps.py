"""Apps and container actions on the request side (Docker faked: the worker's part is
test_workloads.py, against real servers)."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from hosting import services
from hosting.models import App, AppDeployment, ContainerSnapshot

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
