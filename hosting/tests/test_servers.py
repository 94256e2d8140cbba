"""Virtual server pages and services, with Docker faked at the hosting.backends.docker boundary."""

import pytest
from django.urls import reverse

from accounts.models import ActivityLog
from controlpanel.testing import refused_form
from hosting import services
from hosting.backends import docker
from hosting.activity import Action
from hosting.models import Node, VirtualServer

pytestmark = pytest.mark.django_db


def create(client, committed, name="web"):
    with committed():
        return client.post(reverse("hosting:server_create"), {"name": name})


def url(name, server):
    return reverse(f"hosting:{name}", args=[server.pk])


def test_create_makes_a_running_server(as_alice, alice, fake_docker, committed, settings):
    response = create(as_alice, committed, name="  My (first) server.  ")
    server = VirtualServer.objects.get()
    assert response.url == url("server_detail", server)
    server.refresh_from_db()
    assert server.name == "My (first) server."
    assert server.owner == alice and server.operation == "" and server.observed_state == "running"
    assert server.state == "running" and server.observed_at
    assert (server.memory_mb, float(server.cpus), server.pids_limit) == (
        settings.SERVER_DEFAULT_MEMORY_MB, settings.SERVER_DEFAULT_CPUS, settings.SERVER_DEFAULT_PIDS)
    assert fake_docker.containers == {server.container_name: "running"}
    assert server.container_name == f"{settings.SERVER_CONTAINER_PREFIX}{server.pk}"
    assert fake_docker.last_spec.hostname == f"server{server.pk}"
    assert fake_docker.last_spec.labels["controlpanel.owner-id"] == str(alice.pk)
    assert ActivityLog.objects.filter(action=Action.SERVER_CREATED, user=alice, target=server.container_name).exists()


def test_the_page_says_what_is_under_way_only_while_it_is(as_alice, alice, fake_docker):
    server = services.server_create(owner=alice, name="new")  # not committed: its worker has not run yet
    page = as_alice.get(url("server_detail", server)).content.decode()
    assert "Creating it: it runs in a few seconds." in page
    VirtualServer.objects.filter(pk=server.pk).update(operation="", observed_state="running")
    live = as_alice.get(url("server_live", server)).content.decode()  # what the page's live part fetches
    assert "runs in a few seconds" not in live and "Running" in live


def test_default_container_prefix():
    from controlpanel import settings as configured

    assert configured.env.str("SERVER_CONTAINER_PREFIX", default="hosting-users-dind-") == "hosting-users-dind-"


@pytest.mark.parametrize("name", [
    "Serveur numéro 1", "сервер", "サーバー", "a", "x" * 64, "with-dash_under.dot (paren)",
])
def test_good_names(as_alice, fake_docker, committed, name, alice):
    alice.server_quota = 10
    alice.save()
    assert create(as_alice, committed, name).status_code == 302
    assert VirtualServer.objects.get().name == name


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "<b>bold</b>", "semi;colon", "new\nline", "slash/", "emoji 🚀", "tab\there"])
def test_bad_names_are_field_errors(as_alice, fake_docker, committed, name):
    form = refused_form(as_alice, create(as_alice, committed, name), "form")
    assert "name" in form.errors and form["name"].value() == name  # kept for the user to correct
    assert not VirtualServer.objects.exists()
    assert not fake_docker.calls


def test_quota_refuses_with_a_clear_message(as_alice, alice, fake_docker, committed, settings):
    settings.SERVER_QUOTA_DEFAULT = 2
    create(as_alice, committed, "one")
    create(as_alice, committed, "two")
    response = create(as_alice, committed, "three")
    assert "reached your limit of 2 virtual servers" in str(refused_form(as_alice, response, "form").errors)
    assert VirtualServer.objects.count() == 2
    page = as_alice.get(reverse("hosting:server_list")).content.decode()
    assert "disabled" in page and "reached your limit of 2" in page


def test_per_user_quota_overrides_the_default(as_alice, alice, fake_docker, committed, settings):
    settings.SERVER_QUOTA_DEFAULT = 1
    alice.server_quota = 3
    alice.save()
    for n in range(3):
        create(as_alice, committed, f"s{n}")
    assert VirtualServer.objects.count() == 3


