"""Domain rules and pages (fast: Docker faked, Caddy replaced by a refusing address)."""

import pytest
from django.urls import reverse

from accounts.models import ActivityLog
from controlpanel.testing import refused_form
from hosting import services
from hosting.services import domains
from hosting.activity import Action
from hosting.backends import caddy
from hosting.domain_names import normalize_domain
from hosting.models import Domain

pytestmark = pytest.mark.django_db


@pytest.fixture
def proxy_applies(monkeypatch):
    """Record what would be loaded into Caddy instead of loading it (fast tests only)."""
    loaded = []
    monkeypatch.setattr(caddy, "_admin", lambda method, path, body=None: loaded.append((method, path)))
    return loaded


def add(client, server, **data):
    return client.post(reverse("hosting:domain_add", args=[server.pk]), {"port": 80, "ssl": "on", **data})


def refused(client, server, **data):
    """The domain form back on the server's page, with the reasons it was refused."""
    form = refused_form(client, add(client, server, **data), "domain_form")
    assert form["name"].value() == data.get("name", "")  # what was typed is still there
    return form


BAD_NAMES = [
    ("with space.com", "spaces"),
    ("x..com", "empty parts"),
    ("-lead.com", "hyphen"),
    ("a" * 64 + ".com", "too long"),
    (".".join(["a" * 63] * 3) + "." + "b" * 58 + ".com", "253"),  # 254 characters
    ("http://x.com", "without http://"),
    ("x.com:80", "without a port"),
    ("1.2.3.4", "IP addresses"),
    ("[::1]", "IP addresses"),
    ("*.x.com", "administrators only"),
    ("x.com/path", "without http:// or a path"),
    ("localhost", "at least two parts"),
    ("аpple.com", "look-alike"),  # Cyrillic а among Latin letters
    ("аррӏе.com", "look-alike"),  # all Cyrillic, posing as Latin
    ("under_score.com", "not a valid"),
    ("x.123", "cannot be a number"),
    ("", "required"),
]


@pytest.mark.parametrize("name, message", BAD_NAMES)
def test_bad_names_are_field_errors_and_nothing_is_saved(as_alice, server, proxy_applies, name, message):
    errors = " ".join(refused(as_alice, server, name=name).errors.get("name", []))
    assert message.lower() in errors.lower(), errors
    assert not Domain.objects.exists() and not proxy_applies


def test_uppercase_duplicate_of_an_existing_name_is_refused(as_alice, as_bob, bob, server, proxy_applies, fake_docker, committed):
    assert add(as_alice, server, name="Shop.Example.org.").status_code == 302
    with committed():
        other = services.server_create(owner=bob, name="other")
    assert "already in use" in " ".join(refused(as_bob, other, name="SHOP.EXAMPLE.ORG").errors["name"])
    assert Domain.objects.count() == 1


def test_good_names_are_normalised_and_shown_in_unicode(as_alice, server, proxy_applies):
    assert add(as_alice, server, name="Bücher.Example.").status_code == 302
    domain = Domain.objects.get()
    assert domain.name == "xn--bcher-kva.example"
    page = as_alice.get(reverse("hosting:server_detail", args=[server.pk])).content.decode()
    assert "bücher.example" in page
    assert proxy_applies == [("POST", "/load")]
    assert ActivityLog.objects.filter(action=Action.DOMAIN_ADDED, target="xn--bcher-kva.example").exists()


def test_admins_may_add_wildcards(as_admin, server, proxy_applies, settings):
    settings.CADDY_TLS_ISSUER = "internal"
    assert add(as_admin, server, name="*.apps.example.org").status_code == 302
    assert Domain.objects.get().name == "*.apps.example.org"


def test_nonsense_flag_combinations_are_refused_with_a_reason(as_alice, as_admin, server, proxy_applies, settings):
    settings.CADDY_TLS_ISSUER = "acme"
    assert "DNS challenge" in " ".join(refused(as_admin, server, name="*.wild.example.org").errors["ssl"])
    assert not Domain.objects.exists()


