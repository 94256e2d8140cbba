from datetime import timedelta

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts import services, tasks
from accounts.models import ActivityLog

pytestmark = pytest.mark.django_db
ACTIVITY = reverse("accounts:activity_list")


def log(user, action, message, when=None):
    entry = services.activity_log(user=user, action=action, message=message)
    if when:
        ActivityLog.objects.filter(pk=entry.pk).update(created_at=when)
    return entry


def test_admin_filters_by_user_action_and_date(as_admin, alice, bob):
    log(alice, "login", "alice logged in")
    log(bob, "login", "bob logged in")
    log(alice, "password_changed", "alice changed password", when=timezone.now() - timedelta(days=10))

    def shown(**params):
        return {e.message for e in as_admin.get(ACTIVITY, params).context["page"] if e.user_id in (alice.pk, bob.pk)}

    assert shown(user="alice") == {"alice logged in", "alice changed password"}
    assert shown(action="login") == {"alice logged in", "bob logged in"}
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert shown(date_from=since) == {"alice logged in", "bob logged in"}
    assert shown(date_to=(timezone.now() - timedelta(days=5)).date().isoformat()) == {"alice changed password"}


def test_bad_filter_values_are_field_errors_not_500(as_admin):
    response = as_admin.get(ACTIVITY, {"action": "nope", "date_from": "yesterday"})
    assert response.status_code == 200
    assert response.context["filters"].errors


def test_activity_paginates(as_admin, alice):
    ActivityLog.objects.bulk_create(ActivityLog(user=alice, email=alice.email, action="login", message=f"m{n}") for n in range(120))
    response = as_admin.get(ACTIVITY, {"page": 3})
    assert response.context["page"].number == 3
    assert "Page 3 of 3" in response.content.decode()


def test_markup_in_activity_is_escaped(as_admin):
    services.activity_log(action="login_failed", email="<img src=x onerror=alert(1)>", message="Failed login for <b>x</b>")
    page = as_admin.get(ACTIVITY).content.decode()
    assert "<img src=x" not in page and "<b>x</b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_activity_survives_user_deletion(admin, alice):
    log(alice, "login", "hello")
    services.user_delete(actor=admin, user=alice)
    entry = ActivityLog.objects.get(message="hello")
    assert entry.user is None and entry.email == "alice@example.com"


def test_retention_task_removes_old_rows(alice, settings):
    settings.ACTIVITY_RETENTION_DAYS = 30
    log(alice, "login", "old", when=timezone.now() - timedelta(days=31))
    log(alice, "login", "recent", when=timezone.now() - timedelta(days=29))
    assert tasks.activity_purge.apply().get() == 1
    assert list(ActivityLog.objects.values_list("message", flat=True)) == ["recent"]


@pytest.mark.parametrize("hops, forwarded, remote, expected", [
    (0, "1.1.1.1", "10.0.0.9", "10.0.0.9"),
    (1, "6.6.6.6, 203.0.113.7", "10.0.0.9", "203.0.113.7"),
    (2, "6.6.6.6, 203.0.113.7, 10.0.0.2", "10.0.0.9", "203.0.113.7"),
    (1, "", "10.0.0.9", "10.0.0.9"),
    (1, "not-an-ip", "10.0.0.9", None),
    (1, "2001:db8::1", "10.0.0.9", "2001:db8::1"),
])
def test_client_ip_trusts_only_the_configured_proxies(settings, hops, forwarded, remote, expected):
    settings.TRUSTED_PROXY_COUNT = hops
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR=remote)
    assert services.client_ip(request) == expected


def test_sessions_purge_forgets_dead_sessions(alice):
    from django.contrib.sessions.models import Session

    from controlpanel.testing import logged_in_client

    client = logged_in_client(alice)
    assert alice.sessions.count() == 1
    Session.objects.filter(session_key=client.session.session_key).update(expire_date=timezone.now() - timedelta(seconds=1))
    assert tasks.sessions_purge.apply().get() == 1
    assert not alice.sessions.exists()
