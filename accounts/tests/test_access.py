"""Who may do what, for every URL of the accounts app."""

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

PUBLIC = ["accounts:login", "accounts:signup"]
# (url name, needs a user id, methods it answers)
USER_PAGES = [("home", False, {"GET"}), ("accounts:account", False, {"GET", "POST"})]
ADMIN_PAGES = [
    ("accounts:registration_code_generate", False, {"POST"}),
    ("accounts:registration_code_revoke", False, {"POST"}),
    ("accounts:user_list", False, {"GET"}),
    ("accounts:user_create", False, {"GET", "POST"}),
    ("accounts:user_detail", True, {"GET", "POST"}),
    ("accounts:user_set_password", True, {"POST"}),
    ("accounts:user_delete", True, {"GET", "POST"}),
    ("accounts:activity_list", False, {"GET"}),
]


def url(name, needs_id, user):
    return reverse(name, args=[user.pk] if needs_id else [])


def test_every_accounts_url_is_in_this_table():
    from accounts.urls import urlpatterns

    listed = {name.split(":")[-1] for name, *_ in USER_PAGES + ADMIN_PAGES} | {n.split(":")[1] for n in PUBLIC} | {"logout"}
    assert {p.name for p in urlpatterns} == listed - {"home"}


@pytest.mark.parametrize("name, needs_id, methods", USER_PAGES + ADMIN_PAGES)
def test_anonymous_is_sent_to_login(client, alice, name, needs_id, methods):
    target = url(name, needs_id, alice)
    for method in methods:
        response = getattr(client, method.lower())(target)
        assert response.status_code == 302, (method, target)
        assert response.url.startswith(reverse("accounts:login") + "?next=")


@pytest.mark.parametrize("name, needs_id, methods", ADMIN_PAGES)
def test_plain_user_gets_403_on_admin_pages(as_alice, bob, name, needs_id, methods):
    target = url(name, needs_id, bob)
    for method in methods:
        assert getattr(as_alice, method.lower())(target).status_code == 403, (method, target)


@pytest.mark.parametrize("name, needs_id, methods", USER_PAGES + ADMIN_PAGES)
def test_wrong_method_is_405(as_admin, alice, name, needs_id, methods):
    target = url(name, needs_id, alice)
    for method in {"GET", "POST", "PUT", "DELETE"} - methods:
        assert getattr(as_admin, method.lower())(target).status_code == 405, (method, target)


@pytest.mark.parametrize("name", PUBLIC)
def test_public_pages_answer_anonymous(client, name):
    assert client.get(reverse(name)).status_code == 200


def test_post_without_csrf_token_is_refused(admin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    assert client.post(reverse("accounts:registration_code_generate")).status_code == 403
    assert client.post(reverse("accounts:logout")).status_code == 403


def test_security_headers(client):
    response = client.get(reverse("accounts:login"))
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


def test_static_files_are_served(client):
    response = client.get("/static/css/panel.css")
    assert response.status_code == 200
    assert b"--primary" in b"".join(response.streaming_content)