def test_cloudflare_flexible_mode_is_plain_http_behind_the_guard(as_alice, server, proxy_applies):
    assert add(as_alice, server, name="flex.example.org", ssl="", cloudflare="on").status_code == 302
    plain = caddy.render()["apps"]["http"]["servers"]["plain"]["routes"]
    assert plain[0]["match"][0]["host"] == ["flex.example.org"] and plain[0]["handle"][0]["status_code"] == 403


def test_ports_are_validated(as_alice, server, proxy_applies):
    for port in (0, 65536, "http"):
        assert "port" in refused(as_alice, server, name="p.example.org", port=port).errors
    assert not Domain.objects.exists()


def test_domain_limit_per_server(as_alice, server, proxy_applies, settings):
    settings.DOMAINS_PER_SERVER = 2
    for n in range(2):
        add(as_alice, server, name=f"s{n}.example.org")
    assert "at most 2 domains" in str(refused(as_alice, server, name="s3.example.org").errors)
    assert Domain.objects.count() == 2


def test_platform_domain_is_free_and_other_names_wait_for_approval(as_alice, as_admin, server, proxy_applies, settings):
    settings.PLATFORM_DOMAIN = "apps.example.org"
    settings.DOMAIN_OWNERSHIP = "approval"
    add(as_alice, server, name="mine.apps.example.org")
    add(as_alice, server, name="www.elsewhere.org")
    assert dict(Domain.objects.values_list("name", "status")) == {"mine.apps.example.org": "active", "www.elsewhere.org": "approval"}
    assert "www.elsewhere.org" not in str(caddy.render())
    assert "single name directly under apps.example.org" in str(refused(as_alice, server, name="a.b.apps.example.org").errors)

    pending = Domain.objects.get(name="www.elsewhere.org")
    page = as_admin.get(reverse("hosting:admin_domain_list"), {"pending": "on"}).content.decode()
    assert "www.elsewhere.org" in page and "mine.apps" not in page
    as_admin.post(reverse("hosting:domain_approve", args=[pending.pk]))
    pending.refresh_from_db()
    assert pending.is_active and "www.elsewhere.org" in str(caddy.render())


def test_caddy_down_means_nothing_is_saved(as_alice, server):
    # no_stray_caddy points the panel at a port where nothing listens.
    errors = str(refused(as_alice, server, name="down.example.org").errors)
    assert "not reachable" in errors and "Nothing was saved" in errors
    assert not Domain.objects.exists()
    assert not ActivityLog.objects.filter(action=Action.DOMAIN_ADDED).exists()


def test_edit_and_remove(as_alice, server, proxy_applies):
    add(as_alice, server, name="e.example.org")
    domain = Domain.objects.get()
    edit = reverse("hosting:domain_edit", args=[domain.pk])
    assert as_alice.get(edit).status_code == 200
    as_alice.post(edit, {"port": 8080})
    domain.refresh_from_db()
    assert (domain.port, domain.ssl) == (8080, False)
    as_alice.post(reverse("hosting:domain_remove", args=[domain.pk]))
    assert not Domain.objects.exists()
    assert ActivityLog.objects.filter(action__in=["domain_updated", "domain_removed"]).count() == 2


def test_other_peoples_servers_and_domains_are_404(as_alice, as_bob, server, proxy_applies):
    assert add(as_bob, server, name="steal.example.org").status_code == 404
    add(as_alice, server, name="mine.example.org")
    domain = Domain.objects.get()
    assert as_bob.get(reverse("hosting:domain_edit", args=[domain.pk])).status_code == 404
    assert as_bob.post(reverse("hosting:domain_remove", args=[domain.pk])).status_code == 404
    assert Domain.objects.count() == 1


