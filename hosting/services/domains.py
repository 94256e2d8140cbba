"""Domain work: the rules a name must meet on this panel, and adding, proving,
changing, removing and approving domains. Every change to what is routed is
applied to Caddy inside the same transaction: if Caddy refuses it or is
down, nothing is saved.

A name outside the platform domain is a claim until it is proven
(DOMAIN_OWNERSHIP=dns: a TXT record the worker looks up) or approved
(=approval); claims expire after DOMAIN_CLAIM_HOURS, and several people may
claim one name: the first proven wins. What a name may look like is in
domain_names; every other message about a domain is in ERRORS, under its code.
"""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import throttling
from accounts.services import activity_log
from controlpanel.errors import refusal

from ..activity import Action
from .. import tasks
from ..backends import caddy
from ..domain_names import ERRORS as NAME_ERRORS
from ..domain_names import normalize_domain
from ..models import Domain, Lock, VirtualServer

Status = Domain.Status

ERRORS = {
    "in_use": NAME_ERRORS["in_use"],
    "platform_name": "Choose a single name directly under {platform}, like mysite.{platform}.",
    "wildcard_certificate": (
        "Automatic certificates for wildcard names need a DNS challenge, which is not set up: "
        "turn HTTPS off or use Cloudflare."
    ),
    "too_many": "A server can have at most {limit} domains.",
    "claimed_here": "This server already has this domain.",
    "no_record": "No TXT record {txt_name} saying {txt_value} yet.",
    "taken": "Someone else proved this name first.",
    "proxy_add": "{error} Nothing was saved.",
    "proxy_update": "{error} Nothing was changed.",
    "proxy_remove": "{error} The domain was kept.",
    "proxy_approve": "{error} It stays waiting.",
}


def _error(code, field=None, **params):
    return refusal(ERRORS, code, field, **params)


@dataclass(frozen=True)
class NameCheck:
    name: str  # the stored (ASCII) form
    status: str  # what adding it makes: active, or a claim waiting for DNS or an admin

    @property
    def needs_proof(self):
        return self.status != Status.ACTIVE


def check_name(*, user, name, server=None):
    """Whether `user` may add `name` (to `server`): a NameCheck, or a ValidationError saying why not.

    The live check on the page and every add run this same rule.
    """
    name = normalize_domain(name, allow_wildcard=user.is_admin)
    if Domain.objects.filter(name=name, status=Status.ACTIVE).exists():
        raise _error("in_use")
    if server is not None and server.domains.filter(name=name).exists():
        raise _error("claimed_here")
    platform = settings.PLATFORM_DOMAIN
    under_platform = bool(platform) and name.endswith("." + platform)
    on_platform = under_platform and name.count(".") == platform.count(".") + 1
    if name == platform or (under_platform and not on_platform):
        raise _error("platform_name", platform=platform)
    if on_platform or user.is_admin or settings.DOMAIN_OWNERSHIP == "allowed":
        return NameCheck(name=name, status=Status.ACTIVE)
    return NameCheck(name=name, status=Status.DNS if settings.DOMAIN_OWNERSHIP == "dns" else Status.APPROVAL)


def check_settings(*, name, ssl, cloudflare):
    """Whether a name's HTTPS and Cloudflare flags can be served; a ValidationError if not."""
    if name.startswith("*.") and ssl and not cloudflare and settings.CADDY_TLS_ISSUER == "acme":
        raise _error("wildcard_certificate", field="ssl")


def _apply(code, node):
    """Load the configuration into the Caddy of `node`: this machine's at once, its refusal
    rolling the surrounding transaction back; another node's from its own worker, after
    the commit (the drift check retries it if that Caddy does not answer)."""
    if not node.is_here:
        _apply_later(node)
        return
    try:
        caddy.apply()
    except caddy.ProxyError as error:
        raise _error(code, error=error) from None


def _apply_later(node):
    """After the commit, the Caddy of `node` takes the change (quietly: the drift check retries)."""
    transaction.on_commit(caddy.apply_quietly if node.is_here else lambda: tasks.on_node(tasks.proxy_apply, node))


