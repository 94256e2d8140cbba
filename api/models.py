from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    """A personal access token. The secret is shown once and kept only as a keyed
    hash (api.services.digest): a fast HMAC, as a bcrypt check on every request
    would cost more than the request, and a 256-bit random secret needs no slow hash."""

    class Scope(models.TextChoices):
        READ = "read", "Read: look, change nothing"
        DEPLOY = "deploy", "Deploy: read, and deploy apps"
        WRITE = "write", "Write: all you may do"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.READ)
    # Empty: every server its user may reach; else only these.
    servers = models.ManyToManyField("hosting.VirtualServer", blank=True, related_name="+")
    # Whether it names servers, read with the token on every request. A token's servers are
    # set when it is made and never changed, so this never goes out of step with them.
    is_limited = models.BooleanField(default=False)
    digest = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=16)  # the secret's first characters, to tell tokens apart
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    @property
    def is_usable(self):
        return self.revoked_at is None and self.expires_at > timezone.now() and self.user.is_active

    def used_now(self, address):
        """Last use and address, written at most once a minute (not on every request)."""
        now = timezone.now()
        if self.last_used_at is None or now - self.last_used_at >= timedelta(minutes=1) or address != self.last_used_ip:
            ApiToken.objects.filter(pk=self.pk).update(last_used_at=now, last_used_ip=address)
            self.last_used_at, self.last_used_ip = now, address