def test_live_check_gives_the_forms_message(as_alice, server, proxy_applies):
    check = reverse("hosting:domain_check")
    assert "without a port" in as_alice.get(check, {"name": "x.com:80"}).content.decode()
    assert "available" in as_alice.get(check, {"name": "Free.Example.org"}).content.decode()
    add(as_alice, server, name="taken.example.org")
    assert "already in use" in as_alice.get(check, {"name": "TAKEN.example.org"}).content.decode()
    markup = as_alice.get(check, {"name": "<b>x</b>.com"}).content.decode()
    assert "check-bad" in markup and "<b>" not in markup


def test_deleting_a_server_removes_its_domains(as_alice, server, proxy_applies, committed):
    add(as_alice, server, name="gone.example.org")
    with committed():
        as_alice.post(reverse("hosting:server_delete", args=[server.pk]))
    assert not Domain.objects.exists()
    assert "gone.example.org" not in str(caddy.render())


def test_render_routes_each_domain_to_its_servers_address_and_port(server, proxy_applies, alice):
    domains.domain_add(actor=alice, server=server, name="a.example.org", port=8080, ssl=False)
    domains.domain_add(actor=alice, server=server, name="b.example.org", ssl=True, cloudflare=True)
    config = caddy.render()
    plain = config["apps"]["http"]["servers"]["plain"]["routes"]
    tls = config["apps"]["http"]["servers"]["tls"]["routes"]
    assert {"match": [{"host": ["a.example.org"]}], "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": f"{server.ip_address}:8080"}]}], "terminal": True} in plain
    assert plain[-1]["handle"][0]["status_code"] == 404  # the catch-all
    cloudflare_guard = tls[0]
    assert cloudflare_guard["match"][0]["host"] == ["b.example.org"] and cloudflare_guard["handle"][0]["status_code"] == 403
    assert config["apps"]["tls"]["automation"]["policies"][0] == {"subjects": ["b.example.org"], "issuers": [{"module": "internal"}]}


def test_normalize_keeps_good_names():
    assert normalize_domain("WWW.Example.ORG.") == "www.example.org"
    assert normalize_domain("例え.jp") == "xn--r8jz45g.jp"
    assert normalize_domain("пример.рф") == "xn--e1afmkfd.xn--p1ai"


def test_admin_domain_list_search(as_admin, server, proxy_applies, alice):
    domains.domain_add(actor=alice, server=server, name="one.example.org")
    domains.domain_add(actor=alice, server=server, name="two.example.net")
    names = lambda q: {d.name for d in as_admin.get(reverse("hosting:admin_domain_list"), {"q": q}).context["page"]}
    assert names("example.net") == {"two.example.net"}
    assert names("alice@") == {"one.example.org", "two.example.net"}
    assert names("alice web") == {"one.example.org", "two.example.net"}


def test_exact_names_come_before_wildcards_and_the_most_specific_wildcard_first(admin, server, proxy_applies, settings, make_server, fake_docker):
    settings.CADDY_TLS_ISSUER = "internal"
    other = make_server(name="catch-all")
    for name, target in [("*.example.org", other), ("*.apps.example.org", other), ("alice.apps.example.org", server),
                         ("zeta.example.org", server)]:
        domains.domain_add(actor=admin, server=target, name=name, ssl=False)
    routes = caddy.render()["apps"]["http"]["servers"]["plain"]["routes"]
    hosts = [route["match"][0]["host"][0] for route in routes if route.get("match")]
    assert hosts == ["alice.apps.example.org", "zeta.example.org", "*.apps.example.org", "*.example.org"]


def test_a_server_that_is_not_running_has_no_address_and_its_domains_say_it_is_stopped(server, fake_docker, proxy_applies, alice):
    from hosting.worker import monitor

    domains.domain_add(actor=alice, server=server, name="gone.example.org", ssl=False)
    assert server.ip_address  # running: its domains reach it
    fake_docker.containers[server.container_name] = "exited"  # stopped from outside the panel
    monitor.run_cycle()
    server.refresh_from_db()
    assert server.ip_address is None
    handler = caddy.render()["apps"]["http"]["servers"]["plain"]["routes"][0]["handle"][0]
    assert handler["status_code"] == 503 and "server is stopped" in handler["body"]
