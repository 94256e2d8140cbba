"""Any input to any form: a page or a field error, never a 500, never half-saved (hypothesis)."""

import json
import subprocess

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from accounts import services as account_services
from accounts.models import User
from controlpanel.testing import was_refused
from hosting.backends import caddy
from hosting.models import Domain, VirtualServer

pytestmark = pytest.mark.django_db
PROPERTY = hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ANY_TEXT = st.text(max_size=300) | st.sampled_from(["<script>alert(1)</script>", "' OR 1=1 --", "\x00", "😀" * 40, " ", "a" * 5000])
OK = (200, 302, 400, 429)


@PROPERTY
@given(name=ANY_TEXT)
def test_server_names(as_alice, alice, name):
    before = VirtualServer.objects.count()
    response = as_alice.post(reverse("hosting:server_create"), {"name": name})
    assert response.status_code in OK
    created = VirtualServer.objects.count() - before
    assert created == (0 if was_refused(as_alice, response) else 1)
    if created:
        server = VirtualServer.objects.latest("pk")
        assert server.name == name.strip() and 1 <= len(server.name) <= 64
        server.delete()


@PROPERTY
@given(code=ANY_TEXT, email=ANY_TEXT | st.emails(), password=ANY_TEXT)
def test_signup(client, admin, code, email, password):
    account_services.registration_code_generate(admin=admin)
    users = User.objects.count()
    response = client.post(reverse("accounts:signup"), {"code": code, "email": email, "password1": password, "password2": password})
    assert response.status_code in OK
    assert User.objects.count() == users, "only a real code signs anyone up"


@PROPERTY
@given(email=ANY_TEXT | st.emails(), password=ANY_TEXT)
def test_signup_with_a_real_code(client, admin, email, password):
    code = account_services.registration_code_generate(admin=admin).code
    users = User.objects.count()
    response = client.post(reverse("accounts:signup"), {"code": code, "email": email, "password1": password, "password2": password})
    assert response.status_code in OK
    if response.status_code == 302:
        user = User.objects.get(email=email.strip().lower())
        assert user.check_password(password)
        user.delete()
    assert User.objects.count() == users
    client.logout()


@PROPERTY
@given(email=ANY_TEXT, password=ANY_TEXT)
def test_login(client, alice, email, password):
    assert client.post(reverse("accounts:login"), {"username": email, "password": password}).status_code in OK


DOMAINISH = st.from_regex(r"\A[a-zA-Z0-9äöüß*-]{1,20}(\.[a-zA-Z0-9-]{1,20}){1,3}\.?\Z", fullmatch=True)


@PROPERTY
@given(name=ANY_TEXT | DOMAINISH, port=st.integers(-5, 70000) | ANY_TEXT, ssl=st.booleans(), cloudflare=st.booleans())
def test_domains(as_alice, server, monkeypatch, name, port, ssl, cloudflare):
    monkeypatch.setattr(caddy, "_admin", lambda *a, **k: "{}")
    data = {"name": name, "port": port}
    if ssl:
        data["ssl"] = "on"
    if cloudflare:
        data["cloudflare"] = "on"
    before = Domain.objects.count()
    response = as_alice.post(reverse("hosting:domain_add", args=[server.pk]), data)
    assert response.status_code in OK
    assert Domain.objects.count() - before == (0 if was_refused(as_alice, response) else 1)
    Domain.objects.filter(server=server).delete()


@PROPERTY
@given(memory=st.integers(-10, 10**7) | ANY_TEXT, cpus=st.decimals(allow_nan=True) | ANY_TEXT, pids=st.integers(-10, 10**8) | ANY_TEXT)
def test_limits(as_admin, server, memory, cpus, pids):
    response = as_admin.post(reverse("hosting:server_limits", args=[server.pk]), {"memory_mb": memory, "cpus": cpus, "pids_limit": pids})
    assert response.status_code in OK


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(DOMAINISH, min_size=1, max_size=8))
def test_every_accepted_domain_passes_caddy_validate(server, tmp_path, names):
    from django.core.exceptions import ValidationError

    from hosting.domain_names import normalize_domain

    accepted = set()
    for name in names:
        try:
            accepted.add(normalize_domain(name, allow_wildcard=True))
        except ValidationError:
            pass
    Domain.objects.all().delete()
    Domain.objects.bulk_create(Domain(name=n, server=server, ssl=False) for n in accepted)
    path = tmp_path / "caddy.json"
    path.write_text(json.dumps(caddy.render()))
    result = subprocess.run(["caddy", "validate", "--config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, (accepted, result.stderr[-1000:])


LIST_PAGES = ["hosting:admin_server_list", "hosting:admin_domain_list", "accounts:user_list", "accounts:activity_list",
              "accounts:account", "hosting:server_list", "hosting:domain_check", "hosting:admin_host", "hosting:admin_dashboard"]
QUERY_KEYS = ["q", "page", "cpage", "state", "owner", "sort", "user", "action", "date_from", "date_to", "pending", "name"]
QUERY_VALUES = ANY_TEXT | st.sampled_from(["²", "٣", "-5", "0", "9" * 30, "1e9", "busy", "failed", "2026-02-30", "on"])


@PROPERTY
@given(page=st.sampled_from(LIST_PAGES), query=st.dictionaries(st.sampled_from(QUERY_KEYS), QUERY_VALUES, max_size=5))
def test_any_query_string_on_any_page(as_admin, server, page, query):
    assert as_admin.get(reverse(page), query).status_code in (200, 400)
    assert as_admin.get(reverse("hosting:server_detail", args=[server.pk]), query).status_code == 200
