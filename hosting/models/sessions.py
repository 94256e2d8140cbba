"""What the gateway opens in servers, as the database records it."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from .servers import VirtualServer


class TerminalSession(models.Model):
    """One shell the gateway opened in a server, for a browser or an SSH client."""

    class Kind(models.TextChoices):
        BROWSER = "browser", "Browser"
        SSH = "ssh", "SSH"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="terminals")
    server = models.ForeignKey(VirtualServer, on_delete=models.CASCADE, related_name="terminals")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.BROWSER)
    what = models.CharField(max_length=64, blank=True)  # "a browser terminal", "an SSH sftp session", ...
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=255, blank=True)
    # Someone asked the gateway to end it: its user (the Sessions page) or an admin.
    end_requested_at = models.DateTimeField(null=True, blank=True)
    end_requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["closed_at"], name="hosting_terminal_open_idx")]

    def __str__(self):
        return f"terminal {self.pk} on {self.server_id}"

    @property
    def is_open(self):
        return self.closed_at is None
