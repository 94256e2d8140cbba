"""Terminals through the real gateway process (manage.py gateway), into real virtual servers.

The tests speak the gateway's WebSocket protocol with the `websockets` client,
as the page's JavaScript does (test_browser_e2e drives the page itself).
"""

import json
import os
import signal
import time

import pytest
from django.test import Client
from django.urls import reverse
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from accounts import services as account_services
from accounts.models import ActivityLog
from hosting import services
from hosting.activity import Action
from hosting.models import TerminalSession

from .conftest import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker, pytest.mark.usefixtures("eager_tasks")]
ORIGIN = "http://testserver"


def session_cookie(user):
    client = Client()
    client.force_login(user)
    return client, client.cookies["sessionid"].value


def open_ws(url, cookie=None, origin=ORIGIN):
    headers = {"Origin": origin} if origin else {}
    if cookie:
        headers["Cookie"] = f"sessionid={cookie}"
    return connect(url, additional_headers=headers, open_timeout=20, max_size=None, ping_interval=None).__enter__()  # closed by the test, or by the gateway


def close_reasons():
    """Why each terminal ended, for a failure message."""
    return list(TerminalSession.objects.values_list("close_reason", flat=True))


class Shell:
    """The browser's side of one terminal."""

    def __init__(self, ws):
        self.ws, self.output, self.messages = ws, b"", []
        self.hello = self.next_message("hello")

    def _read(self, timeout):
        message = self.ws.recv(timeout=timeout)
        if isinstance(message, bytes):
            self.output += message
        else:
            self.messages.append(json.loads(message))

    def next_message(self, kind, timeout=20, where=lambda message: True):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if message["type"] == kind and where(message):
                    self.messages.remove(message)
                    return message
            try:
                self._read(0.5)
            except TimeoutError:
                pass
        raise AssertionError(f"no {kind} message; got {self.messages}, output {self.output[-500:]!r}")

    def type(self, text):
        self.ws.send(text.encode())

    def expect(self, text, timeout=20):
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never came; the terminal showed {self.output[-1500:]!r}")
            try:
                self._read(0.5)
            except TimeoutError:
                pass

    def closed_reason(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._read(0.5)
            except TimeoutError:
                continue
            except ConnectionClosed as closed:
                reasons = [m["reason"] for m in self.messages if m["type"] == "closed"]
                return reasons[0] if reasons else f"closed ({closed.rcvd.code if closed.rcvd else 'no code'})"
        raise AssertionError("the terminal stayed open")


def shell_for(gateway, server, user):
    _, cookie = session_cookie(user)
    return Shell(open_ws(gateway.url(server.pk), cookie))


def processes_in(real_docker, server):
    return real_docker.containers.get(server.container_name).exec_run(["ps", "-eo", "args"]).output.decode()


def test_a_shell_in_the_server_as_its_root_with_its_own_docker(gateway, running_server, alice):
    shell = shell_for(gateway(), running_server, alice)
    shell.type("id -u; hostname; docker info --format 'daemon={{.Name}}'\r")
    shell.expect("daemon=" + running_server.hostname)
    assert b"\r0\r\nserver" in shell.output  # uid 0: root inside
    # Resize, UTF-8 both ways, Ctrl-C.
    shell.ws.send(json.dumps({"type": "resize", "rows": 33, "cols": 101}))
    shell.type("stty size; echo 'héllo ✓ 漢字'\r")
    shell.expect("33 101")
    shell.expect("héllo ✓ 漢字")
    shell.type("sleep 300; echo slept\r")
    time.sleep(1)
    shell.type("\x03")
    time.sleep(0.5)
    shell.type("echo interrupted\r")
    shell.expect("\rinterrupted\r\n")
    assert b"\rslept\r\n" not in shell.output
    shell.ws.send(json.dumps({"type": "ping"}))
    assert shell.next_message("pong")
    row = TerminalSession.objects.get()
    assert row.user == alice and row.server == running_server and row.is_open
    shell.ws.close()


@pytest.mark.parametrize("case", ["someone else's server", "no such server", "no session", "no Origin", "a foreign Origin"])
def test_refusals_look_alike(case, gateway, running_server, bob, alice):
    started = gateway()
    _, bobs = session_cookie(bob)
    _, alices = session_cookie(alice)
    url, cookie, origin = {
        "someone else's server": (started.url(running_server.pk), bobs, ORIGIN),
        "no such server": (started.url(running_server.pk + 1000), alices, ORIGIN),
        "no session": (started.url(running_server.pk), None, ORIGIN),
        "no Origin": (started.url(running_server.pk), alices, None),
        "a foreign Origin": (started.url(running_server.pk), alices, "https://evil.example"),
    }[case]
    with pytest.raises(InvalidStatus) as refused:
        open_ws(url, cookie, origin)
    assert refused.value.response.status_code == 403
    assert not TerminalSession.objects.exists()


def test_the_same_shell_comes_back_after_a_reload_with_its_scrollback(gateway, running_server, alice):
    started = gateway()
    _, cookie = session_cookie(alice)
    first = Shell(open_ws(started.url(running_server.pk), cookie))
    first.type("export LEFT_HERE=before-reload; echo marker-$((40+2))\r")
    first.expect("marker-42")
    first.ws.close()  # the page goes away
    again = Shell(open_ws(started.url(running_server.pk, first.hello["terminal"]), cookie))
    assert again.hello["terminal"] == first.hello["terminal"], close_reasons()
    again.expect("marker-42")  # the scrollback
    again.type("echo still=$LEFT_HERE\r")
    again.expect("still=before-reload")
    assert TerminalSession.objects.count() == 1


def test_a_reload_while_output_flows_keeps_the_shell(gateway, running_server, alice):
    # The gateway may be mid-send to the page when it goes: that failed send is the browser's end, not the shell's.
    started = gateway()
    _, cookie = session_cookie(alice)
    shell = Shell(open_ws(started.url(running_server.pk), cookie))
    terminal = shell.hello["terminal"]
    for attempt in range(5):
        shell.type(f"seq -f tick-{attempt}-%g 20000; echo round-$((100+{attempt}))\r")
        shell.expect(f"tick-{attempt}-2\r\n")
        shell.ws.close()  # the page goes away
        shell = Shell(open_ws(started.url(running_server.pk, terminal), cookie))
        assert shell.hello["terminal"] == terminal, close_reasons()
        shell.expect(f"round-{100 + attempt}")
    assert TerminalSession.objects.count() == 1


def test_a_disabled_user_a_logout_elsewhere_and_a_deleted_server_close_terminals(gateway, running_server, alice, admin, make_server, real_docker):
    started = gateway()
    browser, cookie = session_cookie(alice)
    shell = Shell(open_ws(started.url(running_server.pk), cookie))
    browser.post("/logout/")  # another tab logs out
    assert "logged out" in shell.closed_reason(10)

    _, cookie = session_cookie(alice)
    shell = Shell(open_ws(started.url(running_server.pk), cookie))
    account_services.user_update(actor=admin, user=alice, email=alice.email, is_admin=False, is_active=False)
    assert "disabled" in shell.closed_reason(10)
    account_services.user_update(actor=admin, user=alice, email=alice.email, is_admin=False, is_active=True)

    _, cookie = session_cookie(alice)
    shell = Shell(open_ws(started.url(running_server.pk), cookie))
    services.server_delete(actor=alice, server=running_server)
    assert "deleted" in shell.closed_reason(10)
    closed = TerminalSession.objects.filter(closed_at__isnull=False)
    assert closed.count() == 3
    entry = ActivityLog.objects.filter(action=Action.TERMINAL_CLOSED).first()
    assert "bytes in" in entry.message and "min" in entry.message and entry.ip == "127.0.0.1"  # where from, in its column


def test_idle_terminals_close_and_users_have_a_limit(gateway, running_server, alice):
    started = gateway(TERMINAL_IDLE_SECONDS=3, TERMINALS_PER_USER=2)
    _, cookie = session_cookie(alice)
    shells = [Shell(open_ws(started.url(running_server.pk), cookie)) for _ in range(2)]
    third = json.loads(open_ws(started.url(running_server.pk), cookie).recv(timeout=20))
    assert "most allowed" in third["reason"] and third["sessions_page"]  # the page links to the user's Sessions page
    assert "without typing" in shells[0].closed_reason(15)


def test_a_user_ends_their_own_shell_from_the_sessions_page(gateway, running_server, alice):
    started = gateway()
    browser, cookie = session_cookie(alice)
    shell = Shell(open_ws(started.url(running_server.pk), cookie))
    shell.type("echo opened\r")
    shell.expect("opened")
    row = TerminalSession.objects.get()
    page = browser.get(reverse("hosting:session_list")).content.decode()
    assert "a browser terminal" in page and running_server.name in page
    assert browser.post(reverse("hosting:session_end", args=[row.pk])).status_code == 302
    assert "You ended this on the Sessions page" in shell.closed_reason(10)


def test_an_admin_watches_read_only_the_user_is_told_and_an_admin_can_end_it(gateway, running_server, alice, admin):
    started = gateway()
    _, alices = session_cookie(alice)
    shell = Shell(open_ws(started.url(running_server.pk), alices))
    shell.type("echo before-watch\r")
    shell.expect("before-watch")
    admin_browser, admins = session_cookie(admin)
    row = TerminalSession.objects.get()
    watch = open_ws(f"ws://127.0.0.1:{started.port}/ws/terminals/{row.pk}/watch/", admins)
    assert shell.next_message("status", where=lambda message: message["watchers"] == 1)
    seen = b""
    watch.send(b"echo typed-by-the-watcher\r")  # read-only: ignored
    shell.type("echo while-watched\r")
    deadline = time.monotonic() + 15
    while b"while-watched" not in seen and time.monotonic() < deadline:
        try:
            message = watch.recv(timeout=0.5)
            seen += message if isinstance(message, bytes) else b""
        except TimeoutError:
            pass
    assert b"before-watch" in seen and b"while-watched" in seen  # the scrollback, then live
    assert b"typed-by-the-watcher" not in shell.output
    assert ActivityLog.objects.filter(action=Action.TERMINAL_WATCHED, user=admin).exists()
    assert admin_browser.post(f"/admin/terminals/{row.pk}/end/").status_code == 302
    assert "administrator ended" in shell.closed_reason(10)
    wait_until(lambda: ActivityLog.objects.filter(action=Action.TERMINAL_ENDED).count() == 2,
               what="the end asked for, then done, in the activity log")


def _rss_kib(pid):
    return int(next(line.split()[1] for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:")))


def test_a_flood_neither_grows_the_gateway_nor_slows_another_terminal(gateway, running_server, alice, make_server, bob):
    started = gateway()
    flooder = shell_for(started, running_server, alice)
    flooder.type("cat /dev/urandom | base64\r")
    time.sleep(2)
    before = _rss_kib(started.process.pid)
    bobs_server = make_server(name="quiet", owner=bob)
    wait_until(lambda: bobs_server.refresh_from_db() or bobs_server.state == "running", what="bob's server")
    quiet = shell_for(started, bobs_server, bob)
    # The flood is not read for 10 s (a slow browser): it waits in the server, not in the gateway.
    delays = []
    for n in range(10):
        sent = time.monotonic()
        quiet.type(f"echo ping-{n}\r")
        quiet.expect(f"\rping-{n}\r\n")
        delays.append(time.monotonic() - sent)
        time.sleep(1)
    after = _rss_kib(started.process.pid)
    assert after - before < 20 * 1024, f"the gateway grew {after - before} KiB"
    assert max(delays) < 1.0, delays
    flooder.type("\x03")


def test_the_gateway_killed_mid_session_leaves_no_process_in_the_server(gateway, running_server, alice, real_docker):
    started = gateway()
    shell = shell_for(started, running_server, alice)
    shell.type("sleep 600 & echo started-$((1+1))\r")
    shell.expect("started-2")
    assert "sleep 600" in processes_in(real_docker, running_server)
    os.kill(started.process.pid, signal.SIGKILL)
    with pytest.raises((ConnectionClosed, TimeoutError, OSError)):
        for _ in range(40):
            shell.ws.recv(timeout=0.5)
    wait_until(lambda: "sleep 600" not in processes_in(real_docker, running_server)
               and "controlpanel-guard" not in processes_in(real_docker, running_server), timeout=15,
               what="the shell and its jobs to end")
    assert "bash" not in processes_in(real_docker, running_server).replace("dockerd-rootless", "")


# Walls: what granted a session is asked again, and every open counts ----------------------------

def test_a_demoted_admins_terminal_into_someone_elses_server_ends(gateway, running_server, admin, django_user_model):
    started = gateway()
    other_admin = django_user_model.objects.create_user(email="second-admin@example.org", password="x", is_admin=True)
    _, cookie = session_cookie(other_admin)
    shell = Shell(open_ws(started.url(running_server.pk), cookie))
    shell.type("echo admin-inside\r")
    shell.expect("admin-inside")
    account_services.user_update(actor=admin, user=other_admin, email=other_admin.email, is_admin=False, is_active=True)
    assert "no longer have access" in shell.closed_reason(10)


def test_a_demoted_admin_stops_watching(gateway, running_server, alice, admin, django_user_model):
    started = gateway()
    _, alices = session_cookie(alice)
    shell = Shell(open_ws(started.url(running_server.pk), alices))
    shell.type("echo watched\r")
    shell.expect("watched")
    watcher = django_user_model.objects.create_user(email="watcher@example.org", password="x", is_admin=True)
    _, cookie = session_cookie(watcher)
    watch = open_ws(f"ws://127.0.0.1:{started.port}/ws/terminals/{TerminalSession.objects.get().pk}/watch/", cookie)
    assert shell.next_message("status", where=lambda message: message["watchers"] == 1)
    account_services.user_update(actor=admin, user=watcher, email=watcher.email, is_admin=False, is_active=True)
    assert "no longer have access" in Shell(watch).closed_reason(10)
    assert shell.next_message("status", where=lambda message: message["watchers"] == 0)


def test_many_opens_at_once_never_pass_the_limit(gateway, running_server, alice):
    """The review's race: 20 opens at the same moment all got a shell against a limit of 5."""
    started = gateway(TERMINALS_PER_USER=5)
    _, cookie = session_cookie(alice)

    def open_one(_):
        ws = open_ws(started.url(running_server.pk), cookie)
        first = json.loads(ws.recv(timeout=30))
        return ws, first["type"]

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(20) as pool:
        opened = list(pool.map(open_one, range(20)))
    kinds = [kind for _, kind in opened]
    assert kinds.count("hello") == 5 and kinds.count("closed") == 15, kinds
    assert TerminalSession.objects.count() == 5
    for ws, _ in opened:
        ws.close()


@pytest.mark.parametrize("origin", ["http://testserver:9999", "https://testserver", "http://testserver.evil.example"])
def test_the_origin_must_be_the_panels_own_scheme_host_and_port(origin, gateway, running_server, alice):
    started = gateway()
    _, cookie = session_cookie(alice)
    with pytest.raises(InvalidStatus) as refused:
        open_ws(started.url(running_server.pk), cookie, origin)
    assert refused.value.response.status_code == 403


def test_a_resize_to_infinity_changes_nothing(gateway, running_server, alice):
    shell = shell_for(gateway(), running_server, alice)
    shell.ws.send('{"type": "resize", "rows": Infinity, "cols": -Infinity}')
    shell.ws.send('{"type": "resize", "rows": 1e999, "cols": NaN}')
    shell.type("echo still-$((6*7))\r")
    shell.expect("still-42")


def test_half_sent_handshakes_are_closed_at_their_deadline(gateway, running_server, alice):
    """The review left 200 half-sent handshakes open for 30 s; here they close at the deadline,
    and a real terminal still opens meanwhile."""
    import socket

    started = gateway(GATEWAY_HANDSHAKE_SECONDS=2)
    half = []
    for _ in range(100):
        sock = socket.create_connection(("127.0.0.1", started.port), timeout=10)
        sock.sendall(b"GET /ws/servers/1/terminal/ HTTP/1.1\r\nHost: testserver\r\nUpgrade: websocket\r\n")  # never finished
        half.append(sock)
    shell = shell_for(started, running_server, alice)
    shell.type("echo meanwhile\r")
    shell.expect("meanwhile")
    begun = time.monotonic()
    for sock in half:
        assert sock.recv(1024) == b""  # closed by the gateway
        sock.close()
    assert time.monotonic() - begun < 6
