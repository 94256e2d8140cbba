"""Virtual servers: who owns them, what they should be, what was last seen of them."""

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Min, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from .nodes import Node

UIDS_PER_SERVER = 65536  # rootless: a server's root on the host, then 65,535 ids for its containers' users
SERVER_GOING = "This virtual server is being deleted."

# Letters of any language, digits, spaces and -_.()
SERVER_NAME_PATTERN = re.compile(r"^[\w \-.()]+$")


def validate_server_name(value):
    if not SERVER_NAME_PATTERN.fullmatch(value):
        raise ValidationError(
            "Use letters, digits, spaces and - _ . ( ) only.", code="invalid_server_name"
        )


def visible_to(user, through=""):
    """Who may see a server, and what belongs to it (`through`: the path to the server):
    its owner, and every admin; nobody once it is deleted. VirtualServer.is_visible_to is the same rule in Python."""
    live = Q(**{f"{through}deleted_at__isnull": True})
    return live if user.is_admin else live & Q(**{f"{through}owner": user})


class VirtualServerQuerySet(models.QuerySet):
    def live(self):
        return self.filter(deleted_at__isnull=True)

    def for_user(self, user):
        """What `user` may see: their own live servers, or every live server for admins."""
        return self.filter(visible_to(user))

    def free_slot(self):
        """The lowest slot no server in this queryset (one node's) holds."""
        taken = self.filter(slot__isnull=False)
        if not taken.filter(slot=1).exists():
            return 1
        return taken.annotate(after=F("slot") + 1).exclude(after__in=taken.values("slot")).aggregate(Min("after"))["after__min"]

    def in_state(self, state):
        """The servers whose badge says `state` (a VirtualServer.State)."""
        return self.filter(self.model.state_q(state))

    # A correlated COUNT(*) subquery. The ORM's Subquery(Count) form took 3 ms
    # more per page (benchmark_pages: user server list) and needs a Coalesce.
    DOMAIN_COUNT = "SELECT COUNT(*) FROM hosting_domain WHERE server_id = hosting_virtualserver.id"

    def with_counts(self):
        """Each server's domain count (its containers' is stored: container_count)."""
        return self.annotate(domain_count=RawSQL(self.DOMAIN_COUNT, ()))


