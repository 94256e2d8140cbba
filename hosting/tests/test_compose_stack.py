"""The docker-compose deployment, end to end, from images built here (deploy/offline).

One long journey through the stack as its users meet it, over HTTP: an admin
made with `docker compose run`, a registration code, a sign-up, a server
created and running, a container inside it listed, a domain served by the
stack's Caddy, an admin's limit change applied by the worker, a terminal
through the gateway. Then `restart`, `down` + `up`, and a backup, a wipe
(`down -v`) and a restore: everything is still there and still serves.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urljoin

import docker as docker_sdk
import pytest
import requests
from websockets.sync.client import connect

from hosting.benchmarks import inside

from .conftest import TEST_APP_IMAGE, free_port, unmount_all_below, wait_until

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "cpcompose"
PREFIX = "cpcompose-dind-"
NETWORK = "cpcompose-users"
PASSWORD = "Compose-journey-42"


class Browser(requests.Session):
    """A browser behind the TLS proxy in front of the web service: X-Forwarded-Proto
    says https, and its Secure cookies go back over the plain HTTP the proxy speaks."""

    def prepare_request(self, request):
        prepared = super().prepare_request(request)
        prepared.headers["Cookie"] = "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.cookies)
        return prepared

    def request(self, method, url, **kwargs):
        """Redirects followed here, so that each request is prepared (with its cookies) as above."""
        kwargs["allow_redirects"] = False
        response = super().request(method, url, **kwargs)
        while response.is_redirect:
            response = super().request("GET", urljoin(response.url, response.headers["Location"]),
                                       allow_redirects=False, timeout=kwargs.get("timeout"))
        return response


class Stack:
    """The compose project, driven as an operator would, and a browser-like client of its web service."""

    def __init__(self, folder):
        self.folder = folder
        self.ports = {name: free_port() for name in ("web", "gateway", "ssh", "http", "https")}
        self.socket_root = folder / "servers"
        self.socket_root.mkdir()
        (folder / "disks").mkdir()
        settings = {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
            "REDIS_PASSWORD": secrets.token_urlsafe(16),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CSRF_TRUSTED_ORIGINS": f"https://127.0.0.1:{self.ports['web']}",
            "SECURE_SSL_REDIRECT": "false",  # the test speaks plain HTTP, as the reverse proxy would to it
            "SECURE_HSTS_SECONDS": "0",
            "SECURE_HSTS_PRELOAD": "false",
            "PANEL_INSTANCE": PROJECT,
            "SERVER_IMAGE": "controlpanel/dind:local-5",
            "SERVER_CONTAINER_PREFIX": PREFIX,
            "SERVER_NETWORK": NETWORK,
            "SERVER_NETWORK_SUBNET": "10.221.0.0/16",
            "SERVER_SOCKET_ROOT": str(self.socket_root),
            "SERVER_DISK_ROOT": str(folder / "disks"),
            "SERVER_DEFAULT_DISK_MB": "1024",
            "SERVER_DEFAULT_MEMORY_MB": "384",
            "MONITOR_INTERVAL": "15",
            "CADDY_HTTP_PORT": str(self.ports["http"]),
            "CADDY_HTTPS_PORT": str(self.ports["https"]),
            "CADDY_TLS_ISSUER": "internal",
            "PLATFORM_DOMAIN": "apps.test",
            "DOMAIN_OWNERSHIP": "allowed",
            "GATEWAY_URL": f"ws://127.0.0.1:{self.ports['gateway']}",
            "SSH_PUBLIC_HOST": "127.0.0.1",
        }
        self.env_file = folder / "panel.env"
        self.env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        self.env = {**os.environ, **settings, "PANEL_ENV_FILE": str(self.env_file),
                    "PANEL_BIND": f"127.0.0.1:{self.ports['web']}", "GATEWAY_PUBLISH": f"127.0.0.1:{self.ports['gateway']}",
                    "SSH_PUBLISH": f"127.0.0.1:{self.ports['ssh']}"}
        self.url = f"http://127.0.0.1:{self.ports['web']}"

    def compose(self, *args, timeout=600, check=True, stdin=None):
        result = subprocess.run(
            ["docker-compose", "-p", PROJECT, "-f", str(ROOT / "docker-compose.yml"),
             "-f", str(ROOT / "deploy/offline/docker-compose.offline.yml"), *args],
            cwd=ROOT, env=self.env, capture_output=True, timeout=timeout, input=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} failed:\n{result.stderr.decode(errors='replace')[-3000:]}")
        return result

    def logs(self):
        return self.compose("logs", "--no-color", "--tail", "40", check=False).stdout.decode(errors="replace")[-12000:]

    def up(self, *services):
        self.compose("up", "-d", "--no-build", *services)
        assert wait_until(self._answers, timeout=180, what="the stack's web service"), self.logs()

    def _answers(self):
        try:
            return requests.get(self.url + "/login/", timeout=3).status_code == 200
        except requests.RequestException:
            return False

    def browser(self):
        session = Browser()
        session.headers.update({"X-Forwarded-Proto": "https", "Referer": f"https://127.0.0.1:{self.ports['web']}/"})
        return session

    def post(self, session, page, data, action=None):
        """A form as the page renders it: its CSRF token, then the POST."""
        text = session.get(self.url + page, timeout=30).text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text).group(1)
        return session.post(self.url + (action or page), data={"csrfmiddlewaretoken": token, **data}, timeout=60)

    def log_in(self, email, password):
        session = self.browser()
        response = self.post(session, "/login/", {"username": email, "password": password})
        assert response.ok and "Log out" in response.text, response.text[-2000:]
        return session

    def site(self, name):
        try:
            return requests.get(f"http://127.0.0.1:{self.ports['http']}/", headers={"Host": name}, timeout=5).text
        except requests.RequestException as error:
            return str(error)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not shutil.which("docker-compose"):
        pytest.fail("docker-compose is not installed: .ci/test installs it")
    build = subprocess.run([str(ROOT / "deploy/offline/build")], capture_output=True, timeout=1800)
    assert build.returncode == 0, build.stderr.decode(errors="replace")[-3000:]
    folder = tmp_path_factory.mktemp("compose")
    # The worker's mounts (disks, socket folders) reach the host through a shared mount, as
    # systemd's / is: this folder is made one, here only.
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    subprocess.run(["mount", "--make-rshared", str(folder)], check=True)
    stack = Stack(folder)
    try:
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", check=False)
        _remove_servers(folder)
        unmount_all_below(str(folder))
        subprocess.run(["umount", str(folder)])


def _remove_servers(folder):
    """The virtual servers the stack made (they are not compose's): containers, volumes, network, sockets."""
    client = docker_sdk.from_env()
    for container in client.containers.list(all=True, filters={"label": f"controlpanel.instance={PROJECT}"}):
        container.remove(force=True)
    for volume in client.volumes.list(filters={"label": f"controlpanel.instance={PROJECT}"}):
        volume.remove(force=True)
    for network in client.networks.list(names=[NETWORK]):
        network.remove()
    unmount_all_below(str(folder / "servers"))
    unmount_all_below(str(folder / "disks"))
    subprocess.run(["rm", "-rf", str(folder / "servers"), str(folder / "disks")])


def test_the_stack_from_first_admin_to_restore(stack, tmp_path):
    stack.up()

    # The first administrator, made the way the README says.
    made = stack.compose("run", "--rm", "-T", "web", "python", "manage.py", "create_admin", "admin@example.org")
    admin_password = re.search(rb"Password \(shown only now\): (\S+)", made.stdout).group(1).decode()
    admin = stack.log_in("admin@example.org", admin_password)
    page = stack.post(admin, "/", {"max_uses": "1"}, action="/admin/code/generate/").text
    code = re.search(r"New registration code (\w{8}) is ready", page).group(1)

    # A student signs up with it and creates a server; the worker makes it, it runs.
    student = stack.browser()
    response = stack.post(student, "/signup/", {"code": code, "email": "student@example.org",
                                                "password1": PASSWORD, "password2": PASSWORD})
    assert response.ok and "Log out" in response.text, response.text[-2000:]
    response = stack.post(student, "/servers/", {"name": "site"}, action="/servers/new/")
    server_id = int(re.search(r"/servers/(\d+)/", response.url).group(1))
    server_page = f"/servers/{server_id}/"
    assert wait_until(lambda: "state-running" in student.get(stack.url + server_page).text, timeout=120,
                      what="the server to run"), stack.logs()
    container_name = f"{PREFIX}{server_id}"
    socket_dir = str(stack.socket_root / str(server_id))

    # A container inside, published on port 80: the page lists it after a poll.
    inside.inner_wait(socket_dir)
    inside.image_copy_to_inner(TEST_APP_IMAGE, socket_dir)
    inside.inner_container_run(socket_dir, TEST_APP_IMAGE, ["httpd", "-f", "-p", "8080", "-h", "/www"],
                               name="web", ports={"8080/tcp": 80})
    assert wait_until(lambda: TEST_APP_IMAGE in student.get(stack.url + server_page).text, timeout=90,
                      what="the inner container on the page"), stack.logs()

    # A domain, served by the stack's Caddy.
    response = stack.post(student, server_page, {"name": "site.apps.test", "port": "80"},
                          action=f"/servers/{server_id}/domains/add/")
    assert response.ok, response.text[-2000:]
    assert wait_until(lambda: "hello from the test app" in stack.site("site.apps.test"), timeout=60,
                      what="the domain through Caddy"), stack.site("site.apps.test") + stack.logs()

    # An admin's limit change: saved by the web tier, applied by the worker.
    stack.post(admin, server_page, {"memory_mb": "512", "cpus": "0.5", "pids_limit": "512"},
               action=f"/servers/{server_id}/limits/")
    assert wait_until(lambda: docker_sdk.from_env().api.inspect_container(container_name)["HostConfig"]["Memory"] == 512 * 2**20,
                      timeout=60, what="the new memory limit on the container"), stack.logs()

    # A terminal through the gateway.
    _terminal(stack, student, server_id, "echo compose-$((40+2))", b"compose-42")

    def everything_is_there():
        again = stack.log_in("student@example.org", PASSWORD)
        page = again.get(stack.url + server_page).text
        assert "state-running" in page and "site.apps.test" in page, page[-3000:]
        assert wait_until(lambda: "hello from the test app" in stack.site("site.apps.test"), timeout=90,
                          what="the domain after the restart"), stack.logs()
        activity = stack.log_in("admin@example.org", admin_password).get(stack.url + "/admin/activity/").text
        assert "student@example.org" in activity and "Created virtual server" in activity

    stack.compose("restart")
    stack.up()
    everything_is_there()

    stack.compose("down")
    stack.up()
    everything_is_there()

    # Backup (README: Operations), wipe every volume of the stack, restore.
    backup = tmp_path / "backup"
    backup.mkdir()
    _backup(stack, backup)
    stack.compose("down", "-v")
    _restore(stack, backup)
    everything_is_there()
    assert docker_sdk.from_env().containers.get(container_name).status == "running"  # the server never stopped


def _terminal(stack, session, server_id, command, expect):
    cookie = session.cookies.get("sessionid")
    url = f"ws://127.0.0.1:{stack.ports['gateway']}/ws/servers/{server_id}/terminal/"
    seen = b""
    with connect(url, additional_headers={"Cookie": f"sessionid={cookie}", "Origin": f"https://127.0.0.1:{stack.ports['web']}"},
                 open_timeout=30) as ws:
        json.loads(ws.recv(timeout=30))  # hello
        ws.send(f"{command}\r".encode())
        deadline = time.monotonic() + 30
        while expect not in seen and time.monotonic() < deadline:
            message = ws.recv(timeout=30)
            seen += message if isinstance(message, bytes) else b""
    assert expect in seen, seen[-2000:]  # the echo of the command line says compose-$((40+2))


def _backup(stack, folder):
    """What README: Operations says: the database dump, and the panel's data volume as a tar."""
    dump = stack.compose("exec", "-T", "db", "pg_dump", "-U", "controlpanel", "--format=custom", "controlpanel").stdout
    assert len(dump) > 10_000
    (folder / "controlpanel.dump").write_bytes(dump)
    stack.compose("run", "--rm", "-T", "--no-deps", "-u", "root", "-v", f"{folder}:/backup", "--entrypoint", "tar", "web",
                  "-C", "/data", "-czf", "/backup/data.tar.gz", ".")


def _restore(stack, folder):
    stack.compose("up", "-d", "--no-build", "db")
    assert wait_until(lambda: stack.compose("exec", "-T", "db", "pg_isready", "-U", "controlpanel", check=False).returncode == 0,
                      timeout=60, what="the empty database")
    stack.compose("exec", "-T", "db", "pg_restore", "-U", "controlpanel", "-d", "controlpanel", "--clean", "--if-exists",
                  stdin=(folder / "controlpanel.dump").read_bytes())
    stack.compose("run", "--rm", "-T", "--no-deps", "-u", "root", "-v", f"{folder}:/backup", "--entrypoint", "tar", "web",
                  "-C", "/data", "-xzpf", "/backup/data.tar.gz")
    stack.up()
