"""Names outside the platform domain are claims until proven: a real DNS server on
loopback answers the TXT look-ups; Caddy is replaced by a recorder."""

import socket
import threading
import time
from datetime import timedelta

import dns.message
import dns.rcode
import dns.rrset
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from accounts.models import ActivityLog
from controlpanel.testing import refused_form
from hosting import services, tasks
from hosting.services import domains
from hosting.worker import claims
from hosting.activity import Action
from hosting.backends import caddy
from hosting.models import Domain

pytestmark = pytest.mark.django_db


class DnsServer:
    """A DNS server on a loopback UDP port that answers TXT questions from `records`."""

    def __init__(self):
        self.records = {}  # name -> [strings]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.questions = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                data, client = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".")
            self.questions.append(name)
            if name in self.records:
                response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", *(f'"{t}"' for t in self.records[name])))
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), client)

    def close(self):
        self.sock.close()


@pytest.fixture
def dns_server(settings):
    server = DnsServer()
    settings.DOMAIN_DNS_SERVERS = [f"127.0.0.1:{server.port}"]
    settings.DOMAIN_DNS_TIMEOUT = 2
    settings.DOMAIN_OWNERSHIP = "dns"
    yield server
    server.close()


@pytest.fixture
def proxy_applies(monkeypatch):
    loaded = []
    monkeypatch.setattr(caddy, "_admin", lambda method, path, body=None: loaded.append((method, path)))
    return loaded


def add(client, server, name, **data):
    return client.post(reverse("hosting:domain_add", args=[server.pk]), {"name": name, "port": 80, **data})


def routed():
    return str(caddy.render())


def test_proof_by_dns_is_the_default():
    from controlpanel import settings as configured

    assert configured.env.str("DOMAIN_OWNERSHIP", default="dns") == "dns" == configured.DOMAIN_OWNERSHIP


def test_a_famous_name_is_not_routed_until_its_txt_record_says_so(as_alice, alice, server, dns_server, proxy_applies):
    assert add(as_alice, server, "login.microsoftonline.com").status_code == 302
    claim = Domain.objects.get()
    assert claim.status == Domain.Status.DNS and claim.token and claim.pending_until > timezone.now()
    assert "login.microsoftonline.com" not in routed() and not proxy_applies
    page = as_alice.get(reverse("hosting:server_detail", args=[server.pk])).content.decode()
    assert claim.txt_name == "_controlpanel.login.microsoftonline.com" and claim.txt_value in page

    # Checked by the worker: nothing there yet, then the wrong value, then the right one.
    assert tasks.domains_check_claims.apply().get() == 0
    claim.refresh_from_db()
    assert claim.status == Domain.Status.DNS and "No TXT record" in claim.check_error and claim.checked_at
    dns_server.records[claim.txt_name] = ["controlpanel-verification=someone-elses-token"]
    assert tasks.domains_check_claims.apply().get() == 0
    dns_server.records[claim.txt_name] = ["v=spf1 -all", claim.txt_value]
    assert tasks.domains_check_claims.apply().get() == 1
    claim.refresh_from_db()
    assert claim.status == Domain.Status.ACTIVE and claim.pending_until is None
    assert "login.microsoftonline.com" in routed()
    assert ActivityLog.objects.filter(action=Action.DOMAIN_VERIFIED, user=alice).exists()


def test_the_owner_can_check_at_once_and_is_told_what_was_found(as_alice, as_bob, server, dns_server, proxy_applies,
                                                                  django_capture_on_commit_callbacks):
    add(as_alice, server, "shop.example.org")
    claim = Domain.objects.get()
    check = reverse("hosting:domain_check_claim", args=[claim.pk])
    page = reverse("hosting:server_detail", args=[server.pk])
    assert as_bob.post(check).status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        response = as_alice.post(check, follow=True)
    assert "Looking up the record of shop.example.org" in response.content.decode()
    assert "No TXT record _controlpanel.shop.example.org" in as_alice.get(page).content.decode()
    dns_server.records[claim.txt_name] = [claim.txt_value]
    with django_capture_on_commit_callbacks(execute=True):
        as_alice.post(check)
    assert Domain.objects.get().is_active


def test_check_now_never_waits_on_dns_in_the_web_request_and_is_throttled(as_alice, server, dns_server, settings, proxy_applies,
                                                                         django_capture_on_commit_callbacks, monkeypatch):
    """A resolver that never answers: the owner's posts answer at once (the look-up
    is the worker's), and past a few in a window they are refused in words."""
    settings.DOMAIN_DNS_SERVERS = ["127.0.0.1:9"]  # nothing answers there
    settings.DOMAIN_DNS_TIMEOUT = 5
    add(as_alice, server, "never.example.org")
    claim = Domain.objects.get()
    queued = []
    monkeypatch.setattr(tasks.domain_check_claim, "delay", queued.append)  # the worker's part, not the request's
    check = reverse("hosting:domain_check_claim", args=[claim.pk])
    started = time.monotonic()
    for _ in range(services.DOMAIN_CHECKS_PER_WINDOW):
        with django_capture_on_commit_callbacks(execute=True):
            assert as_alice.post(check).status_code == 302
    assert time.monotonic() - started < 2 and queued == [claim.pk] * services.DOMAIN_CHECKS_PER_WINDOW
    with django_capture_on_commit_callbacks(execute=True):
        response = as_alice.post(check, follow=True)
    assert "many look-ups" in response.content.decode() and len(queued) == services.DOMAIN_CHECKS_PER_WINDOW
    assert tasks.domain_check_claim.name in settings.CELERY_TASK_ROUTES  # on the tenants' queue, not the lifecycles'


