"""The gateway's WebSocket consumers without Docker (Channels' WebsocketCommunicator over
the gateway's own ASGI application): who is let in, and what a refused or ended
stream says. The streams themselves run against real servers in test_terminal and
test_workloads."""

import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from controlpanel.asgi import application
from controlpanel.testing import logged_in_client

from ..gateway import terminals
from ..models import ContainerSnapshot

pytestmark = pytest.mark.django_db(transaction=True)  # the consumers' database work runs in threads of its own
ORIGIN = "http://localhost:8000"


def _session(user):
    return logged_in_client(user).cookies["sessionid"].value


def connect(path, user=None, origin=ORIGIN):
    """(whether the handshake was accepted, the messages that came before the close)."""

    headers = [(b"origin", origin.encode())]
    if user is not None:
        headers.append((b"cookie", f"sessionid={_session(user)}".encode()))

    async def run():
        communicator = WebsocketCommunicator(application, path, headers=headers)
        accepted, _ = await communicator.connect(timeout=5)
        said = []
        if accepted:
            while (message := await communicator.receive_output(timeout=5))["type"] == "websocket.send":
                said.append(json.loads(message["text"]))
        await communicator.disconnect()
        return accepted, said

    return async_to_sync(run)()


def _container(server):
    return ContainerSnapshot.objects.create(server=server, docker_id="a" * 64, name="web", state="running", digest="x")


def test_a_terminal_is_refused_to_visitors_to_other_users_and_to_other_origins(server, alice, bob):
    path = f"/ws/servers/{server.pk}/terminal/"
    assert connect(path) == (False, [])
    assert connect(path, bob) == (False, [])  # someone else's server: as if there were none
    assert connect("/ws/servers/999999/terminal/", alice) == (False, [])
    for origin in ("http://localhost:9999", "https://localhost:8000", "http://localhost.example.org:8000"):
        assert connect(path, alice, origin=origin) == (False, [])


def test_a_stopped_servers_terminal_says_so(make_server, fake_docker, alice):
    server = make_server(observed_state="exited")
    accepted, said = connect(f"/ws/servers/{server.pk}/terminal/", alice)
    assert accepted and said == [{"type": "closed", "reason": "The server is stopped: start it to open a terminal."}]


def test_only_admins_may_watch_and_an_ended_terminal_says_so(alice, admin):
    assert connect("/ws/terminals/1/watch/", alice) == (False, [])
    assert connect("/ws/terminals/1/watch/", admin) == (True, [{"type": "closed", "reason": "This terminal has ended."}])


def test_a_log_stream_is_the_owners_and_ends_in_words(server, alice, bob, settings):
    container = _container(server)
    path = f"/ws/servers/{server.pk}/containers/{container.pk}/logs/"
    assert connect(path, bob) == (False, [])
    assert connect(f"/ws/servers/{server.pk}/containers/{container.pk + 1}/logs/", alice) == (False, [])
    # The fake server's daemon has no socket: the stream ends, saying why.
    assert connect(path, alice) == (True, [{"type": "ended", "reason": "The server's Docker daemon is not listening."}])
    assert not terminals.terminals  # and it is no longer counted
    settings.SESSIONS_PER_USER = 0
    assert connect(path, alice) == (True, [{"type": "ended", "reason": "You have 0 terminals, SSH sessions and log views open, "
                                                                     "the most allowed: end one on your Sessions page (/sessions/)."}])


def test_loading_an_image_is_the_owners_and_a_stopped_server_says_so(make_server, fake_docker, alice, bob):
    server = make_server(observed_state="exited")
    path = f"/ws/servers/{server.pk}/images/load/"
    assert connect(path, bob) == (False, [])
    assert connect(path, alice) == (True, [{"type": "done", "ok": False, "reason": "The server is not running: start it to load an image."}])
