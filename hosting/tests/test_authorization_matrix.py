"""Every URL × every kind of visitor, generated from the URLconf.

A URL missing from ACCESS fails `test_every_url_has_a_row`: new pages must
say who may use them.
"""

import re

import pytest
from django.test import Client
from django.urls import get_resolver, reverse

from accounts.models import SshKey
from api import services as api_services
from hosting.models import App, ContainerSnapshot, Domain, ImageSnapshot, Node, TerminalSession

pytestmark = pytest.mark.django_db

GET, POST = {"GET"}, {"POST"}
BOTH = GET | POST
# name: (who may use it, methods it answers, the object its URL names)
#   public: anyone; user: any signed-in user; owner: the object's owner (others 404) and admins; admin: admins (others 403);
#   mine: the object's owner only (everyone else, admins too, 404);
#   token: a machine with a node's join token, whoever is signed in (without one: 403);
#   api: answers API tokens, not sessions (api/tests/test_api.py holds its matrix)
ACCESS = {
    "home": ("user", GET, None),
    "accounts:login": ("public", BOTH, None),
    "accounts:logout": ("user", POST, None),
    "accounts:signup": ("public", BOTH, None),
    "accounts:password_forgot": ("public", BOTH, None),
    "accounts:password_forgot_sent": ("public", GET, None),
    "accounts:password_reset": ("public", BOTH, "reset_link"),
    "accounts:account": ("user", BOTH, None),
    "accounts:ssh_key_add": ("user", POST, None),
    "accounts:ssh_key_remove": ("mine", POST, "key"),
    "accounts:registration_code_generate": ("admin", POST, None),
    "accounts:registration_code_revoke": ("admin", POST, None),
    "accounts:user_list": ("admin", GET, None),
    "accounts:user_create": ("admin", BOTH, None),
    "accounts:user_detail": ("admin", BOTH, "user"),
    "accounts:user_set_password": ("admin", POST, "user"),
    "accounts:user_delete": ("admin", BOTH, "user"),
    "accounts:activity_list": ("admin", GET, None),
    "hosting:server_list": ("user", GET, None),
    "hosting:session_list": ("user", GET, None),
    "hosting:server_images": ("owner", GET, "server"),
    "hosting:server_images_live": ("owner", GET, "server"),
    "hosting:image_remove": ("owner", BOTH, "image"),
    "hosting:session_end": ("mine", POST, "terminal"),
    "hosting:server_create": ("user", POST, None),
    "hosting:server_list_live": ("user", GET, None),
    "hosting:server_detail": ("owner", GET, "server"),
    "hosting:server_live": ("owner", GET, "server"),
    "hosting:server_start": ("owner", POST, "server"),
    "hosting:server_stop": ("owner", POST, "server"),
    "hosting:server_restart": ("owner", POST, "server"),
    "hosting:server_rename": ("owner", POST, "server"),
    "hosting:server_delete": ("owner", BOTH, "server"),
    "hosting:server_limits": ("admin", POST, "server"),
    "hosting:server_move": ("admin", POST, "server"),
    "hosting:domain_add": ("owner", POST, "server"),
    "hosting:domain_check": ("user", GET, None),
    "hosting:app_new": ("owner", BOTH, "server"),
    "hosting:app_detail": ("owner", GET, "app"),
    "hosting:app_live": ("owner", GET, "app"),
    "hosting:app_deploy": ("owner", POST, "app"),
    "hosting:app_start": ("owner", POST, "app"),
    "hosting:app_stop": ("owner", POST, "app"),
    "hosting:app_remove": ("owner", BOTH, "app"),
    "hosting:container_logs": ("owner", GET, "container"),
    "hosting:container_start": ("owner", POST, "container"),
    "hosting:container_stop": ("owner", POST, "container"),
    "hosting:container_restart": ("owner", POST, "container"),
    "hosting:container_remove": ("owner", BOTH, "container"),
    "hosting:domain_edit": ("owner", BOTH, "domain"),
    "hosting:domain_remove": ("owner", POST, "domain"),
    "hosting:domain_check_claim": ("owner", POST, "domain"),
    "hosting:admin_domain_list": ("admin", GET, None),
    "hosting:domain_approve": ("admin", POST, "domain"),
    "hosting:admin_dashboard": ("admin", GET, None),
    "hosting:admin_dashboard_live": ("admin", GET, None),
    "hosting:admin_server_list": ("admin", GET, None),
    "hosting:admin_host": ("admin", GET, None),
    "hosting:admin_monitor_status": ("admin", GET, None),
    "hosting:admin_terminals": ("admin", GET, None),
    "hosting:terminal_watch": ("admin", GET, "terminal"),
    "hosting:terminal_end": ("admin", POST, "terminal"),
    "hosting:admin_node_list": ("admin", BOTH, None),
    "hosting:admin_node_detail": ("admin", BOTH, "node"),
    "hosting:node_token": ("admin", POST, "node"),
    "hosting:node_remove": ("admin", BOTH, "node"),
    "hosting:node_join": ("token", BOTH, None),
    "api:token_list": ("user", GET, None),
    "api:token_create": ("user", POST, None),
    "api:token_revoke": ("mine", POST, "api_token"),
    "api:admin_token_revoke": ("admin", POST, "api_token"),
    "api:schema": ("api", GET, None),
    "api:docs": ("user", GET, None),
    "api:no_route": ("api", GET, None),
    "api:server-list": ("api", GET, None),
    "api:server-detail": ("api", GET, "server"),
    "api:server-start": ("api", POST, "server"),
    "api:server-stop": ("api", POST, "server"),
    "api:server-restart": ("api", POST, "server"),
    "api:app-list": ("api", BOTH, None),
    "api:app-detail": ("api", GET, "app"),
    "api:app-deploy": ("api", POST, "app"),
    "api:app-start": ("api", POST, "app"),
    "api:app-stop": ("api", POST, "app"),
    "api:domain-list": ("api", BOTH, None),
    "api:domain-detail": ("api", GET, "domain"),
    "api:domain-check": ("api", POST, "domain"),
    "api:container-list": ("api", GET, None),
    "api:container-detail": ("api", GET, "container"),
    "api:container-start": ("api", POST, "container"),
    "api:container-stop": ("api", POST, "container"),
    "api:container-restart": ("api", POST, "container"),
    "api:ssh-key-list": ("api", BOTH, None),
    "api:ssh-key-detail": ("api", GET, "key"),
    "api:activity-list": ("api", GET, None),
    "api:admin-user-list": ("api", GET, None),
    "api:admin-user-detail": ("api", GET, "user"),
    "api:admin-server-list": ("api", GET, None),
    "api:admin-server-detail": ("api", GET, "server"),
    "api:admin-server-limits": ("api", POST, "server"),
    "api:admin-node-list": ("api", GET, None),
    "api:admin-node-detail": ("api", GET, "node"),
    "api:admin-token-list": ("api", GET, None),
    "api:admin-token-revoke": ("api", POST, "api_token"),
    "api:admin-registration-code-list": ("api", POST, None),
    "api:admin-registration-code-revoke": ("api", POST, None),
}
VISITORS = ["anonymous", "owner", "other", "admin", "disabled"]