@transaction.atomic
def domain_add(*, actor, server, name, port=80, ssl=True, cloudflare=False, request=None):
    """Add a domain; a name that needs proof waits as a claim. If Caddy refuses or is down, nothing is saved."""
    Lock.hold(Lock.PROXY)
    server = VirtualServer.objects.select_for_update().get(pk=server.pk)
    server.refuse_if_going()
    if server.domains.count() >= settings.DOMAINS_PER_SERVER:
        raise _error("too_many", limit=settings.DOMAINS_PER_SERVER)
    try:
        check = check_name(user=actor, name=name, server=server)
    except ValidationError as error:
        raise ValidationError({"name": error}) from None
    check_settings(name=check.name, ssl=ssl, cloudflare=cloudflare)
    claim = {}
    if check.needs_proof:
        claim = {"pending_until": timezone.now() + timedelta(hours=settings.DOMAIN_CLAIM_HOURS),
                 "token": secrets.token_urlsafe(24) if check.status == Status.DNS else ""}
    try:
        with transaction.atomic():
            domain = Domain.objects.create(
                server=server, name=check.name, port=port, ssl=ssl, cloudflare=cloudflare, status=check.status, **claim
            )
    except IntegrityError:  # someone took it a moment ago
        raise _error("in_use", field="name") from None
    waiting = {Status.DNS: " (waiting for its DNS record)", Status.APPROVAL: " (waiting for an administrator's approval)"}
    activity_log(
        action=Action.DOMAIN_ADDED, user=actor, target=domain.name, request=request,
        message=f"Added domain {domain.display_name} → “{server.name}” port {port}{waiting.get(domain.status, '')}",
    )
    if domain.is_active:
        _apply("proxy_add", server.node)
    return domain


@transaction.atomic
def domain_update(*, actor, domain, port, ssl, cloudflare, request=None):
    Lock.hold(Lock.PROXY)
    domain = Domain.objects.select_for_update().select_related("server").get(pk=domain.pk)
    check_settings(name=domain.name, ssl=ssl, cloudflare=cloudflare)
    domain.port, domain.ssl, domain.cloudflare = port, ssl, cloudflare
    domain.save(update_fields=["port", "ssl", "cloudflare"])
    activity_log(
        action=Action.DOMAIN_UPDATED, user=actor, target=domain.name, request=request,
        message=f"Changed domain {domain.display_name}: port {port}, HTTPS {'on' if ssl else 'off'}, Cloudflare {'on' if cloudflare else 'off'}",
    )
    if domain.is_active:
        _apply("proxy_update", domain.server.node)
    return domain


@transaction.atomic
def domain_remove(*, actor, domain, request=None):
    Lock.hold(Lock.PROXY)
    name, display, node = domain.name, domain.display_name, domain.server.node
    domain.delete()
    activity_log(action=Action.DOMAIN_REMOVED, user=actor, target=name, request=request, message=f"Removed domain {display}")
    _apply("proxy_remove", node)


def domain_activate(domain, *, actor=None, action, message, error_code, request=None):
    """Route a proven or approved claim; the other claims on its name lose.
    Raises ValidationError (and changes nothing) if Caddy refuses, or if the
    name was proven by someone else first."""
    Lock.hold(Lock.PROXY)
    domain = Domain.objects.select_for_update(of=("self",)).select_related("server__owner").get(pk=domain.pk)
    if Domain.objects.filter(name=domain.name, status=Status.ACTIVE).exclude(pk=domain.pk).exists():
        raise _error("taken")
    losers = list(Domain.objects.filter(name=domain.name).exclude(pk=domain.pk).select_related("server__owner"))
    Domain.objects.filter(pk__in=[d.pk for d in losers]).delete()
    for lost in losers:
        activity_log(action=Action.DOMAIN_REMOVED, user=lost.server.owner, target=lost.name,
                     message=f"Claim for {lost.display_name} ended: someone else proved the name first")
    Domain.objects.filter(pk=domain.pk).update(status=Status.ACTIVE, pending_until=None, check_error="", checked_at=timezone.now())
    activity_log(action=action, user=actor or domain.server.owner, target=domain.name, request=request, message=message.format(name=domain.display_name))
    _apply(error_code, domain.server.node)


@transaction.atomic
def domain_approve(*, actor, domain, request=None):
    domain_activate(domain, actor=actor, action=Action.DOMAIN_APPROVED, message="Approved domain {name}", error_code="proxy_approve", request=request)


def server_domains_remove(server):
    """A server being deleted loses its domains; Caddy follows after the commit
    (or at the drift check, if it does not answer now)."""
    if server.domains.exists():
        server.domains.all().delete()
        _apply_later(server.node)


DOMAIN_CHECKS_PER_WINDOW = 10  # "Check now" asks per user in THROTTLE_WINDOW


def domain_check_request(*, actor, domain):
    """The owner asks for their claim's TXT record to be looked up now: the worker
    does it (the web tier never waits on DNS), at most DOMAIN_CHECKS_PER_WINDOW
    times per user in a window. Returns (whether it was asked, what to tell them)."""
    if domain.status != Domain.Status.DNS:
        return False, f"{domain.display_name} is not waiting for a DNS record."
    if throttling.hit("domain-check", str(actor.pk), window=settings.THROTTLE_WINDOW) > DOMAIN_CHECKS_PER_WINDOW:
        return False, "You have asked for many look-ups: the panel looks the record up by itself every minute."
    transaction.on_commit(lambda: tasks.domain_check_claim.delay(domain.pk))
    return True, f"Looking up the record of {domain.display_name}: the result shows here in a few seconds."
