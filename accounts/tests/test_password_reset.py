"""Forgot your password: a link by email, through a real SMTP server on loopback (aiosmtpd)."""

import email
import re
import time

import pytest
from aiosmtpd.controller import Controller
from django.test import Client
from django.urls import reverse

from accounts.activity import Action
from accounts.models import ActivityLog
from controlpanel import settings as settings_module
from controlpanel.testing import PASSWORD, free_port

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]
NEW_PASSWORD = "brand-New-secret-7"


class Inbox:
    """aiosmtpd's handler: every message the server takes."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def inbox(settings):
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_URL = f"smtp://127.0.0.1:{controller.port}"
    settings.MAILERS = {"default": settings_module._mailer(settings.EMAIL_URL)}  # as the settings make it
    yield handler
    controller.stop()


@pytest.fixture
def ask(client, django_capture_on_commit_callbacks):
    def ask(address, who=client):
        with django_capture_on_commit_callbacks(execute=True):
            return who.post(reverse("accounts:password_forgot"), {"email": address})
    return ask


def link_in(message):
    return re.search(r"https?://testserver(/\S+)", message.get_payload())[1]


def test_a_link_by_email_sets_a_new_password_once_and_signs_every_session_out(ask, inbox, alice, as_alice):
    login = Client().get(reverse("accounts:login")).content.decode()
    assert reverse("accounts:password_forgot") in login and "Forgot your password?" in login
    response = ask("Alice@Example.com")
    assert response.status_code == 302 and response.url == reverse("accounts:password_forgot_sent")
    [(to, message)] = inbox.messages
    assert to == ["alice@example.com"] and message["Subject"] == "Set a new password for the control panel"
    assert "within 30 minutes" in message.get_payload()

    visitor = Client()
    form = visitor.get(link_in(message), follow=True)  # Django takes the token into the session, off the address
    assert "Set a new password" in form.content.decode() and "alice@example.com" in form.content.decode()
    done = visitor.post(form.redirect_chain[-1][0], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}, follow=True)
    assert done.redirect_chain[-1][0] == reverse("accounts:login") and "Log in with it now" in done.content.decode()
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    assert as_alice.get(reverse("accounts:account")).status_code == 302  # her open session ended
    assert [row.action for row in ActivityLog.objects.filter(user=alice).order_by("pk")][-2:] == [Action.PASSWORD_RESET_SENT,
                                                                                                Action.PASSWORD_RESET]
    # Used: the same link again is refused, in words.
    again = Client().get(link_in(message), follow=True).content.decode()
    assert "This link no longer works" in again and 'name="password1"' not in again


def test_the_reply_is_the_same_for_an_unknown_or_disabled_address_and_no_mail_goes(ask, inbox, alice, django_user_model):
    django_user_model.objects.create_user(email="gone@example.com", password=PASSWORD, is_active=False)
    sent = ask("alice@example.com")
    for address in ("nobody@example.com", "gone@example.com"):
        response = ask(address)
        assert (response.status_code, response.url) == (sent.status_code, sent.url)
    assert [to for to, _ in inbox.messages] == [["alice@example.com"]]
    page = Client().get(sent.url).content.decode()
    assert "If an account uses that address" in page


def test_a_link_expires(ask, inbox, alice, settings):
    settings.PASSWORD_RESET_TIMEOUT = 1
    ask("alice@example.com")
    time.sleep(2.1)
    page = Client().get(link_in(inbox.messages[0][1]), follow=True).content.decode()
    assert "This link no longer works" in page and 'name="password1"' not in page
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_asking_is_throttled_per_address_and_per_client(ask, inbox, alice, settings):
    settings.PASSWORD_RESET_LIMIT = 2
    for _ in range(4):
        assert ask("alice@example.com").status_code == 302  # the same reply: nothing said of the address
    assert len(inbox.messages) == 2  # her mailbox is not flooded
    for n in range(2):
        assert ask(f"someone{n}@example.com").status_code == 302
    response = ask("alice@example.com")
    assert response.status_code == 429 and "Too many password reset requests" in response.content.decode()


def test_without_email_the_page_says_to_ask_an_administrator(client, alice, settings):
    settings.EMAIL_URL = ""
    page = client.get(reverse("accounts:password_forgot")).content.decode()
    assert "Ask an administrator" in page and 'name="email"' not in page
    assert client.post(reverse("accounts:password_forgot"), {"email": "alice@example.com"}).status_code == 200
    assert not ActivityLog.objects.filter(action=Action.PASSWORD_RESET_SENT).exists()
