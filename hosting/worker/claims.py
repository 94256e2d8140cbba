"""Domain claims on the worker side: their TXT records looked up (the web tier never
waits on DNS), a proven name routed, and claims that waited too long ended."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.services import activity_log

from ..activity import Action
from ..backends import dns
from ..models import Domain
from ..services import domains

Status = Domain.Status


def domain_check_claim(*, domain_id):
    """Look up a DNS claim's TXT record; route the name once it is there. The worker
    does this for every claim each DOMAIN_CHECK_INTERVAL; its owner may ask at once.
    Returns whether the name is now routed."""
    domain = Domain.objects.filter(pk=domain_id, status=Status.DNS).first()
    if domain is None:
        return False
    try:
        found = domain.txt_value in dns.txt_records(domain.txt_name)
        problem = "" if found else domains.ERRORS["no_record"].format(txt_name=domain.txt_name, txt_value=domain.txt_value)
    except dns.DnsError as error:
        found, problem = False, str(error)
    if found:
        try:
            with transaction.atomic():
                domains.domain_activate(domain, action=Action.DOMAIN_VERIFIED, message="Proved domain {name} with its DNS record", error_code="proxy_add")
            return True
        except ValidationError as error:
            problem = " ".join(error.messages)
    Domain.objects.filter(pk=domain.pk).update(checked_at=timezone.now(), check_error=problem[:255])
    return False


def domains_expire_claims():
    """Claims that waited longer than DOMAIN_CLAIM_HOURS end, so nobody holds a name forever."""
    expired = list(Domain.objects.pending().filter(pending_until__lt=timezone.now()).select_related("server__owner"))
    for domain in expired:
        domain.delete()
        activity_log(action=Action.DOMAIN_REMOVED, user=domain.server.owner, target=domain.name,
                     message=f"Claim for {domain.display_name} expired: it was not proven within {settings.DOMAIN_CLAIM_HOURS} hours")
    return len(expired)


def dns_claims_due():
    """Ids of the claims whose TXT record to look up this round (oldest look-up first)."""
    claims = Domain.objects.filter(status=Status.DNS).order_by("checked_at", "pk")
    return list(claims.values_list("pk", flat=True)[:500])
