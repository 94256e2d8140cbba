"""Domain work: the rules a name must meet on this panel, and adding, changing,
removing and approving domains. Every change is applied to Caddy inside the
same transaction: if Caddy refuses it or is down, nothing is saved.

What a name may look like is in domain_names; every other message about a
domain is in ERRORS, under the code it is raised with.
"""

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import ActivityLog
from accounts.services import activity_log

from . import proxy
from .domain_names import ERRORS as NAME_ERRORS
from .domain_names import normalize_domain
from .models import Domain, Lock, VirtualServer

Action = ActivityLog.Action

ERRORS = {
    "in_use": NAME_ERRORS["in_use"],
    "platform_name": "Choose a single name directly under {platform}, like mysite.{platform}.",
    "wildcard_certificate": (
        "Automatic certificates for wildcard names need a DNS challenge, which is not set up: "
        "turn HTTPS off or use Cloudflare."
    ),
    "too_many": "A server can have at most {limit} domains.",
    "server_deleting": "This virtual server is being deleted.",
    "proxy_add": "{error} Nothing was saved.",
    "proxy_update": "{error} Nothing was changed.",
    "proxy_remove": "{error} The domain was kept.",
    "proxy_approve": "{error} It stays waiting.",
}


def _error(code, field=None, **params):
    error = ValidationError(ERRORS[code].format(**params), code=code)
    return ValidationError({field: error}) if field else error


@dataclass(frozen=True)
class NameCheck:
    name: str  # the stored (ASCII) form
    needs_approval: bool


def check_name(*, user, name, exclude=None):
    """Whether `user` may route `name`: a NameCheck, or a ValidationError saying why not.

    The live check on the page and every add run this same rule.
    """
    name = normalize_domain(name, allow_wildcard=user.is_admin)
    if Domain.objects.filter(name=name).exclude(pk=exclude).exists():
        raise _error("in_use")
    platform = settings.PLATFORM_DOMAIN
    under_platform = bool(platform) and name.endswith("." + platform)
    on_platform = under_platform and name.count(".") == platform.count(".") + 1
    if name == platform or (under_platform and not on_platform):
        raise _error("platform_name", platform=platform)
    needs_approval = not (on_platform or user.is_admin or settings.DOMAIN_OWNERSHIP == "allowed")
    return NameCheck(name=name, needs_approval=needs_approval)


def check_settings(*, name, ssl, cloudflare):
    """Whether a name's HTTPS and Cloudflare flags can be served; a ValidationError if not."""
    if name.startswith("*.") and ssl and not cloudflare and settings.CADDY_TLS_ISSUER == "acme":
        raise _error("wildcard_certificate", field="ssl")


def _apply(code):
    """Load the configuration into Caddy; its refusal rolls the surrounding transaction back."""
    try:
        proxy.apply()
    except proxy.ProxyError as error:
        raise _error(code, error=error) from None


@transaction.atomic
def domain_add(*, actor, server, name, port=80, ssl=True, cloudflare=False, request=None):
    """Add a domain and route it; if Caddy refuses or is down, nothing is saved."""
    Lock.hold(Lock.PROXY)
    server = VirtualServer.objects.select_for_update().get(pk=server.pk)
    if server.deleted_at or server.desired_state == VirtualServer.DesiredState.DELETED:
        raise _error("server_deleting")
    if server.domains.count() >= settings.DOMAINS_PER_SERVER:
        raise _error("too_many", limit=settings.DOMAINS_PER_SERVER)
    try:
        check = check_name(user=actor, name=name)
    except ValidationError as error:
        raise ValidationError({"name": error}) from None
    check_settings(name=check.name, ssl=ssl, cloudflare=cloudflare)
    try:
        with transaction.atomic():
            domain = Domain.objects.create(
                server=server, name=check.name, port=port, ssl=ssl, cloudflare=cloudflare, approved=not check.needs_approval
            )
    except IntegrityError:  # someone took it a moment ago
        raise _error("in_use", field="name") from None
    pending = " (waiting for an administrator's approval)" if check.needs_approval else ""
    activity_log(
        action=Action.DOMAIN_ADDED, user=actor, target=domain.name, request=request,
        message=f"Added domain {domain.display_name} → “{server.name}” port {port}{pending}",
    )
    if domain.approved:
        _apply("proxy_add")
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
    if domain.approved:
        _apply("proxy_update")
    return domain


@transaction.atomic
def domain_remove(*, actor, domain, request=None):
    Lock.hold(Lock.PROXY)
    name, display = domain.name, domain.display_name
    domain.delete()
    activity_log(action=Action.DOMAIN_REMOVED, user=actor, target=name, request=request, message=f"Removed domain {display}")
    _apply("proxy_remove")


@transaction.atomic
def domain_approve(*, actor, domain, request=None):
    Lock.hold(Lock.PROXY)
    Domain.objects.filter(pk=domain.pk).update(approved=True)
    activity_log(action=Action.DOMAIN_APPROVED, user=actor, target=domain.name, request=request, message=f"Approved domain {domain.display_name}")
    _apply("proxy_approve")


def server_domains_remove(server):
    """A server being deleted loses its domains; Caddy follows after the commit
    (or at the drift check, if it does not answer now)."""
    if server.domains.exists():
        server.domains.all().delete()
        transaction.on_commit(proxy.apply_quietly)
