import time

import bcrypt
import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from accounts.activity import Action
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
    entry = ActivityLog.objects.get(action=Action.LOGIN)
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
    failed = ActivityLog.objects.get(action=Action.LOGIN_FAILED)
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
    assert ActivityLog.objects.filter(user=alice, action=Action.LOGOUT).exists()
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
    assert ActivityLog.objects.get(action=Action.LOGIN).ip == "10.0.0.5"


def test_second_browser_keeps_its_own_session(alice):
    first, second = Client(), Client()
    post_login(first, alice.email)
    post_login(second, alice.email)
    assert alice.sessions.count() == 2


def test_repeated_failures_for_one_account_from_one_client_are_throttled(client, alice, settings):
    settings.LOGIN_FAILURE_LIMIT = 5
    for _ in range(5):
        assert post_login(client, alice.email, "wrong", REMOTE_ADDR="203.0.113.5").status_code == 200
    response = post_login(client, alice.email, PASSWORD, REMOTE_ADDR="203.0.113.5")
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert SESSION_KEY not in client.session
    assert ActivityLog.objects.filter(action=Action.LOGIN_THROTTLED, email=alice.email).exists()
    # The victim still gets in from elsewhere; other accounts from the same client too.
    assert post_login(Client(), alice.email, PASSWORD, REMOTE_ADDR="198.51.100.7").status_code == 302


def test_throttling_behind_a_proxy_uses_the_real_client_not_the_proxy(alice, bob, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.TRUSTED_PROXY_COUNT = 1
    attacker, victim = Client(), Client()
    for _ in range(3):
        post_login(attacker, alice.email, "wrong", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.66")
    assert post_login(attacker, alice.email, PASSWORD, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.66").status_code == 429
    # Same proxy, another client: unaffected. A forged header only adds entries on the left.
    assert post_login(victim, alice.email, PASSWORD, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.9").status_code == 302
    forged = Client()
    response = post_login(forged, alice.email, PASSWORD, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.66")
    assert response.status_code == 429


def test_a_successful_login_clears_the_count(client, alice, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    for _ in range(2):
        post_login(client, alice.email, "wrong")
    assert post_login(client, alice.email, PASSWORD).status_code == 302
    client.post(reverse("accounts:logout"))
    for _ in range(2):
        post_login(client, alice.email, "wrong")
    assert post_login(client, alice.email, PASSWORD).status_code == 302


def test_idle_and_absolute_session_timeouts(alice, settings):
    from accounts.middleware import SESSION_ACTIVE, SESSION_STARTED

    settings.SESSION_IDLE_TIMEOUT, settings.SESSION_ABSOLUTE_TIMEOUT = 600, 3600
    client = Client()
    post_login(client, alice.email)
    account = reverse("accounts:account")
    assert client.get(account).status_code == 200
    now = int(time.time())
    session = client.session
    session[SESSION_STARTED], session[SESSION_ACTIVE] = now - 700, now - 601
    session.save()
    assert client.get(account).status_code == 302, "idle too long"

    post_login(client, alice.email)
    client.get(account)
    session = client.session
    session[SESSION_STARTED], session[SESSION_ACTIVE] = now - 3601, now - 30  # active all along
    session.save()
    assert client.get(account).status_code == 302, "past the absolute limit"


def test_long_passwords_are_neither_truncated_nor_an_error(client, production_hashers):
    """bcrypt alone reads 72 bytes; bcrypt-SHA256 sees every byte."""
    password = ("pässwörd-" * 30)[:200]
    assert len(password.encode()) > 200
    user = User.objects.create_user(email="long@example.com", password=password)
    assert user.password.startswith("bcrypt_sha256$")
    assert post_login(client, "long@example.com", password).status_code == 302
    changed = password[:149] + ("x" if password[149] != "x" else "y") + password[150:]
    assert post_login(Client(), "long@example.com", changed).status_code == 200


def test_a_ten_kilobyte_password_is_a_form_error_at_login(client, alice):
    response = post_login(client, alice.email, "x" * 10_240)
    assert response.status_code == 200
    assert "password" in response.context["form"].errors


def test_a_throttled_login_with_a_nul_in_the_email_is_logged_not_a_500(client, settings):
    settings.LOGIN_FAILURE_LIMIT = 1
    post_login(client, "evil\x00@example.com", "wrong")
    response = post_login(client, "evil\x00@example.com", "wrong")
    assert response.status_code == 429
    assert ActivityLog.objects.get(action=Action.LOGIN_THROTTLED).email == "evil\ufffd@example.com"