class VirtualServer(models.Model):
    """A Docker-in-Docker container named `<prefix><id>`: the id is the contract."""

    class DesiredState(models.TextChoices):
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"
        DELETED = "deleted", "Deleted"

    class Operation(models.TextChoices):
        NONE = "", "None"
        CREATING = "creating", "Creating"
        STARTING = "starting", "Starting"
        STOPPING = "stopping", "Stopping"
        RESTARTING = "restarting", "Restarting"
        DELETING = "deleting", "Deleting"
        MOVING = "moving", "Moving"  # to another node (moving_to)

    class ObservedState(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        CREATED = "created", "Created"
        RUNNING = "running", "Running"
        RESTARTING = "restarting", "Restarting"
        PAUSED = "paused", "Paused"
        EXITED = "exited", "Stopped"
        DEAD = "dead", "Dead"
        MISSING = "missing", "No container"
        NODE_OFFLINE = "node_offline", "Node offline"  # its node's engine has not answered for two cycles

    class State(models.TextChoices):
        """What a server's badge says: the operation under way, else what was last seen."""

        CREATING = "creating", "Creating"
        STARTING = "starting", "Starting"
        STOPPING = "stopping", "Stopping"
        RESTARTING = "restarting", "Restarting"
        DELETING = "deleting", "Deleting"
        MOVING = "moving", "Moving"
        FAILED = "failed", "Failed"  # its create failed: no container
        UNREACHABLE = "unreachable", "Unreachable"  # running, but its inner daemon does not answer
        UNKNOWN = "unknown", "Unknown"
        CREATED = "created", "Created"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        EXITED = "exited", "Stopped"
        DEAD = "dead", "Dead"
        MISSING = "missing", "No container"
        NODE_OFFLINE = "node_offline", "Node offline"

    # Nulled only when a user is deleted, which needs all their servers deleted first.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="servers")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="servers")
    name = models.CharField(max_length=64, validators=[validate_server_name])
    desired_state = models.CharField(max_length=16, choices=DesiredState.choices, default=DesiredState.RUNNING)
    operation = models.CharField(max_length=16, choices=Operation.choices, default=Operation.NONE, blank=True)
    observed_state = models.CharField(max_length=16, choices=ObservedState.choices, default=ObservedState.UNKNOWN)
    observed_at = models.DateTimeField(null=True, blank=True)
    # When its container last started, in its engine's words (StartedAt): another value means it
    # started again (its owner, a restart policy, its machine back up), and its apps start too.
    container_started_at = models.CharField(max_length=40, blank=True)
    last_error = models.TextField(blank=True)
    # Its place on its node while it exists, given by the worker before its
    # container is made and freed once it is deleted: its address on the users'
    # network and (rootless) its host uid range follow from it. Ids grow without
    # bound; slots are as many as the node has room for.
    slot = models.PositiveIntegerField(null=True, blank=True)
    # A move to another node (hosting.worker.moves), while it lasts: where to, whether its node's
    # worker has it stopped with its disk at hand, and its slot there once a container waits there.
    moving_to = models.ForeignKey(Node, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    move_source_ready = models.BooleanField(default=False)
    move_slot = models.PositiveIntegerField(null=True, blank=True)
    # Its address on the users' network: where Caddy sends its domains' traffic.
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    # The inner daemon, as the monitor sees it: when it last answered, how many
    # polls in a row failed since, and when to try again (failures back off).
    inner_seen_at = models.DateTimeField(null=True, blank=True)
    images_read_at = models.DateTimeField(null=True, blank=True)  # its daemon's images last listed (ImageSnapshot)
    # Of the whole list it last gave: a daemon whose list is unchanged costs
    # no snapshot read or write. Its rows are pruned by inner_seen_at.
    inner_digest = models.CharField(max_length=40, blank=True)
    container_count = models.PositiveIntegerField(default=0)  # how many containers that list had (the monitor writes it with it)
    inner_failures = models.PositiveIntegerField(default=0)
    inner_next_poll_at = models.DateTimeField(null=True, blank=True)
    memory_mb = models.PositiveIntegerField(validators=[MinValueValidator(64), MaxValueValidator(1024 * 1024)])
    cpus = models.DecimalField(max_digits=6, decimal_places=2, validators=[MinValueValidator(0.01), MaxValueValidator(1024)])
    pids_limit = models.PositiveIntegerField(validators=[MinValueValidator(32), MaxValueValidator(4_194_304)])
    # Its disk on the node (hosting.backends.disks): everything its owner can keep, at most this
    # much. Empty: a server made before disks had quotas, on a Docker volume.
    disk_mb = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(256), MaxValueValidator(16 * 1024 * 1024)])
    disk_used_mb = models.PositiveIntegerField(null=True, blank=True)  # as the monitor last read it
    disk_full = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Moved over from the legacy platform: its container predates our labels.
    imported = models.BooleanField(default=False)

    objects = VirtualServerQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            # Ids name containers and URLs (/servers/<id>/): positive, always.
            models.CheckConstraint(condition=Q(pk__gt=0), name="%(app_label)s_%(class)s_positive_id",
                                   violation_error_message="A virtual server's id must be positive."),
            models.UniqueConstraint(fields=["node", "slot"], name="hosting_server_slot_unique"),
        ]
        indexes = [
            models.Index(fields=["owner", "deleted_at"], name="hosting_server_owner_idx"),
            models.Index(fields=["observed_state"], name="hosting_server_observed_idx"),
        ]

    def __str__(self):
        return f"{self.name} (#{self.pk})"

    @property
    def container_name(self):
        return f"{settings.SERVER_CONTAINER_PREFIX}{self.pk}"

    @property
    def hostname(self):
        return f"server{self.pk}"

    @property
    def volume_name(self):
        return f"{self.container_name}-docker"

    @property
    def socket_dir(self):
        return settings.SERVER_SOCKET_ROOT / str(self.pk)

    @property
    def disk_image(self):
        return settings.SERVER_DISK_ROOT / f"{self.pk}.img"

    @property
    def disk_dir(self):
        """Where its disk is mounted on the node."""
        return settings.SERVER_DISK_ROOT / str(self.pk)

    @property
    def identity_dir(self):
        """Its accounts (passwd, subuid, ...), root's, mounted read-only in it."""
        return settings.SERVER_SOCKET_ROOT / f"{self.pk}.identity"

    @property
    def host_uid(self):
        """Rootless isolation: the host uid its root maps to (the next 65,535 are its containers' users)."""
        return None if self.slot is None else self.node.server_uid_base + self.slot * UIDS_PER_SERVER

    def is_visible_to(self, user):
        """visible_to(), for a server at hand."""
        return not self.deleted_at and (user.is_admin or self.owner_id == user.pk)

    @property
    def is_busy(self):
        return bool(self.operation)

    @property
    def is_going(self):
        """Deleted, or being deleted: nothing new may be done with it."""
        return bool(self.deleted_at) or self.desired_state == self.DesiredState.DELETED

    def refuse_if_going(self):
        if self.is_going:
            raise ValidationError(SERVER_GOING, code="server_deleting")

    @property
    def state(self):
        """The State its badge shows. state_q() is the same rule in SQL."""
        Observed = self.ObservedState
        if self.operation:
            return self.State(self.operation)
        if self.last_error and self.observed_state == Observed.MISSING:
            return self.State.FAILED
        if self.observed_state == Observed.RUNNING and self.inner_failures:
            return self.State.UNREACHABLE
        return self.State(self.observed_state)

    @classmethod
    def state_q(cls, state):
        """A filter for the servers whose `state` is `state`."""
        State, Observed = cls.State, cls.ObservedState
        if state in cls.Operation.values:
            busy = Q(operation=state)
            return busy | Q(operation="", observed_state=Observed.RESTARTING) if state == State.RESTARTING else busy
        idle = Q(operation="")
        if state == State.FAILED:
            return idle & Q(observed_state=Observed.MISSING) & ~Q(last_error="")
        if state == State.MISSING:
            return idle & Q(observed_state=Observed.MISSING, last_error="")
        if state == State.UNREACHABLE:
            return idle & Q(observed_state=Observed.RUNNING, inner_failures__gt=0)
        if state == State.RUNNING:
            return idle & Q(observed_state=Observed.RUNNING, inner_failures=0)
        return idle & Q(observed_state=state)


class OfServerQuerySet(models.QuerySet):
    """Rows that belong to a server (its domains, containers, apps): visible as their server is."""

    def for_user(self, user):
        return self.filter(visible_to(user, through="server__"))
