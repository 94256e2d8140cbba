"""The Docker hosts the panel drives."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Node(models.Model):
    """A Docker host the panel drives."""

    name = models.SlugField(max_length=64, unique=True)
    # Its own facts; empty: the settings' (DOCKER_HOST_URL, SERVER_NETWORK_SUBNET, SERVER_UID_BASE), as for the local node.
    docker_url = models.CharField(max_length=255, blank=True)  # its engine
    subnet = models.CharField(max_length=43, blank=True)  # the servers' network: each server's address is slot + 1 in it
    uid_base = models.PositiveBigIntegerField(null=True, blank=True)  # rootless: the slot N server's root is base + N × UIDS_PER_SERVER
    created_at = models.DateTimeField(default=timezone.now)
    # Its engine's own container list, as the monitor last read it (see
    # VirtualServer.inner_seen_at and inner_digest).
    host_seen_at = models.DateTimeField(null=True, blank=True)
    host_digest = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def engine_url(self):
        return self.docker_url or settings.DOCKER_HOST_URL

    @property
    def server_subnet(self):
        return self.subnet or settings.SERVER_NETWORK_SUBNET

    @property
    def server_uid_base(self):
        return settings.SERVER_UID_BASE if self.uid_base is None else self.uid_base

    @classmethod
    def local(cls):
        """The panel's own host, configured by the settings (NODE_NAME names it), created on first use."""
        node, _ = cls.objects.get_or_create(name=settings.NODE_NAME)
        return node
