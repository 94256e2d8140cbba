"""Domains through a real Caddy to real virtual servers' inner web servers."""

import json

import pytest
import requests
from django.core.exceptions import ValidationError
from django.db import connection

from controlpanel.testing import run_in_threads
from hosting.benchmarks import inside
from hosting.backends import caddy as caddy_config
from hosting import services
from hosting.services import domains
from hosting.models import Domain

from .conftest import (
    TEST_APP_IMAGE,
    free_port,
    inner_client,
    inner_daemon_answers,
    wait_until,
)

pytestmark = [pytest.mark.django_db, pytest.mark.docker, pytest.mark.usefixtures("eager_tasks")]


@pytest.fixture
def web_server(running_server):
    """A running virtual server with busybox httpd inside, published on the server's port 80."""
    server = running_server
    inside.inner_container_run(str(server.socket_dir), TEST_APP_IMAGE, ["httpd", "-f", "-p", "8080", "-h", "/www"],
                               name="site", ports={"8080/tcp": 80})
    wait_until(lambda: _direct(server), what="the inner web server")
    return server


def _direct(server):
    try:
        return requests.get(f"http://{server.ip_address}:80/", timeout=1).ok
    except requests.RequestException:
        return False


def test_a_domain_routes_to_the_inner_web_server_then_404_after_removal(caddy, web_server, alice):
    domain = domains.domain_add(actor=alice, server=web_server, name="site.example.org", ssl=False)
    response = caddy.get("site.example.org")
    assert response.status_code == 200 and "hello from the test app" in response.text

    assert caddy.get("unknown.example.org").status_code == 404
    assert "No site is configured" in caddy.get("unknown.example.org").text

    domains.domain_remove(actor=alice, domain=domain)
    assert caddy.get("site.example.org").status_code == 404


def test_a_stopped_server_gives_a_clear_server_stopped_page(caddy, web_server, alice, committed):
    domains.domain_add(actor=alice, server=web_server, name="stopped.example.org", ssl=False)
    with committed():
        services.server_stop(actor=alice, server=web_server)
    web_server.refresh_from_db()
    assert web_server.ip_address is None  # nobody's address to route to
    response = caddy.get("stopped.example.org")
    assert response.status_code == 503
    assert "server is stopped" in response.text and "control panel" in response.text


def test_https_with_caddys_internal_ca(caddy, web_server, alice):
    domains.domain_add(actor=alice, server=web_server, name="secure.example.org", ssl=True)
    redirect = caddy.get("secure.example.org", "/x?y=1")
    assert redirect.status_code == 308
    assert redirect.headers["Location"] == f"https://secure.example.org:{caddy.https_port}/x?y=1"
    status, body = wait_until(lambda: _try_https(caddy, "secure.example.org"), timeout=20, what="a certificate")
    assert status == 200 and "hello from the test app" in body


def _try_https(caddy, host):
    import ssl

    try:
        return caddy.get(host, https=True)
    except (ssl.SSLError, OSError):
        return None


def test_cloudflare_sites_only_answer_cloudflare(caddy, web_server, alice):
    domains.domain_add(actor=alice, server=web_server, name="cf.example.org", ssl=True, cloudflare=True)
    status, body = wait_until(lambda: _try_https(caddy, "cf.example.org"), timeout=20, what="a certificate")
    assert status == 403 and "only reachable through Cloudflare" in body


def test_caddy_down_fails_cleanly_and_the_drift_task_restores_every_route(caddy, web_server, alice):
    domains.domain_add(actor=alice, server=web_server, name="one.example.org", ssl=False)
    caddy.stop()
    with pytest.raises(ValidationError, match="not reachable"):
        domains.domain_add(actor=alice, server=web_server, name="two.example.org", ssl=False)
    assert list(Domain.objects.values_list("name", flat=True)) == ["one.example.org"]

    caddy.start()  # comes back with its boot configuration: no sites at all
    with pytest.raises(requests.ConnectionError):
        caddy.get("one.example.org")
    from hosting import tasks

    assert tasks.proxy_reapply_if_drifted.apply().get() is True
    assert "hello from the test app" in caddy.get("one.example.org").text
    assert tasks.proxy_reapply_if_drifted.apply().get() is False  # nothing drifted since


def test_a_refused_configuration_changes_nothing_and_the_old_one_keeps_serving(caddy, web_server, alice, monkeypatch):
    domains.domain_add(actor=alice, server=web_server, name="keep.example.org", ssl=False)
    original = caddy_config.render

    def broken():
        config = original()
        config["apps"]["http"]["servers"]["plain"]["routes"].insert(0, {"handle": [{"handler": "no_such_handler"}]})
        return config

    monkeypatch.setattr(caddy_config, "render", broken)
    with pytest.raises(ValidationError, match="refused"):
        domains.domain_add(actor=alice, server=web_server, name="new.example.org", ssl=False)
    assert not Domain.objects.filter(name="new.example.org").exists()
    assert "hello from the test app" in caddy.get("keep.example.org").text


