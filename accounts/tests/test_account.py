import pytest
from django.test import Client
from django.urls import reverse

from accounts.activity import Action
from accounts.models import ActivityLog
from controlpanel.testing import PASSWORD, refused_form

pytestmark = pytest.mark.django_db
ACCOUNT = reverse("accounts:account")
NEW = "a-Different-phrase-3"


def change(client, current=PASSWORD, new=NEW, again=None):
    return client.post(ACCOUNT, {"current_password": current, "password1": new, "password2": again or new})


def test_account_page_shows_own_activity_only(as_alice, alice, bob):
    ActivityLog.objects.create(user=bob, email=bob.email, action="login", message="bob secret thing")
    page = as_alice.get(ACCOUNT).content.decode()
    assert "Logged in" in page  # alice's own login from force_login
    assert "bob secret thing" not in page


def test_change_password_keeps_this_session_and_ends_the_others(alice):
    this, other = Client(), Client()
    assert this.login(username=alice.email, password=PASSWORD)
    assert other.login(username=alice.email, password=PASSWORD)
    response = change(this)
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(NEW)
    assert this.get(ACCOUNT).status_code == 200
    assert other.get(ACCOUNT).status_code == 302
    assert alice.sessions.count() == 1
    assert alice.sessions.get().session_key == this.session.session_key
    assert ActivityLog.objects.filter(user=alice, action=Action.PASSWORD_CHANGED).exists()


def test_change_password_needs_the_current_one(as_alice, alice):
    response = change(as_alice, current="not-my-password")
    assert response.status_code == 200
    assert "current_password" in response.context["form"].errors
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_change_password_validates_the_new_one(as_alice, alice):
    response = change(as_alice, new="1234567890")
    assert "password1" in response.context["form"].errors
    response = change(as_alice, new=NEW, again=NEW + "!")
    assert "password2" in response.context["form"].errors
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_ten_kilobyte_password_is_a_form_error(as_alice):
    response = change(as_alice, new="x" * 10_000)
    assert response.status_code == 200
    assert "password1" in response.context["form"].errors


def test_home_sends_people_to_their_start_page(as_alice, as_admin):
    assert as_alice.get("/").url == reverse("hosting:server_list")
    assert as_admin.get("/").url == reverse("hosting:admin_dashboard")


def _rsa_line(e, n, *, raw_n=None):
    """An ssh-rsa public key line from its numbers (raw_n: the modulus's bytes exactly as given)."""
    import base64
    import struct

    def string(data):
        return struct.pack(">I", len(data)) + data

    def mpint(value):
        data = value.to_bytes((value.bit_length() + 8) // 8, "big")
        return string(data)

    blob = string(b"ssh-rsa") + mpint(e) + (string(raw_n) if raw_n is not None else mpint(n))
    return "ssh-rsa " + base64.b64encode(blob).decode()


@pytest.mark.parametrize("case", ["negative modulus", "even modulus", "60,000 bits", "even exponent"])
def test_broken_or_monstrous_rsa_keys_are_refused_in_words(case, as_alice):
    """The review's keys: a negative integer was a 500; an even modulus and a 60,000-bit key were accepted."""
    import secrets

    odd = secrets.randbits(4096) | (1 << 4095) | 1
    line = {
        "negative modulus": _rsa_line(65537, None, raw_n=b"\xff" + secrets.token_bytes(511)),
        "even modulus": _rsa_line(65537, odd - 1),
        "60,000 bits": _rsa_line(65537, secrets.randbits(60000) | (1 << 59999) | 1),
        "even exponent": _rsa_line(65536, odd),
    }[case]
    response = as_alice.post(reverse("accounts:ssh_key_add"), {"name": "odd", "public_key": line})
    assert "not an OpenSSH public key" in str(refused_form(as_alice, response, "key_form").errors), case
    assert not ActivityLog.objects.filter(action=Action.SSH_KEY_ADDED).exists()


def test_the_ssh_section_marks_what_is_required_and_names_the_users_own_server(as_alice, alice):
    from hosting.models import Node, VirtualServer

    page = as_alice.get(ACCOUNT).content.decode()
    assert 'Public key: <abbr class="required" title="required">*</abbr>' in page
    assert "Host server42" in page  # no server yet: an example
    server = VirtualServer.objects.create(owner=alice, node=Node.local(), name="blog", memory_mb=512, cpus=1, pids_limit=64)
    page = as_alice.get(ACCOUNT).content.decode()
    assert f"Host {server.hostname}\n" in page and f"ssh {server.hostname}<" in page and "server42" not in page