def test_admin_edits_a_users_quota(as_admin, alice):
    as_admin.post(reverse("accounts:user_detail", args=[alice.pk]), {"email": alice.email, "is_active": "on", "server_quota": "7"})
    alice.refresh_from_db()
    assert alice.server_quota == 7


def test_deleted_servers_do_not_count_against_the_quota(as_alice, alice, fake_docker, committed, settings):
    settings.SERVER_QUOTA_DEFAULT = 1
    create(as_alice, committed, "one")
    server = VirtualServer.objects.get()
    with committed():
        as_alice.post(url("server_delete", server))
    assert create(as_alice, committed, "two").status_code == 302


def test_stop_start_restart(as_alice, server, fake_docker, committed):
    with committed():
        as_alice.post(url("server_stop", server))
    server.refresh_from_db()
    assert (server.desired_state, server.observed_state, server.operation) == ("stopped", "exited", "")
    with committed():
        as_alice.post(url("server_start", server))
    server.refresh_from_db()
    assert server.observed_state == "running"
    before = len(fake_docker.calls)
    with committed():
        as_alice.post(url("server_restart", server))
    # A stop and a start, its disk let go of in between (so a new disk size applies).
    names = [call[0] for call in fake_docker.calls[before:]]
    assert names[:3] == ["container_stop", "disk_ensure", "server_create"] and "container_start" in names, names
    actions = set(ActivityLog.objects.values_list("action", flat=True))
    assert {Action.SERVER_STOPPED, Action.SERVER_STARTED, Action.SERVER_RESTARTED} <= actions


def test_transitional_state_shows_until_the_task_runs(as_alice, server, fake_docker):
    # No commit callbacks here: the task has not run yet.
    as_alice.post(url("server_stop", server))
    server.refresh_from_db()
    assert server.state == "stopping"
    page = as_alice.get(url("server_detail", server)).content.decode()
    assert "Stopping" in page and 'http-equiv="refresh"' in page
    response = as_alice.post(url("server_start", server), follow=True)
    assert "busy" in response.content.decode()


def test_delete_soft_deletes_and_ids_are_never_reused(as_alice, alice, server, fake_docker, committed):
    response = as_alice.get(url("server_delete", server))
    page = response.content.decode()
    assert response.status_code == 200 and server.hostname in page and server.container_name not in page
    with committed():
        as_alice.post(url("server_delete", server))
    server.refresh_from_db()
    assert server.deleted_at is not None
    assert ("server_remove", server.container_name, server.volume_name) in fake_docker.calls
    assert as_alice.get(url("server_detail", server)).status_code == 404
    with committed():
        newer = services.server_create(owner=alice, name="next")
    assert newer.pk > server.pk


def test_slots_are_freed_on_delete_so_ids_can_grow_past_the_nodes_room(as_alice, alice, fake_docker, committed, settings):
    # A legacy import (or years of use) leaves ids far above the addresses of a /24.
    settings.SERVER_NETWORK_SUBNET = "10.214.0.0/24"
    with committed():
        first = services.server_create(owner=alice, name="first")
    VirtualServer.objects.filter(pk=first.pk).update(id=1_288_556, slot=None)
    first = VirtualServer.objects.get(pk=1_288_556)
    with committed():
        services.server_start(actor=alice, server=first)
    first.refresh_from_db()
    assert first.state == "running" and first.slot == 1 and fake_docker.last_spec.slot == 1
    with committed():
        second = services.server_create(owner=alice, name="second")
    second.refresh_from_db()
    assert second.slot == 2 and fake_docker.last_spec.uid == settings.SERVER_UID_BASE + 2 * 65536
    with committed():
        services.server_delete(actor=alice, server=first)
    first.refresh_from_db()
    assert first.deleted_at and first.slot is None
    with committed():
        third = services.server_create(owner=alice, name="third")
    third.refresh_from_db()
    assert third.slot == 1 and third.pk > second.pk


