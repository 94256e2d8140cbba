import bcrypt
import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from accounts.models import ActivityLog, User
from controlpanel.testing import PASSWORD

pytestmark = pytest.mark.django_db
LOGIN = reverse("accounts:login")
SAME_MESSAGE = "That email and password do not match an enabled account."


def post_login(client, email, password=PASSWORD, **extra):
    return client.post(LOGIN, {"username": email, "password": password}, **extra)


def test_login_page_is_public(client):
    response = client.get(LOGIN)
    assert response.status_code == 200
    assert b'name="username"' in response.content


def test_login_with_email_in_any_case_and_spaces(client, alice):
    response = post_login(client, "  ALICE@Example.COM ")
    assert response.status_code == 302
    assert response.url == reverse("home")
    assert int(client.session[SESSION_KEY]) == alice.pk
    entry = ActivityLog.objects.get(action=ActivityLog.Action.LOGIN)
    assert entry.user == alice


def test_login_rotates_the_session_key(client, alice):
    client.get(LOGIN)
    client.cookies["sessionid"] = "attacker-chosen-session-key"
    post_login(client, alice.email)
    assert client.cookies["sessionid"].value != "attacker-chosen-session-key"
    assert client.get(reverse("accounts:account")).status_code == 200


@pytest.mark.parametrize(
    "email, password",
    [("alice@example.com", "wrong-password"), ("nobody@example.com", PASSWORD), ("disabled@example.com", PASSWORD)],
    ids=["wrong password", "unknown email", "disabled account"],
)
def test_refusals_all_say_the_same(client, alice, disabled, email, password):
    response = post_login(client, email, password)
    assert response.status_code == 200
    assert SAME_MESSAGE in response.content.decode()
    assert SESSION_KEY not in client.session
    failed = ActivityLog.objects.get(action=ActivityLog.Action.LOGIN_FAILED)
    assert failed.email == email
    assert failed.user is None


@pytest.mark.parametrize("email, password", [
    ("alice@example.com", "wrong-password"),
    ("nobody@example.com", PASSWORD),
    ("disabled@example.com", PASSWORD),
    ("alice@example.com", PASSWORD),
])
def test_each_attempt_costs_exactly_one_bcrypt_hash(client, alice, disabled, production_hashers, monkeypatch, email, password):
    """Same work for every outcome, so timing does not tell accounts apart."""
    # Hash the cast's passwords with bcrypt first, so checks run bcrypt.
    for user in (alice, disabled):
        user.set_password(PASSWORD)
        user.save()
    calls = []
    real_hashpw = bcrypt.hashpw
    monkeypatch.setattr(bcrypt, "hashpw", lambda *a: calls.append(1) or real_hashpw(*a))
    post_login(client, email, password)
    assert len(calls) == 1


def test_legacy_raw_bcrypt_hash_logs_in_and_is_upgraded(client, production_hashers):
    legacy_hash = bcrypt.hashpw(b"old-legacy-pass", bcrypt.gensalt(12)).decode()
    assert legacy_hash.startswith("$2b$12$")
    user = User(email="legacy@example.com")
    user.set_legacy_bcrypt_hash(legacy_hash)
    user.save()

    assert post_login(client, "legacy@example.com", "wrong").status_code == 200
    response = post_login(client, "legacy@example.com", "old-legacy-pass")
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.password.startswith("bcrypt_sha256$")
    assert user.check_password("old-legacy-pass")


def test_set_legacy_hash_refuses_what_is_not_bcrypt():
    with pytest.raises(ValueError):
        User(email="x@example.com").set_legacy_bcrypt_hash("md5$abc")


def test_logout_is_post_only(as_alice, alice):
    assert as_alice.get(reverse("accounts:logout")).status_code == 405
    response = as_alice.post(reverse("accounts:logout"))
    assert response.status_code == 302
    assert as_alice.get(reverse("accounts:account")).status_code == 302
    assert ActivityLog.objects.filter(user=alice, action=ActivityLog.Action.LOGOUT).exists()
    assert not alice.sessions.exists()


def test_logged_in_user_visiting_login_goes_home(as_alice):
    assert as_alice.get(LOGIN).status_code == 302


def test_last_seen_is_written_at_most_once_a_minute(as_alice, alice, django_assert_num_queries):
    as_alice.get(reverse("accounts:account"))
    alice.refresh_from_db()
    first = alice.last_seen
    assert first is not None
    as_alice.get(reverse("accounts:account"))
    alice.refresh_from_db()
    assert alice.last_seen == first

    User.objects.filter(pk=alice.pk).update(last_seen=first.replace(year=first.year - 1))
    as_alice.get(reverse("accounts:account"))
    alice.refresh_from_db()
    assert alice.last_seen > first


def test_login_form_ignores_forwarded_for_without_trusted_proxies(client, alice):
    post_login(client, alice.email, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="6.6.6.6")
    assert ActivityLog.objects.get(action=ActivityLog.Action.LOGIN).ip == "10.0.0.5"


def test_second_browser_keeps_its_own_session(alice):
    first, second = Client(), Client()
    post_login(first, alice.email)
    post_login(second, alice.email)
    assert alice.sessions.count() == 2
