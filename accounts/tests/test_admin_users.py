import pytest
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.activity import Action
from accounts.models import ActivityLog, User
from accounts.signals import user_delete_check
from controlpanel.testing import PASSWORD, refused_form

pytestmark = pytest.mark.django_db


def detail(user):
    return reverse("accounts:user_detail", args=[user.pk])


def update(client, user, **changes):
    data = {"email": user.email, "is_admin": user.is_admin, "is_active": user.is_active, **changes}
    return client.post(detail(user), {k: v for k, v in data.items() if v is not False})


def logged_in(user):
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


# List ---------------------------------------------------------------------------

def test_user_list_shows_users_with_their_facts(as_admin, alice, disabled):
    page = as_admin.get(reverse("accounts:user_list")).content.decode()
    assert "alice@example.com" in page and "disabled@example.com" in page
    assert "never" in page  # alice has not been seen


def test_user_list_search(as_admin, alice, bob):
    page = as_admin.get(reverse("accounts:user_list"), {"q": "ALI"}).content.decode()
    assert "alice@example.com" in page
    assert "bob@example.com" not in page


@pytest.mark.parametrize("sort, first", [("email", "admin@example.com"), ("-email", "bob@example.com"), ("-joined", "bob@example.com")])
def test_user_list_sort(as_admin, alice, bob, sort, first):
    response = as_admin.get(reverse("accounts:user_list"), {"sort": sort})
    assert response.context["page"][0].email == first


def test_user_list_counts_live_servers_and_keys_and_sorts_by_servers(as_admin, alice, bob):
    from django.utils import timezone

    from hosting.models import Node, VirtualServer

    for n, deleted_at in enumerate([None, None, timezone.now()]):
        VirtualServer.objects.create(owner=alice, node=Node.local(), name=f"s{n}", deleted_at=deleted_at,
                                     memory_mb=256, cpus=1, pids_limit=100, disk_mb=1024)
    bob.ssh_keys.create(name="laptop", public_key="ssh-ed25519 AAAA", kind="ssh-ed25519", bits=256, fingerprint="SHA256:x")
    response = as_admin.get(reverse("accounts:user_list"), {"sort": "-servers"})
    rows = {user.email: (user.server_count, user.key_count) for user in response.context["page"]}
    assert rows == {"alice@example.com": (2, 0), "bob@example.com": (0, 1), "admin@example.com": (0, 0)}
    assert response.context["page"][0] == alice


def test_user_list_ignores_unknown_sort(as_admin, alice):
    assert as_admin.get(reverse("accounts:user_list"), {"sort": "password"}).status_code == 200


def test_user_list_paginates(as_admin, django_user_model):
    django_user_model.objects.bulk_create(django_user_model(email=f"u{n:03}@example.com") for n in range(60))
    first = as_admin.get(reverse("accounts:user_list"))
    assert len(first.context["page"]) == 50
    second = as_admin.get(reverse("accounts:user_list"), {"page": 2})
    assert len(second.context["page"]) == 11
    assert "Page 2 of 2" in second.content.decode()


# Create -------------------------------------------------------------------------

def test_create_user(as_admin, admin):
    response = as_admin.post(
        reverse("accounts:user_create"),
        {"email": " New@Example.com ", "password1": "a-Fine-passphrase-9", "password2": "a-Fine-passphrase-9"},
    )
    user = User.objects.get(email="new@example.com")
    assert response.url == detail(user)
    assert not user.is_admin and user.is_active
    assert user.check_password("a-Fine-passphrase-9")
    assert ActivityLog.objects.filter(action=Action.USER_CREATED, user=admin, target="new@example.com").exists()


