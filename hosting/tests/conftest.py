"""Real Docker for the integration tests (marked `docker`).

Containers made here carry the instance label `controlpanel-test` and a test
prefix, so cleaning up never touches a panel running on the same engine.
"""

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker as docker_sdk
import pytest
from django.urls import reverse

from controlpanel.testing import free_port  # noqa: F401 (the tests here import it from this module)
from hosting.benchmarks import inside
from hosting.benchmarks.inside import TEST_APP_IMAGE
from hosting.backends import docker
from hosting import services
from hosting.models import Node

ROOT = Path(__file__).resolve().parents[2]
TEST_INSTANCE = "controlpanel-test"
# Beat keeps its schedule in memory in the tests that start one: its default file
# (a shelve, dbm.sqlite3 on Python 3.13) once failed a full run with SQLite's
# "locking protocol" here, and what it stores is not what those tests are about.
IN_MEMORY_SCHEDULE = ("--scheduler", "celery.beat:Scheduler")


def _remove_test_objects():
    client = docker_sdk.from_env()
    for container in client.containers.list(all=True, filters={"label": f"controlpanel.instance={TEST_INSTANCE}"}):
        container.remove(force=True)
    for volume in client.volumes.list(filters={"name": "cptest-dind-"}):
        volume.remove(force=True)
    for network in client.networks.list(names=["controlpanel-test-users"]):
        network.remove()  # made afresh by the panel, with the panel's options
    client.close()


@pytest.fixture(scope="session")
def docker_engine():
    try:
        docker.engine_ping(docker.Engine.of(Node()))  # the local engine, as the settings say
    except docker.DockerError as error:
        pytest.fail(f"{error} The integration tests need a Docker engine: `.ci/test` starts one.")
    subprocess.run([ROOT / "hosting/images/build"], check=True)
    _remove_test_objects()
    yield
    _remove_test_objects()


@pytest.fixture
def real_docker(docker_engine, settings):
    sockets = tempfile.mkdtemp(prefix="cpt-")  # short: unix socket paths max out at 108 bytes
    disks = tempfile.mkdtemp(prefix="cpt-disks-")
    settings.SERVER_CONTAINER_PREFIX = "cptest-dind-"
    settings.PANEL_INSTANCE = TEST_INSTANCE
    settings.SERVER_NETWORK = "controlpanel-test-users"
    settings.SERVER_NETWORK_SUBNET = "10.214.0.0/16"  # beside a panel's own network on the same engine
    settings.SERVER_SOCKET_ROOT = Path(sockets)
    settings.SERVER_DISK_ROOT = Path(disks)  # sparse files: only what is written takes room
    settings.SERVER_DEFAULT_DISK_MB = 2048
    settings.SERVER_DEFAULT_MEMORY_MB = 512
    settings.SERVER_DEFAULT_CPUS = 1.0
    settings.SERVER_DEFAULT_PIDS = 512
    yield docker_sdk.from_env()
    _remove_test_objects()
    for folder in (sockets, disks):  # the servers' disks and socket folders, even of a test that failed half-way
        unmount_all_below(folder)
        shutil.rmtree(folder, ignore_errors=True)