def url_names():
    def walk(patterns, namespace=""):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                yield from walk(pattern.url_patterns, f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace)
            else:
                yield namespace + pattern.name

    return set(walk(get_resolver().url_patterns))


def test_every_url_has_a_row():
    assert url_names() == set(ACCESS)


def expected(visitor, access, allowed):
    """The status class a visitor should get for a method the view answers."""
    if access == "public":
        return "ok"
    if access == "token":
        return 403
    if visitor in ("anonymous", "disabled"):
        return "login"
    if access == "admin":
        return "ok" if visitor == "admin" else 403
    if access == "owner" and visitor == "other":
        return 404
    if access == "mine" and visitor != "owner":
        return 404
    return "ok"


@pytest.fixture
def world(alice, bob, admin, disabled, make_server, fake_docker, monkeypatch):
    from hosting.backends import caddy

    monkeypatch.setattr(caddy, "_admin", lambda *a, **k: "{}")  # domain changes reach no real Caddy
    server = make_server(name="alice's")
    domain = Domain.objects.create(name="alice.example.org", server=server)
    terminal = TerminalSession.objects.create(user=alice, server=server)
    app = App.objects.create(server=server, name="blog")
    key = SshKey.objects.create(user=alice, name="laptop", public_key="ssh-ed25519 AAAA", kind="ssh-ed25519", bits=256, fingerprint="SHA256:x")
    container = ContainerSnapshot.objects.create(server=server, docker_id="a" * 64, name="web", state="running", digest="x")
    image = ImageSnapshot.objects.create(server=server, image_id="sha256:" + "b" * 64, tags=["web:1"])
    node = Node.objects.create(name="node2", docker_url="tcp://192.0.2.10:2376")
    api_token, _ = api_services.token_create(user=alice, name="CI", scope="write", days=7)
    return {"api_token": api_token, "user": bob, "node": node, "server": server, "domain": domain, "terminal": terminal, "app": app, "container": container, "image": image, "key": key,
            "alice": alice, "bob": bob, "admin": admin, "disabled": disabled,
            "reset_link": ("MQ", "set-password")}  # an emailed link's uid and token: not valid, answered with a page that says so


