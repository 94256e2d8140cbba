from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.activity import Action
from accounts.models import ActivityLog, RegistrationCode, User
from controlpanel.testing import run_in_threads

pytestmark = pytest.mark.django_db
SIGNUP = reverse("accounts:signup")
GOOD_PASSWORD = "a-Fine-passphrase-9"


def sign_up(client, code, email="newbie@example.com", password=GOOD_PASSWORD, password2=None):
    return client.post(
        SIGNUP, {"code": code, "email": email, "password1": password, "password2": password2 or password}
    )


@pytest.fixture
def code(admin):
    return services.registration_code_generate(admin=admin)


def assert_refused(response, field, text=None):
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, errors
    if text:
        assert text in " ".join(errors[field])
    assert not User.objects.filter(email="newbie@example.com").exists()


def test_signup_page_is_public(client):
    assert client.get(SIGNUP).status_code == 200


def test_valid_code_creates_enabled_plain_user_and_logs_them_in(client, code, admin):
    response = sign_up(client, code.code)
    assert response.status_code == 302
    user = User.objects.get(email="newbie@example.com")
    assert user.is_active and not user.is_admin
    assert user.check_password(GOOD_PASSWORD)
    assert int(client.session[SESSION_KEY]) == user.pk
    entry = ActivityLog.objects.get(action=Action.SIGNUP)
    assert entry.user == user
    assert admin.email in entry.message and code.code in entry.message
    code.refresh_from_db()
    assert code.use_count == 1


def test_code_in_lower_case_with_spaces_works(client, code):
    assert sign_up(client, f"  {code.code.lower()} ").status_code == 302


def test_code_is_usable_by_many_until_it_expires(client, code, django_user_model):
    for n in range(3):
        client.logout()
        assert sign_up(client, code.code, email=f"student{n}@example.com").status_code == 302
    assert django_user_model.objects.filter(email__startswith="student").count() == 3


def test_expired_code_is_refused(client, code):
    RegistrationCode.objects.filter(pk=code.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_refused(sign_up(client, code.code), "code", services.ERRORS["invalid_code"])


def test_revoked_code_is_refused(client, code, admin):
    services.registration_code_revoke(admin=admin)
    assert_refused(sign_up(client, code.code), "code", services.ERRORS["invalid_code"])


def test_replaced_code_is_refused_and_the_new_one_works(client, code, admin):
    new = services.registration_code_generate(admin=admin)
    assert new.code != code.code
    assert_refused(sign_up(client, code.code), "code", services.ERRORS["invalid_code"])
    assert sign_up(client, new.code).status_code == 302


def test_used_up_code_is_refused(client, admin, django_user_model):
    limited = services.registration_code_generate(admin=admin, max_uses=1)
    assert sign_up(client, limited.code, email="first@example.com").status_code == 302
    client.logout()
    assert_refused(sign_up(client, limited.code), "code", services.ERRORS["invalid_code"])


def test_unknown_code_is_refused(client, code):
    assert_refused(sign_up(client, "ZZZZZZZZ" if code.code != "ZZZZZZZZ" else "YYYYYYYY"), "code", services.ERRORS["invalid_code"])


def test_duplicate_email_in_other_case_is_refused(client, code, alice):
    response = sign_up(client, code.code, email="ALICE@example.com")
    assert response.status_code == 200
    assert "email" in response.context["form"].errors
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1
    code.refresh_from_db()
    assert code.use_count == 0


@pytest.mark.parametrize("password, password2", [
    ("short1A", None),
    ("password123", None),
    ("12345678901", None),
    ("newbie@example.com", None),
    (GOOD_PASSWORD, GOOD_PASSWORD + "x"),
], ids=["too short", "common", "numeric", "like the email", "mismatch"])
def test_weak_or_mismatched_password_is_refused(client, code, password, password2):
    response = sign_up(client, code.code, password=password, password2=password2)
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "password1" in errors or "password2" in errors
    assert not User.objects.filter(email="newbie@example.com").exists()
    code.refresh_from_db()
    assert code.use_count == 0


def test_service_refuses_a_lost_race_on_a_limited_code(admin):
    """The use is counted by a conditional UPDATE: a used-up code never goes over."""
    limited = services.registration_code_generate(admin=admin, max_uses=1)
    services.user_signup(code=limited.code, email="one@example.com", password=GOOD_PASSWORD)
    with pytest.raises(services.ValidationError):
        services.user_signup(code=limited.code, email="two@example.com", password=GOOD_PASSWORD)
    assert not User.objects.filter(email="two@example.com").exists()


def test_signed_in_user_visiting_signup_goes_home(as_alice):
    assert as_alice.get(SIGNUP).status_code == 302


def test_markup_in_the_email_field_is_a_field_error_not_a_page_change(client, code):
    response = sign_up(client, code.code, email="<script>alert(1)</script>@x.com")
    assert response.status_code == 200
    assert b"<script>alert(1)" not in response.content


def test_code_guessing_is_rate_limited_per_client(client, code, settings):
    settings.SIGNUP_FAILURE_LIMIT = 3
    for n in range(3):
        assert sign_up(client, "WRONG00" + str(n), email=f"g{n}@example.com").status_code == 200
    response = sign_up(client, code.code)
    assert response.status_code == 429 and "Too many wrong registration codes" in response.content.decode()
    assert not User.objects.filter(email="newbie@example.com").exists()
    # Another client is not affected.
    from django.test import Client

    assert sign_up(Client(REMOTE_ADDR="198.51.100.20"), code.code).status_code == 302


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_signups_with_a_one_use_code_make_one_account(admin):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL (real concurrent transactions): run it with .ci/test")
    limited = services.registration_code_generate(admin=admin, max_uses=1)
    results = []

    def attempt(n):
        try:
            services.user_signup(code=limited.code, email=f"racer{n}@example.com", password=GOOD_PASSWORD)
            results.append("ok")
        except services.ValidationError:
            results.append("refused")

    run_in_threads(attempt, range(20), timeout=30)
    assert results.count("ok") == 1 and results.count("refused") == 19
    assert User.objects.filter(email__startswith="racer").count() == 1