def unmount_all_below(folder):
    """Unmount every mount under `folder` (deepest first): only mounts the tests made live there."""
    with open("/proc/self/mountinfo") as mounts:
        points = [line.split()[4] for line in mounts]
    for point in sorted((p for p in points if p.startswith(folder.rstrip("/") + "/")), key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode:
            subprocess.run(["umount", "--lazy", point], capture_output=True)  # still held by a dying process: detached now


@pytest.fixture(autouse=True)
def domains_need_no_proof(settings):
    """Most tests route names at once, as a closed installation does (DOMAIN_OWNERSHIP=allowed);
    the tests of ownership proof (the default, dns) and approval say so."""
    settings.DOMAIN_OWNERSHIP = "allowed"


@pytest.fixture
def make_server(alice, committed):
    """make_server(name=..., owner=..., **fields): a virtual server made the way users make
    one (the service, then the worker's task), with `fields` then set on its row for
    states a test needs. Docker is whatever the test asked for: fake_docker or real_docker."""

    def make(name="alice web", owner=None, **fields):
        with committed():
            server = services.server_create(owner=owner or alice, name=name)
        if fields:
            type(server).objects.filter(pk=server.pk).update(**fields)
        server.refresh_from_db()
        return server

    return make


@pytest.fixture
def server(make_server, fake_docker):
    """Alice's running virtual server, with Docker faked (fast tests)."""
    return make_server()


@pytest.fixture
def running_server(make_server, real_docker):
    """Alice's virtual server on the real engine, its inner daemon answering, the test app image loaded."""
    server = make_server()
    assert server.state == "running", server.last_error
    inner_daemon_answers(server)
    inside.image_copy_to_inner(TEST_APP_IMAGE, str(server.socket_dir))
    return server


def panel_env(settings, **extra):
    """The environment of a second panel process (a worker, the gateway) that shares this
    test's database, Redis, secret key and Docker settings. Needs PostgreSQL: the test's
    rows must be committed (django_db(transaction=True)) for it to see them."""
    import os

    from django.db import connection

    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.fail("This test runs a second panel process on PostgreSQL and Redis: run it with .ci/test")
    return {
        **os.environ,
        "DATABASE_URL": f"postgres:///{connection.settings_dict['NAME']}",
        "SECRET_KEY": settings.SECRET_KEY,
        "SERVER_CONTAINER_PREFIX": settings.SERVER_CONTAINER_PREFIX,
        "PANEL_INSTANCE": settings.PANEL_INSTANCE,
        "SERVER_NETWORK": settings.SERVER_NETWORK,
        "SERVER_NETWORK_SUBNET": settings.SERVER_NETWORK_SUBNET,
        "SERVER_SOCKET_ROOT": str(settings.SERVER_SOCKET_ROOT),
        "SERVER_DISK_ROOT": str(settings.SERVER_DISK_ROOT),
        "SERVER_DEFAULT_DISK_MB": str(settings.SERVER_DEFAULT_DISK_MB),
        "SERVER_DEFAULT_MEMORY_MB": str(settings.SERVER_DEFAULT_MEMORY_MB),
        **{key: str(value) for key, value in extra.items()},
    }


def wait_until(predicate, timeout=30, interval=0.25, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def inner_client(server):
    """The docker SDK on a server's inner daemon, for tests to act inside it."""
    return docker_sdk.DockerClient(base_url=f"unix://{docker.inner_socket_path(server.socket_dir)}")


def inner_daemon_answers(server):
    return inside.inner_wait(str(server.socket_dir), timeout=30)


class Gateway:
    """The gateway (manage.py gateway) as its own process, on a free loopback port."""

    def __init__(self, settings, ssh_port=None, **env):
        self.port, self.ssh_port = free_port(), ssh_port or free_port()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "gateway", "--bind", f"127.0.0.1:{self.port}", "--ssh-bind", f"127.0.0.1:{self.ssh_port}"], cwd=ROOT,
            env=panel_env(settings, **{"ALLOWED_HOSTS": "testserver,localhost,127.0.0.1", "PANEL_ORIGINS": "http://testserver",
                                       "TERMINAL_CHECK_SECONDS": "0.5", **env}),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_until(self._answers, timeout=30, what="the gateway")

    def _answers(self):
        if self.process.poll() is not None:
            raise AssertionError(f"the gateway exited: {self.process.stdout.read()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def url(self, server_id, terminal=""):
        return f"ws://127.0.0.1:{self.port}/ws/servers/{server_id}/terminal/" + (f"?terminal={terminal}" if terminal else "")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError("the gateway did not stop within 20 s of SIGTERM") from None
        finally:
            print(self.process.stdout.read()[-3000:])  # shown when a test fails


@pytest.fixture
def keys(tmp_path):
    """make(name): a new ed25519 key pair for OpenSSH's client, its private key's path."""
    if not shutil.which("ssh"):
        pytest.fail("OpenSSH's client is not installed: .ci/test installs it (apt-get install openssh-client)")

    def make(name):
        path = tmp_path / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
        return path

    return make


@pytest.fixture
def gateway(real_docker, settings):
    gateways = []

    def start(**env):
        gateways.append(Gateway(settings, **env))
        return gateways[-1]

    yield start
    for started in gateways:
        started.stop()


CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "artifacts" / "e2e"


@pytest.fixture
def browser(monkeypatch):
    """Debian's Chromium, driven by Playwright (never its own downloaded browser)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: .ci/test installs it (apt-get install chromium)")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from django.db import connections
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()
        # With Playwright's loop running, the test's ORM calls got a connection of their own:
        # close it here, or the test database cannot be dropped at the end of the run.
        connections.close_all()


def shot(page, name):
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


BROWSER_PASSWORD = "browser-Tests-pass-1"


def browser_log_in(browser, base, user, **context):
    """A new browser context with `user` logged in through the login page (its password set for that)."""
    user.set_password(BROWSER_PASSWORD)
    user.save()
    page = browser.new_context(**{"viewport": {"width": 1280, "height": 1000}, **context}).new_page()
    page.goto(base + reverse("accounts:login"))
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", BROWSER_PASSWORD)
    page.click("button[type=submit]")
    return page


@pytest.fixture
def page_gateway(gateway, live_server, settings):
    """The gateway, where the pages say it is (GATEWAY_URL, allowed by the CSP)."""
    started = gateway(PANEL_ORIGINS=live_server.url)
    url = f"ws://localhost:{started.port}"
    settings.GATEWAY_URL = url
    settings.SECURE_CSP = {**settings.SECURE_CSP, "connect-src": ["'self'", url]}
    return started


class Caddy:
    """A real Caddy on loopback ports, configured only through its admin API."""

    def __init__(self, workdir):
        import json

        self.admin_port, self.http_port, self.https_port = free_port(), free_port(), free_port()
        self.workdir = workdir
        self.admin_listen = f"127.0.0.1:{self.admin_port}"
        self.boot = workdir / "boot.json"
        self.boot.write_text(json.dumps({"admin": {"listen": self.admin_listen}}))
        self.process = None

    def start(self):
        import os

        env = {**os.environ, "XDG_DATA_HOME": str(self.workdir / "data"), "XDG_CONFIG_HOME": str(self.workdir / "config")}
        self.log = open(self.workdir / "caddy.log", "ab")
        self.process = subprocess.Popen(["caddy", "run", "--config", str(self.boot)], env=env, stdout=self.log, stderr=self.log)
        import requests

        wait_until(lambda: _answers(requests, f"http://{self.admin_listen}/config/"), timeout=15, what="Caddy's admin API")

    def stop(self):
        if self.process:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
            self.log.close()

    def get(self, host, path="/", https=False):
        """A request through Caddy with this Host (and SNI), trusting Caddy's own CA."""
        import requests

        if https:
            return _https_get(self, host, path)
        return requests.get(f"http://127.0.0.1:{self.http_port}{path}", headers={"Host": host}, timeout=10, allow_redirects=False)

    @property
    def root_ca(self):
        return self.workdir / "data/caddy/pki/authorities/local/root.crt"


def _answers(requests, url):
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


def _https_get(caddy, host, path):
    """HTTPS with SNI = host to 127.0.0.1, certificate verified against Caddy's root."""
    import http.client
    import socket
    import ssl

    context = ssl.create_default_context(cafile=str(caddy.root_ca))
    raw = socket.create_connection(("127.0.0.1", caddy.https_port), timeout=10)
    tls = context.wrap_socket(raw, server_hostname=host)
    connection = http.client.HTTPConnection(host, caddy.https_port)
    connection.sock = tls
    connection.request("GET", path, headers={"Host": host})
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    return response.status, body


@pytest.fixture
def caddy(settings, tmp_path):
    server = Caddy(tmp_path)
    server.start()
    settings.CADDY_ADMIN_URL = f"http://{server.admin_listen}"
    settings.CADDY_ADMIN_LISTEN = server.admin_listen
    settings.CADDY_HTTP_PORT = server.http_port
    settings.CADDY_HTTPS_PORT = server.https_port
    settings.CADDY_LISTEN_HOST = "127.0.0.1"
    settings.CADDY_TLS_ISSUER = "internal"
    yield server
    server.stop()