def test_a_dns_server_that_does_not_answer_is_a_clear_error(as_alice, server, dns_server, settings, proxy_applies):
    settings.DOMAIN_DNS_SERVERS = ["127.0.0.1:9"]  # nothing answers there
    settings.DOMAIN_DNS_TIMEOUT = 0.5
    add(as_alice, server, "quiet.example.org")
    claims.domain_check_claim(domain_id=Domain.objects.get().pk)
    claim = Domain.objects.get()
    assert claim.status == Domain.Status.DNS and ("did not answer" in claim.check_error or "failed" in claim.check_error)


def test_two_people_may_claim_one_name_and_the_first_to_prove_it_wins(as_alice, as_bob, bob, server, make_server, dns_server, proxy_applies):
    bobs = make_server(name="bob's", owner=bob)
    add(as_alice, server, "contested.example.org")
    assert add(as_bob, bobs, "contested.example.org").status_code == 302  # a pending claim blocks nobody
    alices, bobs_claim = Domain.objects.get(server=server), Domain.objects.get(server=bobs)
    dns_server.records[bobs_claim.txt_name] = [bobs_claim.txt_value]
    tasks.domains_check_claims.apply()
    assert list(Domain.objects.values_list("pk", "status")) == [(bobs_claim.pk, "active")]
    assert not Domain.objects.filter(pk=alices.pk).exists()
    assert ActivityLog.objects.filter(target="contested.example.org", message__contains="someone else proved").exists()
    # Now that it is routed, nobody can claim it.
    assert "already in use" in str(refused_form(as_alice, add(as_alice, server, "contested.example.org"), "domain_form").errors)


def test_claims_expire_and_free_the_name(as_alice, server, dns_server, settings, proxy_applies):
    settings.DOMAIN_OWNERSHIP = "approval"
    add(as_alice, server, "waiting.example.org")
    settings.DOMAIN_OWNERSHIP = "dns"
    add(as_alice, server, "proving.example.org")
    assert Domain.objects.count() == 2
    Domain.objects.update(pending_until=timezone.now() - timedelta(seconds=1))
    tasks.domains_check_claims.apply()
    assert not Domain.objects.exists()
    assert ActivityLog.objects.filter(message__contains="expired").count() == 2


def test_admins_and_the_platform_domain_need_no_proof(as_admin, as_alice, admin, server, dns_server, settings, proxy_applies):
    settings.PLATFORM_DOMAIN = "apps.example.org"
    add(as_alice, server, "mine.apps.example.org")
    add(as_admin, server, "company.example.com")
    assert set(Domain.objects.values_list("name", "status")) == {("mine.apps.example.org", "active"), ("company.example.com", "active")}


def test_no_domain_can_be_added_to_a_server_being_deleted(as_alice, alice, server, proxy_applies):
    from hosting import services

    services.server_delete(actor=alice, server=server)  # its task has not run: it is being deleted
    with pytest.raises(ValidationError, match="being deleted"):
        domains.domain_add(actor=alice, server=server, name="late.example.org")
    assert not Domain.objects.exists()


def test_a_lookalike_typed_in_punycode_is_refused(as_alice, server, proxy_applies):
    response = add(as_alice, server, "xn--80ak6aa92e.com")  # аррӏе.com, in Cyrillic
    assert "look-alike" in str(refused_form(as_alice, response, "domain_form").errors)
    assert not Domain.objects.exists()


NAMES = st.sampled_from([
    "ok.example.org", "Taken.example.org", "*.wild.example.org", "xn--80ak6aa92e.com", "apps.example.org",
    "a.b.apps.example.org", "me.apps.example.org", "bücher.example", "x..y", "1.2.3.4", "-bad.example.org", "",
]) | st.text(max_size=40)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
def test_the_live_check_and_the_add_always_agree(as_alice, alice, server, proxy_applies, settings, name):
    settings.PLATFORM_DOMAIN = "apps.example.org"
    settings.CADDY_TLS_ISSUER = "internal"
    Domain.objects.get_or_create(name="taken.example.org", server=server)
    says_ok = "check-ok" in as_alice.get(reverse("hosting:domain_check"), {"name": name}).content.decode()
    add(as_alice, server, name)
    added = Domain.objects.exclude(name="taken.example.org").exists()
    assert says_ok == added, name
    Domain.objects.exclude(name="taken.example.org").delete()