def test_a_full_node_says_so_and_makes_no_container(as_alice, alice, fake_docker, committed, settings):
    settings.SERVER_NETWORK_SUBNET = "10.214.0.0/24"  # 253 slots
    settings.SERVER_QUOTA_DEFAULT = 1000
    node = Node.local()
    VirtualServer.objects.bulk_create([VirtualServer(owner=alice, node=node, name=f"s{slot}", slot=slot, memory_mb=64, cpus=1,
                                                     pids_limit=32) for slot in range(1, 254)])
    with committed():
        server = services.server_create(owner=alice, name="one too many")
    server.refresh_from_db()
    assert server.state == "failed" and server.slot is None
    assert "room for 253 servers" in server.last_error
    assert server.container_name not in fake_docker.containers


def test_a_server_is_made_with_its_own_nodes_engine_subnet_and_uids(alice, fake_docker, committed, settings):
    node = Node.objects.create(name="second", docker_url="tcp://192.0.2.7:2376", subnet="10.215.0.0/24", uid_base=2**31)
    with committed():
        server = services.server_create(owner=alice, name="elsewhere")
        VirtualServer.objects.filter(pk=server.pk).update(node=node)  # placement is #26's: here, by hand
    server.refresh_from_db()
    assert server.state == "running" and server.slot == 1
    assert fake_docker.last_engine == docker.Engine(url="tcp://192.0.2.7:2376", subnet="10.215.0.0/24", uid_base=2**31)
    assert fake_docker.last_spec.uid == server.host_uid == 2**31 + 65536
    # The local node's facts are the settings', read when used.
    settings.SERVER_NETWORK_SUBNET, settings.SERVER_UID_BASE = "10.216.0.0/16", 2**29
    assert docker.Engine.of(Node.local()) == docker.Engine(url=settings.DOCKER_HOST_URL, subnet="10.216.0.0/16", uid_base=2**29)


def test_delete_can_keep_the_volume(as_alice, server, fake_docker, committed, settings):
    settings.SERVER_KEEP_VOLUME_ON_DELETE = True
    with committed():
        as_alice.post(url("server_delete", server))
    assert ("server_remove", server.container_name, None) in fake_docker.calls


def test_rename(as_alice, server):
    as_alice.post(url("server_rename", server), {"name": "renamed"})
    server.refresh_from_db()
    assert server.name == "renamed"
    response = as_alice.post(url("server_rename", server), {"name": "<script>"})
    assert "name" in refused_form(as_alice, response, "rename_form").errors
    server.refresh_from_db()
    assert server.name == "renamed"
    assert ActivityLog.objects.filter(action=Action.SERVER_RENAMED).count() == 1


def test_failed_create_leaves_a_clear_error_and_no_container(as_alice, alice, fake_docker, committed):
    fake_docker.fail_with = "The Docker engine is not reachable. Try again later or ask an administrator."
    create(as_alice, committed, "doomed")
    server = VirtualServer.objects.get()
    assert server.state == "failed"
    assert "not reachable" in server.last_error
    assert fake_docker.containers == {}
    assert ActivityLog.objects.filter(action=Action.SERVER_FAILED, user=alice).exists()
    page = as_alice.get(url("server_detail", server)).content.decode()
    assert "not reachable" in page and "Retry" in page
    # Retry once Docker is back.
    fake_docker.fail_with = None
    with committed():
        as_alice.post(url("server_start", server))
    server.refresh_from_db()
    assert server.state == "running" and server.last_error == ""


def test_failed_stop_keeps_the_row_consistent(as_alice, server, fake_docker, committed):
    fake_docker.fail_with = "Docker refused: boom"
    with committed():
        as_alice.post(url("server_stop", server))
    server.refresh_from_db()
    assert server.operation == "" and server.last_error == "Docker refused: boom"
    assert server.deleted_at is None


def test_other_peoples_servers_are_404(as_bob, server):
    for name in ("server_detail", "server_delete"):
        assert as_bob.get(url(name, server)).status_code == 404
    for name in ("server_start", "server_stop", "server_restart", "server_rename", "server_delete"):
        assert as_bob.post(url(name, server), {"name": "x"}).status_code == 404
    server.refresh_from_db()
    assert server.name == "alice web" and server.desired_state == "running"


