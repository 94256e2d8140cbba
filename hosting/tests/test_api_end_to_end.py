"""The API alone, against real servers: a token makes a server, deploys a compose app in it, routes a
domain to it through a real Caddy, acts on a container inside, and deletes it all; the same objects are
on the pages all along."""

import pytest
from django.test import Client
from django.urls import reverse

from api import services as tokens
from hosting.benchmarks import inside
from hosting.models import VirtualServer
from hosting.worker import monitor

from .conftest import TEST_APP_IMAGE, inner_daemon_answers, wait_until
from .test_workloads import TWO_SERVICES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker, pytest.mark.usefixtures("eager_tasks")]
JSON = "application/json"


def test_a_server_its_app_and_its_domain_made_and_removed_through_the_api_alone(real_docker, caddy, alice, settings):
    settings.DOMAIN_OWNERSHIP = "allowed"  # a closed installation: names need no proof here
    api = Client(headers={"Authorization": f"Bearer {tokens.token_create(user=alice, name='ci', scope='write', days=7)[1]}"})
    pages = Client()
    pages.force_login(alice)

    def get(name, *args, **query):
        response = api.get(reverse(name, args=args), query)
        assert response.status_code == 200, response.content
        return response.json()

    made = api.post(reverse("api:server-list"), {"name": "class 3b"}, content_type=JSON, headers={"Idempotency-Key": "3b"})
    assert made.status_code == 202, made.content
    server_id = made.json()["server"]["id"]
    assert wait_until(lambda: get("api:server-detail", server_id)["state"] == "running", timeout=90, what="the server running")
    server = VirtualServer.objects.get(pk=server_id)
    assert "class 3b" in pages.get(reverse("hosting:server_list")).content.decode()
    inner_daemon_answers(server)
    inside.image_copy_to_inner(TEST_APP_IMAGE, str(server.socket_dir))  # no registry in reach here

    app = api.post(reverse("api:app-list"), {"server": server_id, "name": "blog", "compose_file": TWO_SERVICES}, content_type=JSON)
    assert app.status_code == 202, app.content
    app_id = app.json()["id"]
    done = wait_until(lambda: (a := get("api:app-detail", app_id))["status"] not in ("new", "deploying") and a, timeout=120,
                      what="the deploy")
    assert done["status"] == "running" and done["deployments"][0]["result"] == "succeeded", done
    assert "blog" in pages.get(reverse("hosting:app_detail", args=[app_id])).content.decode()

    domain = api.post(reverse("api:domain-list"), {"server": server_id, "name": "blog.example.org", "port": 8081, "ssl": False},
                      content_type=JSON)
    assert domain.status_code == 201 and domain.json()["status"] == "active", domain.content
    assert wait_until(lambda: "version one" in caddy.get("blog.example.org").text, what="the app through Caddy")
    assert "blog.example.org" in pages.get(reverse("hosting:server_detail", args=[server_id])).content.decode()

    monitor.run_cycle()  # what runs inside, as the monitor reads it each minute
    containers = get("api:container-list", server=server_id)["results"]
    worker = next(c for c in containers if c["project"] == "blog" and "worker" in c["name"])
    assert api.post(reverse("api:container-restart", args=[worker["id"]])).status_code == 202
    assert wait_until(lambda: not get("api:container-detail", worker["id"])["action"], timeout=60, what="the restart")

    assert api.delete(reverse("api:domain-detail", args=[domain.json()["id"]])).status_code == 204
    assert api.delete(reverse("api:server-detail", args=[server_id])).status_code == 202
    assert wait_until(lambda: VirtualServer.objects.get(pk=server_id).deleted_at, timeout=60, what="the server's removal")
    assert api.get(reverse("api:server-detail", args=[server_id])).status_code == 404
    assert "class 3b" not in pages.get(reverse("hosting:server_list")).content.decode()
