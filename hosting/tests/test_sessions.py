"""A user's Sessions page: their own open terminals and SSH sessions, each to end."""

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from hosting.gateway import terminals
from hosting.models import TerminalSession, VirtualServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def opened(server, alice, bob, make_server):
    VirtualServer.objects.filter(pk=server.pk).update(observed_state=VirtualServer.ObservedState.RUNNING)
    bobs = make_server(owner=bob, name="bob's")
    return {
        "shell": TerminalSession.objects.create(user=alice, server=server, what="a browser terminal", client_ip="192.0.2.7"),
        "sftp": TerminalSession.objects.create(user=alice, server=server, kind="ssh", what="an SSH sftp session"),
        "closed": TerminalSession.objects.create(user=alice, server=server, what="an SSH command session", closed_at="2026-01-01T00:00Z"),
        "bobs": TerminalSession.objects.create(user=bob, server=bobs, what="an SSH port 8080 session"),
    }


def test_the_page_lists_ones_own_open_sessions_only(as_alice, opened, server):
    page = as_alice.get(reverse("hosting:session_list")).content.decode()
    assert "a browser terminal" in page and "192.0.2.7" in page and "an SSH sftp session" in page and server.name in page
    assert "an SSH command session" not in page and "port 8080" not in page


def test_one_ends_ones_own_and_nobody_elses(as_alice, as_admin, alice, opened):
    assert as_alice.post(reverse("hosting:session_end", args=[opened["bobs"].pk])).status_code == 404
    assert as_admin.post(reverse("hosting:session_end", args=[opened["shell"].pk])).status_code == 404  # an admin's is the Terminals page
    response = as_alice.post(reverse("hosting:session_end", args=[opened["shell"].pk]), follow=True)
    assert "A browser terminal on" in response.content.decode() and "ending" in response.content.decode()
    ended = TerminalSession.objects.get(pk=opened["shell"].pk)
    assert ended.end_requested_at and ended.end_requested_by == alice
    assert TerminalSession.objects.get(pk=opened["bobs"].pk).end_requested_at is None


class _Open:
    """What the gateway holds of a session, as _reasons_to_end reads it."""

    session_key = key_id = None

    def __init__(self, row):
        self.id, self.row_id, self.user_id, self.server_id = f"t{row.pk}", row.pk, row.user_id, row.server_id


@pytest.mark.django_db(transaction=True)  # the gateway's database calls close the connection they ran on
def test_the_gateway_tells_who_ended_it(opened, alice, admin):
    shell, sftp = opened["shell"], opened["sftp"]
    TerminalSession.objects.filter(pk=shell.pk).update(end_requested_at="2026-01-01T00:00Z", end_requested_by=alice)
    TerminalSession.objects.filter(pk=sftp.pk).update(end_requested_at="2026-01-01T00:00Z", end_requested_by=admin)
    reasons = async_to_sync(terminals._reasons_to_end)([_Open(shell), _Open(sftp)])
    assert reasons == {f"t{shell.pk}": (terminals.Ended.BY_USER, False), f"t{sftp.pk}": (terminals.Ended.BY_ADMIN, True)}
