import string
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import services, tasks
from accounts.activity import Action
from accounts.models import ActivityLog, RegistrationCode

pytestmark = pytest.mark.django_db
GENERATE = reverse("accounts:registration_code_generate")
REVOKE = reverse("accounts:registration_code_revoke")
DASHBOARD = reverse("hosting:admin_dashboard")


def test_generate_from_dashboard_shows_code_and_time_left(as_admin, admin):
    response = as_admin.post(GENERATE, {"max_uses": ""})
    assert response.status_code == 302
    code = RegistrationCode.objects.get(created_by=admin)
    assert len(code.code) == 8
    assert set(code.code) <= set(RegistrationCode.ALPHABET)
    assert timedelta(minutes=29) < code.expires_at - timezone.now() <= timedelta(minutes=30)
    page = as_admin.get(DASHBOARD).content.decode()
    assert code.code in page
    assert "29\xa0minutes" in page or "30\xa0minutes" in page
    assert ActivityLog.objects.filter(action=Action.CODE_GENERATED, user=admin, target=code.code).exists()


def test_codes_use_the_unambiguous_alphabet():
    assert not set("IO01") & set(RegistrationCode.ALPHABET)
    assert set(RegistrationCode.ALPHABET) <= set(string.ascii_uppercase + string.digits)


def test_generating_again_replaces_the_code(as_admin, admin):
    as_admin.post(GENERATE)
    first = RegistrationCode.objects.get(created_by=admin).code
    as_admin.post(GENERATE)
    assert RegistrationCode.objects.filter(created_by=admin).count() == 1
    assert RegistrationCode.objects.get(created_by=admin).code != first


def test_each_admin_has_their_own_code(admin, django_user_model):
    other = django_user_model.objects.create_user(email="admin2@example.com", password="x", is_admin=True)
    a = services.registration_code_generate(admin=admin)
    b = services.registration_code_generate(admin=other)
    assert a.code != b.code
    assert RegistrationCode.objects.count() == 2


def test_use_limit_is_validated(as_admin, admin):
    response = as_admin.post(GENERATE, {"max_uses": "0"}, follow=True)
    assert not RegistrationCode.objects.exists()
    assert "Sign-up limit" in response.content.decode()
    as_admin.post(GENERATE, {"max_uses": "25"})
    assert RegistrationCode.objects.get(created_by=admin).max_uses == 25


def test_revoke(as_admin, admin):
    as_admin.post(GENERATE)
    code = RegistrationCode.objects.get().code
    assert as_admin.post(REVOKE).status_code == 302
    assert not RegistrationCode.objects.exists()
    assert ActivityLog.objects.filter(action=Action.CODE_REVOKED, target=code).exists()
    page = as_admin.get(DASHBOARD)
    assert page.context["code"] is None
    assert "You have no active code" in page.content.decode()


def test_code_views_are_post_only_and_admin_only(as_admin, as_alice):
    assert as_admin.get(GENERATE).status_code == 405
    assert as_admin.get(REVOKE).status_code == 405
    assert as_alice.post(GENERATE).status_code == 403
    assert as_alice.post(REVOKE).status_code == 403
    assert not RegistrationCode.objects.exists()


def test_expired_codes_are_purged_by_the_periodic_task(admin, alice):
    code = services.registration_code_generate(admin=admin)
    RegistrationCode.objects.filter(pk=code.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert tasks.registration_codes_purge.apply().get() == 1
    assert not RegistrationCode.objects.exists()


def test_purge_keeps_live_codes(admin):
    services.registration_code_generate(admin=admin)
    assert tasks.registration_codes_purge.apply().get() == 0
    assert RegistrationCode.objects.count() == 1


def test_ttl_is_a_setting(admin, settings):
    settings.REGISTRATION_CODE_TTL = timedelta(minutes=5)
    code = services.registration_code_generate(admin=admin)
    assert code.expires_at - timezone.now() <= timedelta(minutes=5)


def test_purge_tasks_are_scheduled(settings):
    tasks_scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"accounts.tasks.registration_codes_purge", "accounts.tasks.activity_purge", "accounts.tasks.sessions_purge"} <= tasks_scheduled
