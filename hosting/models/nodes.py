"""The Docker hosts the panel drives: the panel's own (the local node) and the machines added to it."""

from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Count, Q, Sum
from django.utils import timezone


class NodeQuerySet(models.QuerySet):
    def with_promised(self):
        """Each node's live servers and the memory they were promised."""
        live = Q(servers__deleted_at__isnull=True)
        return self.annotate(server_count=Count("servers", filter=live), promised_mb=Sum("servers__memory_mb", filter=live))


class Node(models.Model):
    """A machine with a Docker engine that the panel places servers on.

    Its engine is reached over mutual TLS (hosting.backends.certificates), the
    local node's through its socket. A node is offline when the monitor has not
    reached its engine for two cycles: its servers say so, keep their rows, and
    new servers go elsewhere."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DRAINING = "draining", "Draining"  # keeps its servers, takes no new ones

    OFFLINE_AFTER_CYCLES = 2

    name = models.SlugField(max_length=64, unique=True)
    # Its own facts; empty: the settings' (DOCKER_HOST_URL, SERVER_NETWORK_SUBNET, SERVER_UID_BASE), as for the local node.
    docker_url = models.CharField(max_length=255, blank=True)  # its engine: tcp://<address>:2376, mutual TLS
    public_address = models.CharField(max_length=253, blank=True)  # what users' DNS and ssh point at; empty: the panel's own
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Capacity; empty: what its engine reports (memory), no bound (servers).
    memory_mb = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(256)])
    cpus = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0.5"))])
    max_servers = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    overcommit = models.DecimalField(max_digits=4, decimal_places=2, default=Decimal("1.00"),
                                     validators=[MinValueValidator(Decimal("1")), MaxValueValidator(Decimal("10"))])
    # Its engine as the monitor last reached it: its facts (CPUs, memory, version), when, and failures since.
    facts = models.JSONField(default=dict, blank=True)
    contacted_at = models.DateTimeField(null=True, blank=True)
    contact_error = models.CharField(max_length=255, blank=True)
    # When the node's own worker (its disks, sockets and inner daemons are its) last reported:
    # another machine takes servers only while it does.
    worker_seen_at = models.DateTimeField(null=True, blank=True)
    # Joining: the node's one-time token (its hash); its CA's certificate and its own once
    # signed (both public: the keys stay with the worker and on the node).
    join_token_hash = models.CharField(max_length=64, blank=True)
    join_expires_at = models.DateTimeField(null=True, blank=True)
    ca_certificate = models.TextField(blank=True)
    certificate = models.TextField(blank=True)
    # What its own worker signs in with: a database role that sees its node's rows only
    # (hosting.backends.database_roles) and a broker user for its queues only (broker), whose
    # password's hash lets the panel give Redis the user again after a restart. Its worker's
    # settings with those passwords wait here only until the join script fetches them.
    database_role = models.CharField(max_length=63, blank=True)
    broker_secret_hash = models.CharField(max_length=64, blank=True)
    worker_environment = models.JSONField(default=dict, blank=True)
    subnet = models.CharField(max_length=43, blank=True)  # the servers' network: each server's address is slot + 1 in it
    uid_base = models.PositiveBigIntegerField(null=True, blank=True)  # rootless: the slot N server's root is base + N × UIDS_PER_SERVER
    created_at = models.DateTimeField(default=timezone.now)
    # Its engine's own container list, as the monitor last read it (see
    # VirtualServer.inner_seen_at and inner_digest).
    host_seen_at = models.DateTimeField(null=True, blank=True)
    host_digest = models.CharField(max_length=40, blank=True)

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def is_local(self):
        """The panel's own host, reached through its socket."""
        return not self.docker_url

    @property
    def is_here(self):
        """The node this process sits on (NODE_NAME): its engine's socket, its servers' folders
        and inner daemons are this machine's."""
        return self.name == settings.NODE_NAME

    @property
    def is_offline(self):
        """Its engine not reached, or its worker (once it had one) not heard from, for
        OFFLINE_AFTER_CYCLES monitor cycles: its servers are marked so."""
        cutoff = self.offline_cutoff()
        engine_away = bool(self.contact_error) and (self.contacted_at or self.created_at) < cutoff
        return engine_away or (not self.is_local and self.worker_seen_at is not None and self.worker_seen_at < cutoff)

    @property
    def key_prefix(self):
        """Every Redis key its worker uses starts with this (its broker user reaches no other)."""
        return f"node:{self.name}:"

    @property
    def broker_user(self):
        return f"node-{self.name}"

    @property
    def queue(self):
        """Where its server work goes (disks, socket folders, inner daemons are its machine's):
        Celery's default queue for the panel's own host, else the queue its own worker takes."""
        return "celery" if self.is_local else f"{self.key_prefix}servers"

    @property
    def tenant_queue(self):
        """Where its tenants' work goes (deploys, container actions): apart, as on the panel's host."""
        return settings.TENANT_QUEUE if self.is_local else f"{self.key_prefix}tenants"

    @property
    def has_worker(self):
        return self.is_local or (self.worker_seen_at is not None and self.worker_seen_at >= self.offline_cutoff())

    @classmethod
    def offline_cutoff(cls):
        """Nodes last reached before this are offline."""
        return timezone.now() - timedelta(seconds=settings.MONITOR_INTERVAL * cls.OFFLINE_AFTER_CYCLES - 5)

    @property
    def capacity_mb(self):
        """Memory it may promise its servers: its own (or its engine's) × how far it may be overcommitted."""
        memory = self.memory_mb or (self.facts.get("memory_bytes") or 0) // 2**20 or None
        return None if memory is None else int(memory * self.overcommit)

    @property
    def address(self):
        """Its engine's host (what its certificate is for)."""
        return urlsplit(self.docker_url).hostname or ""

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
