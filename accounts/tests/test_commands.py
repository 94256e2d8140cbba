import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.activity import Action
from accounts.models import ActivityLog, User

pytestmark = pytest.mark.django_db


def test_create_admin_generates_and_prints_a_password_once():
    out = io.StringIO()
    call_command("create_admin", "  Boss@Example.com", "--generate-password", stdout=out)
    user = User.objects.get(email="boss@example.com")
    assert user.is_admin and user.is_active
    password = out.getvalue().split("Password (shown only now): ")[1].strip()
    assert len(password) >= 16
    assert Client().login(username="boss@example.com", password=password)
    assert ActivityLog.objects.filter(action=Action.USER_CREATED, target="boss@example.com").exists()


def test_create_admin_refuses_duplicates_and_bad_emails(alice):
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_admin", "ALICE@example.com", "--generate-password", stdout=io.StringIO())
    with pytest.raises(CommandError, match="not a valid email"):
        call_command("create_admin", "not-an-email", "--generate-password", stdout=io.StringIO())


def test_two_generated_passwords_differ():
    outs = []
    for email in ("a1@example.com", "a2@example.com"):
        out = io.StringIO()
        call_command("create_admin", email, "--generate-password", stdout=out)
        outs.append(out.getvalue().rsplit(" ", 1)[-1])
    assert outs[0] != outs[1]


def test_a_fresh_database_has_no_account_to_log_into():
    """No built-in admin: the first one comes from create_admin."""
    assert not User.objects.exists()
