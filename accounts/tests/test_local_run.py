"""The local run (`.ci/serve`: SQLite, no Redis) takes concurrent clicks: gunicorn with
three workers on a file database, hit by many browsers at once."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Local-run-pass-42"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def local_panel(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATA_DIR=str(tmp_path), LOGIN_FAILURE_LIMIT="5", SERVER_QUOTA_DEFAULT="5")
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
    code = subprocess.run([*manage, "shell", "-c", (
        "from accounts.models import User; from accounts import services; "
        "admin = User.objects.create_user(email='admin@example.org', password='x', is_admin=True); "
        "print(services.registration_code_generate(admin=admin).code)")],
        env=env, check=True, cwd=ROOT, capture_output=True, text=True).stdout.split()[-1]
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "controlpanel.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "3"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url + "/login/", timeout=1)
            break
        except requests.RequestException:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"gunicorn did not start: {server.communicate()[1][-2000:]}")
            time.sleep(0.2)
    yield url, code
    server.terminate()
    _, errors = server.communicate(timeout=30)
    assert "database is locked" not in errors, errors[-2000:]


def _form_post(session, url, page, data, action=None):
    """Fill in the form on `page` as a browser does: its CSRF token, then a POST to `action` (the page itself)."""
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', session.get(url + page, timeout=30).text).group(1)
    return session.post(url + (action or page), data={"csrfmiddlewaretoken": token, **data}, timeout=60, allow_redirects=False)


def test_concurrent_sign_ups_creates_and_guesses_are_never_a_500(local_panel):
    url, code = local_panel
    sessions = [requests.Session() for _ in range(10)]

    def sign_up(n):
        return _form_post(sessions[n], url, "/signup/", {
            "code": code, "email": f"student{n}@example.org", "password1": PASSWORD, "password2": PASSWORD}).status_code

    def create(n):
        return _form_post(sessions[n], url, "/servers/", {"name": f"server {n}"}, action="/servers/new/").status_code

    def guess(n):
        return _form_post(requests.Session(), url, "/login/", {"username": "student0@example.org", "password": f"wrong-{n}"}).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert list(pool.map(sign_up, range(10))) == [302] * 10
        assert list(pool.map(create, range(10))) == [302] * 10
        guesses = list(pool.map(guess, range(30)))
    assert 500 not in guesses
    assert guesses.count(200) <= 5 and guesses.count(429) >= 25, guesses  # every guess counted, none lost


@pytest.mark.docker
def test_ctrl_c_stops_everything_ci_serve_started_within_ten_seconds(tmp_path):
    """Ctrl-C in a terminal sends SIGINT to the whole process group: `.ci/serve`'s
    web server, gateway, worker, beat and Caddy all stop within 10 s."""
    ports = {name: _free_port() for name in ("web", "gateway", "ssh", "http", "https", "admin")}
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATA_DIR=str(tmp_path), BIND=f"127.0.0.1:{ports['web']}", GATEWAY_BIND=f"127.0.0.1:{ports['gateway']}",
               SSH_BIND=f"127.0.0.1:{ports['ssh']}", CADDY_HTTP_PORT=str(ports["http"]), CADDY_HTTPS_PORT=str(ports["https"]),
               CADDY_ADMIN_LISTEN=f"127.0.0.1:{ports['admin']}", CADDY_ADMIN_URL=f"http://127.0.0.1:{ports['admin']}",
               SERVER_NETWORK="controlpanel-test-users", SERVER_NETWORK_SUBNET="10.214.0.0/16", PANEL_INSTANCE="test")
    serve = subprocess.Popen([str(ROOT / ".ci/serve")], env=env, cwd=ROOT, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    group = os.getpgid(serve.pid)
    try:
        deadline = time.monotonic() + 180
        while not all(_answers(ports[name]) for name in ("web", "gateway", "ssh", "admin")):
            assert serve.poll() is None and time.monotonic() < deadline, "`.ci/serve` did not start everything"
            time.sleep(0.5)
        log = (tmp_path / "logs" / "worker.log")
        while "ready" not in log.read_text():  # the worker has connected to its broker
            assert time.monotonic() < deadline, "the worker did not get ready"
            time.sleep(0.5)
        started = _group_members(group)
        assert len(started) >= 6, started  # the script, gunicorn, gateway, worker, beat, caddy
        os.killpg(group, signal.SIGINT)
        stopped_at = time.monotonic() + 10
        while _group_members(group) and time.monotonic() < stopped_at:
            time.sleep(0.2)
        assert not _group_members(group), f"still running 10 s after Ctrl-C: {_group_members(group)}"
    finally:
        if _group_members(group):
            os.killpg(group, signal.SIGKILL)
        serve.wait(10)


def _answers(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _group_members(group):
    """The live (not zombie) processes of a process group, as {pid: command}."""
    members = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
            command, fields = rest.rsplit(") ", 1)
        except (OSError, ValueError):
            continue
        state, _, pgrp = fields.split()[:3]
        if int(pgrp) == group and state != "Z":
            members[int(pid)] = command
    return members