def url_of(name, obj, world):
    named = world[obj] if obj else None
    return reverse(name, args=[] if named is None else named if isinstance(named, tuple) else [named.pk])


def client_for(visitor, world):
    client = Client()
    user = {"owner": world["alice"], "other": world["bob"], "admin": world["admin"], "disabled": world["disabled"]}.get(visitor)
    if user:
        client.force_login(user)
    return client


CASES = [(name, visitor) for name in sorted(ACCESS) if ACCESS[name][0] != "api" for visitor in VISITORS]


@pytest.mark.parametrize("name, visitor", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_matrix(name, visitor, world):
    access, allowed, obj = ACCESS[name]
    url = url_of(name, obj, world)
    client = client_for(visitor, world)
    # Methods the view does not answer: 405, for whoever may otherwise use it.
    if visitor == ("anonymous" if access in ("public", "token") else "admin"):
        for method in {"GET", "POST", "PUT", "DELETE"} - allowed:
            assert getattr(client, method.lower())(url).status_code == 405, method
    for method in sorted(allowed):
        response = getattr(client, method.lower())(url)
        want = expected(visitor, access, allowed)
        got = response.status_code
        if want == "login":
            assert got == 302 and response.url.startswith(reverse("accounts:login")), (method, got)
        elif want == "ok":
            assert got in (200, 302, 400), (method, got)
            if got == 302 and name != "accounts:logout":  # logging out ends on the login page
                assert not response.url.startswith(reverse("accounts:login")), (method, response.url)
        else:
            assert got == want, (method, got)


# Login and sign-up have their own CSRF tests; a node's join is a machine's, its token the credential.
@pytest.mark.parametrize("name", [n for n, (access, methods, _) in ACCESS.items()
                                  if "POST" in methods and access not in ("token", "api") and n not in ("accounts:login", "accounts:signup")])
def test_post_without_csrf_token_is_refused(name, world):
    access, _, obj = ACCESS[name]
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["admin"])
    url = url_of(name, obj, world)
    assert client.post(url).status_code == 403


def test_every_form_on_a_page_carries_the_token_that_page_set(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["alice"])
    server = world["server"]
    page = client.get(reverse("hosting:server_detail", args=[server.pk])).content.decode()
    tokens = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert len(tokens) >= 5 and len(set(tokens)) == 1  # one masked token a page, as Django's own templates give
    response = client.post(reverse("hosting:server_rename", args=[server.pk]), {"name": "renamed", "csrfmiddlewaretoken": tokens[-1]})
    assert response.status_code == 302
    server.refresh_from_db()
    assert server.name == "renamed"


def test_security_headers(client):
    response = client.get(reverse("accounts:login"))
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


def test_static_files_are_served(client):
    response = client.get("/static/css/panel.css")
    assert response.status_code == 200
    assert b"--primary" in b"".join(response.streaming_content)


def test_pages_carry_no_inline_script(as_admin, world):
    for name in ("hosting:admin_dashboard", "hosting:admin_host", "accounts:user_list"):
        page = as_admin.get(reverse(name)).content.decode()
        assert "<script>" not in page and "onclick=" not in page.lower() and "javascript:" not in page