def test_server_list_shows_only_own_servers(as_bob, server):
    assert "alice web" not in as_bob.get(reverse("hosting:server_list")).content.decode()


def test_admin_sees_and_acts_on_any_server(as_admin, admin, server, fake_docker, committed):
    assert as_admin.get(url("server_detail", server)).status_code == 200
    with committed():
        as_admin.post(url("server_stop", server))
    server.refresh_from_db()
    assert server.observed_state == "exited"
    assert ActivityLog.objects.filter(action=Action.SERVER_STOPPED, user=admin).exists()


def test_admin_server_list_search_and_filters(as_admin, server, bob, fake_docker, committed):
    with committed():
        other = services.server_create(owner=bob, name="bob db")
    with committed():
        services.server_stop(actor=bob, server=other)

    def names(**params):
        return {s.name for s in as_admin.get(reverse("hosting:admin_server_list"), params).context["page"]}

    assert names() == {"alice web", "bob db"}
    assert names(q="web") == {"alice web"}
    assert names(q=str(other.pk)) == {"bob db"}
    assert names(owner="bob@") == {"bob db"}
    assert names(state="exited") == {"bob db"}
    assert names(state="running") == {"alice web"}
    assert as_admin.get(reverse("hosting:admin_server_list"), {"state": "bogus"}).status_code == 200
    assert f'href="{reverse("hosting:server_list")}">Your own servers' in as_admin.get(reverse("hosting:admin_server_list")).content.decode()


def test_admin_changes_limits_and_the_worker_applies_them(as_admin, server, fake_docker, committed):
    fake_docker.calls.clear()
    fake_docker.fail_with = "no Docker in the web tier"
    response = as_admin.post(url("server_limits", server), {"memory_mb": 512, "cpus": "0.5", "pids_limit": 256})
    assert response.status_code == 302  # the request itself never calls Docker
    assert fake_docker.calls == []
    server.refresh_from_db()
    assert (server.memory_mb, str(server.cpus), server.pids_limit) == (512, "0.50", 256)
    assert ActivityLog.objects.filter(action=Action.SERVER_LIMITS_CHANGED).exists()
    fake_docker.fail_with = None
    with committed():
        as_admin.post(url("server_limits", server), {"memory_mb": 384, "cpus": "0.5", "pids_limit": 256})
    assert ("container_update_limits", server.container_name, {"memory_mb": 384, "cpus": 0.5, "pids_limit": 256}) in fake_docker.calls
    server.refresh_from_db()
    assert server.state == "running" and server.last_error == ""


def test_limits_docker_refuses_are_shown_on_the_server(as_admin, server, fake_docker, committed):
    fake_docker.fail_with = "Minimum memory limit allowed is 6MB"
    with committed():
        as_admin.post(url("server_limits", server), {"memory_mb": 512, "cpus": "0.5", "pids_limit": 256})
    server.refresh_from_db()
    assert server.memory_mb == 512 and "Minimum memory" in server.last_error
    assert "Minimum memory" in as_admin.get(url("server_detail", server)).content.decode()


@pytest.mark.parametrize("data", [
    {"memory_mb": 10, "cpus": "1", "pids_limit": 100},
    {"memory_mb": 512, "cpus": "0", "pids_limit": 100},
    {"memory_mb": 512, "cpus": "1", "pids_limit": 5},
    {"memory_mb": "lots", "cpus": "1", "pids_limit": 100},
])
def test_bad_limits_are_field_errors(as_admin, server, data):
    response = as_admin.post(url("server_limits", server), data)
    assert refused_form(as_admin, response, "limits_form").errors
    server.refresh_from_db()
    assert server.memory_mb != 10 and server.pids_limit != 5


def test_plain_users_cannot_change_limits(as_alice, server):
    assert as_alice.post(url("server_limits", server), {"memory_mb": 99999, "cpus": "64", "pids_limit": 99999}).status_code == 403