def test_every_accepted_domain_passes_caddy_validate(caddy, web_server, alice, admin, settings, tmp_path):
    import subprocess

    for name, user in [("plain.example.org", alice), ("bücher.example", alice), ("例え.jp", alice), ("*.wild.example.org", admin)]:
        from hosting.domain_names import normalize_domain

        domains.domain_add(actor=user, server=web_server, name=normalize_domain(name, allow_wildcard=user.is_admin), ssl=False)
    path = tmp_path / "rendered.json"
    path.write_text(json.dumps(caddy_config.render()))
    result = subprocess.run(["caddy", "validate", "--config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.django_db(transaction=True)
def test_parallel_additions_all_end_up_in_the_final_config(caddy, web_server, alice):
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL (row locks): run it with .ci/test")
    alice.server_quota = 10
    alice.save()
    from django.conf import settings as live_settings

    live_settings.DOMAINS_PER_SERVER = 100
    errors = []

    def add(n):
        try:
            domains.domain_add(actor=alice, server=web_server, name=f"p{n}.example.org", ssl=False)
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    run_in_threads(add, range(20), timeout=60)
    assert not errors, errors
    hosts = {h for route in caddy_config.current()["apps"]["http"]["servers"]["plain"]["routes"] for m in route.get("match", []) for h in m.get("host", [])}
    assert {f"p{n}.example.org" for n in range(20)} <= hosts


def test_caddys_admin_api_over_a_unix_socket(tmp_path, settings, alice, make_server, fake_docker):
    """Production keeps Caddy's admin API off the network: a unix socket only the panel shares."""
    import json as json_module
    import subprocess

    socket_path = tmp_path / "admin.sock"
    boot = tmp_path / "boot.json"
    boot.write_text(json_module.dumps({"admin": {"listen": f"unix/{socket_path}"}}))
    process = subprocess.Popen(["caddy", "run", "--config", str(boot)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={"XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    try:
        wait_until(socket_path.exists, timeout=15, what="Caddy's admin socket")
        settings.CADDY_ADMIN_URL = f"unix://{socket_path}"
        settings.CADDY_ADMIN_LISTEN = f"unix/{socket_path}"
        settings.CADDY_LISTEN_HOST = "127.0.0.1"
        settings.CADDY_HTTP_PORT, settings.CADDY_HTTPS_PORT = free_port(), free_port()
        server = make_server(name="row only", ip_address="192.0.2.10")
        domains.domain_add(actor=alice, server=server, name="sock.example.org", ssl=False)
        assert "sock.example.org" in json_module.dumps(caddy_config.current())
    finally:
        process.terminate()
        process.wait(10)


def test_from_inside_a_server_nothing_else_is_reachable(caddy, web_server, bob, committed, live_server, real_docker, settings):
    """From server A (and from a container inside it): not B's web server, not B's Docker API, not
    Redis, PostgreSQL, Caddy's admin API or the panel's web port. Caddy still reaches B."""
    from urllib.parse import urlsplit

    with committed():
        attacker = services.server_create(owner=bob, name="attacker")
    attacker.refresh_from_db()
    inner_daemon_answers(attacker)
    container = real_docker.containers.get(attacker.container_name)
    gateway = container.attrs["NetworkSettings"]["Networks"][settings.SERVER_NETWORK]["Gateway"]
    panel_port = urlsplit(live_server.url).port
    targets = {
        "B's web server": (web_server.ip_address, 80),
        "B's Docker API": (web_server.ip_address, 2375),
        "Redis": (gateway, 6379),
        "PostgreSQL": (gateway, 5432),
        "Caddy's admin API": (gateway, caddy.admin_port),
        "the panel": (gateway, panel_port),
    }
    # The DinD image has bash; /dev/tcp is enough to tell whether a port answers.
    for what, (host, port) in targets.items():
        code, _ = container.exec_run(["timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"])
        assert code != 0, f"{what} is reachable from inside another server"
    # ...and from a container inside the attacker's server.
    inside.image_copy_to_inner(TEST_APP_IMAGE, str(attacker.socket_dir))
    inner = inner_client(attacker)
    output = inner.containers.run(TEST_APP_IMAGE, ["sh", "-c", f"wget -q -T 3 -O - http://{web_server.ip_address}/ || echo BLOCKED"], remove=True)
    assert b"BLOCKED" in output and b"hello" not in output
    # The host (where Caddy runs) still reaches B.
    assert requests.get(f"http://{web_server.ip_address}/", timeout=5).ok

