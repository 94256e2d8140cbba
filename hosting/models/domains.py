"""Domain names routed to servers."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from ..domain_names import ERRORS, display_domain
from .servers import OfServerQuerySet, VirtualServer


class DomainQuerySet(OfServerQuerySet):
    def routed(self):
        """What Caddy serves: active domains of live servers."""
        return self.filter(server__deleted_at__isnull=True, status=Domain.Status.ACTIVE)

    def pending(self):
        return self.exclude(status=Domain.Status.ACTIVE)


class Domain(models.Model):
    """A host name routed by Caddy to a virtual server's port. Stored in ASCII (punycode).

    A name the platform cannot vouch for waits, unrouted, until its owner proves
    it (a DNS TXT record) or an admin approves it; a claim that waits too long
    expires. Several people may claim the same name: the first one proven wins.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Routed"
        DNS = "dns", "Waiting for its DNS record"
        APPROVAL = "approval", "Waiting for an administrator"

    TXT_LABEL = "_controlpanel"  # the record is TXT _controlpanel.<name> = controlpanel-verification=<token>

    name = models.CharField(max_length=253)
    server = models.ForeignKey(VirtualServer, on_delete=models.CASCADE, related_name="domains")
    port = models.PositiveIntegerField(default=80, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    ssl = models.BooleanField("HTTPS", default=True)
    cloudflare = models.BooleanField("behind Cloudflare", default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    token = models.CharField(max_length=64, blank=True)  # what its TXT record must say
    pending_until = models.DateTimeField(null=True, blank=True)  # a waiting claim expires then
    checked_at = models.DateTimeField(null=True, blank=True)  # its TXT record was last looked up
    check_error = models.CharField(max_length=255, blank=True)  # what that look-up found instead
    created_at = models.DateTimeField(default=timezone.now)

    objects = DomainQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"],
                condition=models.Q(status="active"),
                name="%(app_label)s_%(class)s_unique_active_name",
                violation_error_message=ERRORS["in_use"],
            ),
            models.UniqueConstraint(
                fields=["server", "name"],
                name="%(app_label)s_%(class)s_unique_server_name",
                violation_error_message="This server already has this domain.",
            ),
        ]
        indexes = [models.Index(fields=["status", "pending_until"], name="hosting_domain_pending_idx")]

    def __str__(self):
        return self.display_name

    @property
    def display_name(self):
        return display_domain(self.name)

    @property
    def is_active(self):
        return self.status == self.Status.ACTIVE

    @property
    def txt_name(self):
        return f"{self.TXT_LABEL}.{self.name.removeprefix('*.')}"

    @property
    def txt_value(self):
        return f"controlpanel-verification={self.token}"

    @property
    def url(self):
        scheme, port = ("https", settings.CADDY_HTTPS_PORT) if self.ssl else ("http", settings.CADDY_HTTP_PORT)
        default = 443 if self.ssl else 80
        return f"{scheme}://{self.name}{'' if port == default else f':{port}'}/"