def test_wrong_methods_are_405(as_alice, server):
    for name in ("server_start", "server_stop", "server_restart", "server_rename"):
        assert as_alice.get(url(name, server)).status_code == 405
    assert as_alice.get(reverse("hosting:server_create")).status_code == 405


def test_anonymous_goes_to_login(client, server):
    for target in (reverse("hosting:server_list"), url("server_detail", server), reverse("hosting:admin_server_list")):
        assert client.get(target).url.startswith(reverse("accounts:login"))


def test_users_list_counts_live_servers_and_delete_is_refused(as_admin, alice, server, fake_docker, committed):
    page = as_admin.get(reverse("accounts:user_list"))
    counts = {u.email: u.server_count for u in page.context["page"]}
    assert counts["alice@example.com"] == 1
    response = as_admin.post(reverse("accounts:user_delete", args=[alice.pk]), follow=True)
    assert "still owns 1 virtual server" in response.content.decode()
    assert type(alice).objects.filter(pk=alice.pk).exists()
    with committed():
        services.server_delete(actor=alice, server=server)
    as_admin.post(reverse("accounts:user_delete", args=[alice.pk]))
    assert not type(alice).objects.filter(pk=alice.pk).exists()


def test_server_names_are_escaped(as_alice, make_server, fake_docker):
    server = make_server(name="<img src=x>")
    page = as_alice.get(url("server_detail", server)).content.decode()
    assert "<img src=x>" not in page and "&lt;img src=x&gt;" in page


def test_a_server_stuck_in_creating_is_finished_by_the_reconciler(make_server, fake_docker, settings):
    """The worker died in the middle of a create: the periodic reconcile finishes it."""
    from datetime import timedelta

    from django.utils import timezone

    from hosting import tasks

    server = make_server(name="orphaned task", operation="creating")
    fake_docker.containers.clear()  # its task never ran
    assert tasks.servers_reconcile_stuck.apply().get() == []  # too recent: its task may still be running
    VirtualServer.objects.filter(pk=server.pk).update(updated_at=timezone.now() - timedelta(seconds=settings.SERVER_OPERATION_TIMEOUT + 1))
    assert tasks.servers_reconcile_stuck.apply().get() == [server.pk]
    server.refresh_from_db()
    assert server.state == "running" and server.operation == ""
    assert fake_docker.containers[server.container_name] == "running"


def test_admin_server_list_rows_escape_and_link(as_admin, alice, make_server, fake_docker):
    server = make_server(name="<b>bold</b>", memory_mb=512, cpus="0.5", pids_limit=128)
    page = as_admin.get(reverse("hosting:admin_server_list")).content.decode()
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold" not in page
    assert f'href="/servers/{server.pk}/"' in page and f'href="/admin/users/{alice.pk}/"' in page
    assert "512 MB · 0.5 CPU · 128 pids" in page


def test_every_state_filter_finds_exactly_the_servers_whose_badge_says_it(make_server, fake_docker, settings):
    """VirtualServer.state (the badge) and state_q (the admin filter, the dashboard count) are one rule."""
    import itertools

    settings.SERVER_QUOTA_DEFAULT = 1000
    combinations = itertools.product(
        VirtualServer.Operation.values, VirtualServer.ObservedState.values, ["", "it broke"], [0, 2])
    servers = [
        make_server(name=f"s{n}", operation=op, observed_state=observed, last_error=error, inner_failures=failures)
        for n, (op, observed, error, failures) in enumerate(combinations)
    ]
    for state in VirtualServer.State:
        found = set(VirtualServer.objects.in_state(state).values_list("pk", flat=True))
        assert found == {s.pk for s in servers if s.state == state}, state


@pytest.mark.parametrize("q", ["²", "٣", "99999999999999999999999", "7"])
def test_the_admin_server_search_takes_any_text(as_admin, q):
    """str.isdigit() is true for "²", which int() refuses; a huge number overflows a bigint."""
    assert as_admin.get(reverse("hosting:admin_server_list"), {"q": q}).status_code == 200


def test_a_server_id_is_always_positive(alice):
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        VirtualServer.objects.create(pk=-5, owner=alice, node=Node.local(), name="negative", memory_mb=64, cpus=1, pids_limit=64)