def test_create_user_field_errors(as_admin, alice):
    response = as_admin.post(
        reverse("accounts:user_create"), {"email": "ALICE@example.com", "password1": "short", "password2": "short"}
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "email" in errors and "password1" in errors
    assert User.objects.count() == 2


# Update -------------------------------------------------------------------------

def test_edit_email_and_flags(as_admin, admin, alice):
    response = update(as_admin, alice, email="Alice2@Example.com", is_admin=True)
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.email == "alice2@example.com" and alice.is_admin
    entry = ActivityLog.objects.get(action=Action.USER_UPDATED)
    assert entry.user == admin and "made admin" in entry.message


def test_edit_to_an_existing_email_is_a_field_error(as_admin, alice, bob):
    response = update(as_admin, alice, email="BOB@example.com")
    assert response.status_code == 400
    assert "email" in response.context["form"].errors
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"


def test_disabling_a_user_ends_their_sessions_at_once(as_admin, alice):
    alice_browser = logged_in(alice)
    assert alice_browser.get(reverse("accounts:account")).status_code == 200
    update(as_admin, alice, is_active=False)
    alice.refresh_from_db()
    assert not alice.is_active
    assert not alice.sessions.exists()
    response = alice_browser.get(reverse("accounts:account"))
    assert response.status_code == 302 and response.url.startswith(reverse("accounts:login"))
    assert logged_in_fails(alice)


def logged_in_fails(user):
    return not Client().login(username=user.email, password=PASSWORD)


def test_admin_cannot_demote_or_disable_themselves(as_admin, admin, django_user_model):
    django_user_model.objects.create_user(email="admin2@example.com", password="x", is_admin=True)
    for change in ({"is_admin": False}, {"is_active": False}):
        response = update(as_admin, admin, **change)
        assert response.status_code == 400
        field = next(iter(change))
        assert field in response.context["form"].errors
    admin.refresh_from_db()
    assert admin.is_admin and admin.is_active


def test_last_enabled_admin_cannot_be_demoted_or_disabled(admin, django_user_model):
    other = django_user_model.objects.create_user(email="admin2@example.com", password="x", is_admin=True)
    # admin2 demotes admin: fine, admin2 remains.
    services.user_update(actor=other, user=admin, email=admin.email, is_admin=False, is_active=True)
    # Now admin2 is the last one; a (hypothetical) other actor cannot remove them.
    for change in ({"is_admin": False, "is_active": True}, {"is_admin": True, "is_active": False}):
        with pytest.raises(services.ValidationError):
            services.user_update(actor=admin, user=other, email=other.email, **change)
    other.refresh_from_db()
    assert other.is_admin and other.is_active


def test_a_disabled_admin_does_not_count_as_the_remaining_admin(admin, django_user_model):
    other = django_user_model.objects.create_user(email="admin2@example.com", password="x", is_admin=True, is_active=False)
    with pytest.raises(services.ValidationError):
        services.user_delete(actor=other, user=admin)


# Password -----------------------------------------------------------------------

def test_admin_sets_a_password_and_the_users_sessions_end(as_admin, admin, alice):
    alice_browser = logged_in(alice)
    response = as_admin.post(
        reverse("accounts:user_set_password", args=[alice.pk]),
        {"password1": "brand-New-secret-7", "password2": "brand-New-secret-7"},
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("brand-New-secret-7")
    assert alice_browser.get(reverse("accounts:account")).status_code == 302
    assert ActivityLog.objects.filter(action=Action.USER_PASSWORD_SET, user=admin, target=alice.email).exists()


def test_admin_set_password_validates(as_admin, alice):
    response = as_admin.post(reverse("accounts:user_set_password", args=[alice.pk]), {"password1": "abc", "password2": "abc"})
    assert "abc" not in str(dict(as_admin.session))  # the refusal is kept for the page, the password never
    assert "password1" in refused_form(as_admin, response, "password_form").errors
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


# Delete -------------------------------------------------------------------------

def test_delete_asks_for_confirmation_then_deletes(as_admin, admin, alice):
    ActivityLog.objects.create(user=alice, email=alice.email, action="login", message="Logged in")
    page = as_admin.get(reverse("accounts:user_delete", args=[alice.pk]))
    assert page.status_code == 200 and User.objects.filter(pk=alice.pk).exists()
    response = as_admin.post(reverse("accounts:user_delete", args=[alice.pk]))
    assert response.url == reverse("accounts:user_list")
    assert not User.objects.filter(pk=alice.pk).exists()
    # Her history survives with the copied email.
    kept = ActivityLog.objects.get(action="login", email="alice@example.com")
    assert kept.user is None
    assert ActivityLog.objects.filter(action=Action.USER_DELETED, user=admin, target="alice@example.com").exists()


def test_admin_cannot_delete_themselves(as_admin, admin):
    response = as_admin.post(reverse("accounts:user_delete", args=[admin.pk]), follow=True)
    assert "cannot delete your own account" in response.content.decode()
    assert User.objects.filter(pk=admin.pk).exists()


@pytest.fixture
def blocking_check():
    """Another app answering user_delete_check with a reason."""
    def check(sender, user, **kwargs):
        return f"{user.email} still owns 2 live virtual servers."

    user_delete_check.connect(check, dispatch_uid="test.blocking_check")
    yield
    user_delete_check.disconnect(dispatch_uid="test.blocking_check")


def test_delete_blocked_by_a_registered_check(as_admin, alice, blocking_check):
    page = as_admin.get(reverse("accounts:user_delete", args=[alice.pk])).content.decode()
    assert "still owns 2 live virtual servers" in page
    response = as_admin.post(reverse("accounts:user_delete", args=[alice.pk]), follow=True)
    assert "still owns 2 live virtual servers" in response.content.decode()
    assert User.objects.filter(pk=alice.pk).exists()


def test_unknown_user_is_404(as_admin):
    assert as_admin.get(reverse("accounts:user_detail", args=[999999])).status_code == 404
