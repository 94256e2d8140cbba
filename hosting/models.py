import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Min, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from .domain_names import ERRORS, display_domain

UIDS_PER_SERVER = 65536  # rootless: a server's root on the host, then 65,535 ids for its containers' users
SERVER_GOING = "This virtual server is being deleted."

# Letters of any language, digits, spaces and -_.()
SERVER_NAME_PATTERN = re.compile(r"^[\w \-.()]+$")


def validate_server_name(value):
    if not SERVER_NAME_PATTERN.fullmatch(value):
        raise ValidationError(
            "Use letters, digits, spaces and - _ . ( ) only.", code="invalid_server_name"
        )


class Node(models.Model):
    """A Docker host the panel drives."""

    name = models.SlugField(max_length=64, unique=True)
    docker_url = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    # Its engine's own container list, as the monitor last read it (see
    # VirtualServer.inner_seen_at and inner_digest).
    host_seen_at = models.DateTimeField(null=True, blank=True)
    host_digest = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @classmethod
    def local(cls):
        """The node configured from settings, created on first use."""
        node, _ = cls.objects.get_or_create(
            name=settings.NODE_NAME, defaults={"docker_url": settings.DOCKER_HOST_URL}
        )
        return node


class VirtualServerQuerySet(models.QuerySet):
    def live(self):
        return self.filter(deleted_at__isnull=True)

    def for_user(self, user):
        """What `user` may see: their own live servers, or every live server for admins."""
        servers = self.live()
        return servers if user.is_admin else servers.filter(owner=user)

    def free_slot(self):
        """The lowest slot no server in this queryset (one node's) holds."""
        taken = self.filter(slot__isnull=False)
        if not taken.filter(slot=1).exists():
            return 1
        return taken.annotate(after=F("slot") + 1).exclude(after__in=taken.values("slot")).aggregate(Min("after"))["after__min"]

    def in_state(self, state):
        """The servers whose badge says `state` (a VirtualServer.State)."""
        return self.filter(self.model.state_q(state))

    # Correlated COUNT(*) subqueries. The ORM's Subquery(Count) form took 3 ms
    # more per page (benchmark_pages: user server list) and needs a Coalesce.
    DOMAIN_COUNT = "SELECT COUNT(*) FROM hosting_domain WHERE server_id = hosting_virtualserver.id"
    CONTAINER_COUNT = "SELECT COUNT(*) FROM hosting_containersnapshot WHERE server_id = hosting_virtualserver.id"

    def with_counts(self):
        """Each server's domain and container counts."""
        return self.annotate(domain_count=RawSQL(self.DOMAIN_COUNT, ()), container_count=RawSQL(self.CONTAINER_COUNT, ()))


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

    class ObservedState(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        CREATED = "created", "Created"
        RUNNING = "running", "Running"
        RESTARTING = "restarting", "Restarting"
        PAUSED = "paused", "Paused"
        EXITED = "exited", "Stopped"
        DEAD = "dead", "Dead"
        MISSING = "missing", "No container"

    class State(models.TextChoices):
        """What a server's badge says: the operation under way, else what was last seen."""

        CREATING = "creating", "Creating"
        STARTING = "starting", "Starting"
        STOPPING = "stopping", "Stopping"
        RESTARTING = "restarting", "Restarting"
        DELETING = "deleting", "Deleting"
        FAILED = "failed", "Failed"  # its create failed: no container
        UNREACHABLE = "unreachable", "Unreachable"  # running, but its inner daemon does not answer
        UNKNOWN = "unknown", "Unknown"
        CREATED = "created", "Created"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        EXITED = "exited", "Stopped"
        DEAD = "dead", "Dead"
        MISSING = "missing", "No container"

    # Nulled only when a user is deleted, which needs all their servers deleted first.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="servers")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="servers")
    name = models.CharField(max_length=64, validators=[validate_server_name])
    desired_state = models.CharField(max_length=16, choices=DesiredState.choices, default=DesiredState.RUNNING)
    operation = models.CharField(max_length=16, choices=Operation.choices, default=Operation.NONE, blank=True)
    observed_state = models.CharField(max_length=16, choices=ObservedState.choices, default=ObservedState.UNKNOWN)
    observed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Its place on its node while it exists, given by the worker before its
    # container is made and freed once it is deleted: its address on the users'
    # network and (rootless) its host uid range follow from it. Ids grow without
    # bound; slots are as many as the node has room for.
    slot = models.PositiveIntegerField(null=True, blank=True)
    # Its address on the users' network: where Caddy sends its domains' traffic.
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    # The inner daemon, as the monitor sees it: when it last answered, how many
    # polls in a row failed since, and when to try again (failures back off).
    inner_seen_at = models.DateTimeField(null=True, blank=True)
    # Of the whole list it last gave: a daemon whose list is unchanged costs
    # no snapshot read or write. Its rows are pruned by inner_seen_at.
    inner_digest = models.CharField(max_length=40, blank=True)
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
        return None if self.slot is None else settings.SERVER_UID_BASE + self.slot * UIDS_PER_SERVER

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


class DomainQuerySet(models.QuerySet):
    def for_user(self, user):
        domains = self.filter(server__deleted_at__isnull=True)
        return domains if user.is_admin else domains.filter(server__owner=user)

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


class InsideServerQuerySet(models.QuerySet):
    """Rows that belong to a live server: its owner's (and every admin's)."""

    def for_user(self, user):
        rows = self.filter(server__deleted_at__isnull=True)
        return rows if user.is_admin else rows.filter(server__owner=user)


class ContainerSnapshot(models.Model):
    """One container as a daemon last listed it: the host's (server NULL) or a server's inner one.

    Everything here may come from inside a virtual server, whose owner is root
    there: it is bounded in size when stored and escaped when shown.
    """

    server = models.ForeignKey(VirtualServer, null=True, blank=True, on_delete=models.CASCADE, related_name="containers")
    docker_id = models.CharField(max_length=128)
    name = models.CharField(max_length=255, blank=True)
    image = models.CharField(max_length=512, blank=True)
    command = models.TextField(blank=True)
    created = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=255, blank=True)
    ports = models.JSONField(default=list, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    networks = models.JSONField(default=dict, blank=True)
    mounts = models.JSONField(default=list, blank=True)
    digest = models.CharField(max_length=40)  # of the fields above: rewrite only on change
    first_seen = models.DateTimeField(default=timezone.now)
    # When it was last written: an unchanged row is never rewritten; when its
    # daemon was last read is on its server (or node, for the host's).
    last_changed = models.DateTimeField(default=timezone.now)
    # An action its owner asked for from the panel, until the worker has done it
    # (the monitor never writes these).
    action = models.CharField(max_length=16, blank=True)
    action_error = models.CharField(max_length=255, blank=True)

    objects = InsideServerQuerySet.as_manager()

    class Meta:
        ordering = ["name", "docker_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["server", "docker_id"],
                condition=models.Q(server__isnull=False),
                name="%(app_label)s_%(class)s_unique_inner",
                violation_error_message="This container is already recorded for this server.",
            ),
            models.UniqueConstraint(
                fields=["docker_id"],
                condition=models.Q(server__isnull=True),
                name="%(app_label)s_%(class)s_unique_host",
                violation_error_message="This container is already recorded for the host.",
            ),
        ]

    def __str__(self):
        return self.name or self.docker_id[:12]

    KNOWN_STATES = {"created", "running", "restarting", "paused", "exited", "dead", "removing"}
    COMPOSE_PROJECT = "com.docker.compose.project"

    class Action(models.TextChoices):
        START = "start", "Start"
        STOP = "stop", "Stop"
        RESTART = "restart", "Restart"
        REMOVE = "remove", "Remove"

    @property
    def project(self):
        """The compose project it belongs to, or ""."""
        return self.labels.get(self.COMPOSE_PROJECT, "") if isinstance(self.labels, dict) else ""

    @property
    def is_running(self):
        return self.state == "running"

    @property
    def state_class(self):
        """A CSS class for the state a daemon reported (anything unknown gets one class)."""
        return self.state if self.state in self.KNOWN_STATES else "unknown"


class MonitorRun(models.Model):
    """One poll cycle, for the admin's monitor status panel."""

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    duration_ms = models.PositiveIntegerField(default=0)
    daemons_polled = models.PositiveIntegerField(default=0)
    daemons_failed = models.PositiveIntegerField(default=0)
    containers_seen = models.PositiveIntegerField(default=0)
    rows_written = models.PositiveIntegerField(default=0)
    rows_pruned = models.PositiveIntegerField(default=0)
    slowest_read_ms = models.PositiveIntegerField(default=0)
    total_read_ms = models.PositiveIntegerField(default=0)  # sum over daemons; reads overlap
    db_ms = models.PositiveIntegerField(default=0)  # the cycle's database work, reads excluded
    failures = models.JSONField(default=list, blank=True)  # [{"daemon": ..., "error": ...}]
    host = models.JSONField(default=dict, blank=True)  # CPUs, memory, Docker version, disk free

    class Meta:
        ordering = ["-started_at"]

    def __str__(self):
        return f"cycle at {self.started_at:%H:%M:%S}: {self.daemons_polled} daemons, {self.daemons_failed} failed"


class Lock(models.Model):
    """A named row that transactions lock to do one thing at a time, panel-wide
    (whatever the number of nodes and processes)."""

    # Proxy changes: each renders Caddy's configuration with every earlier change in it.
    PROXY = "proxy-configuration"

    name = models.CharField(primary_key=True, max_length=64)

    def __str__(self):
        return self.name

    @classmethod
    def hold(cls, name):
        """Wait for the lock and keep it until the current transaction ends."""
        cls.objects.get_or_create(name=name)
        cls.objects.select_for_update().get(name=name)


class TerminalSession(models.Model):
    """One shell the gateway opened in a server, for a browser or an SSH client."""

    class Kind(models.TextChoices):
        BROWSER = "browser", "Browser"
        SSH = "ssh", "SSH"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="terminals")
    server = models.ForeignKey(VirtualServer, on_delete=models.CASCADE, related_name="terminals")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.BROWSER)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=255, blank=True)
    end_requested_at = models.DateTimeField(null=True, blank=True)  # an admin asked the gateway to end it
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


def validate_app_name(value):
    if not APP_NAME.fullmatch(value):
        raise ValidationError("Use lowercase letters, digits, - and _, starting with a letter or digit (at most 40).",
                              code="invalid_app_name")


APP_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


class App(models.Model):
    """A compose project inside a server, deployed from the panel: `docker compose -p <name> up -d`."""

    class Status(models.TextChoices):
        NEW = "new", "Not deployed yet"
        DEPLOYING = "deploying", "Deploying"
        RUNNING = "running", "Deployed"
        STOPPING = "stopping", "Stopping"
        STOPPED = "stopped", "Stopped"
        REMOVING = "removing", "Removing"
        FAILED = "failed", "Failed"

    server = models.ForeignKey(VirtualServer, on_delete=models.CASCADE, related_name="apps")
    name = models.CharField(max_length=40, validators=[validate_app_name])
    compose_file = models.TextField(blank=True)  # the file of its last deploy that worked
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InsideServerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["server", "name"], name="%(app_label)s_%(class)s_unique_name",
                                    violation_error_message="This server already has an app of that name."),
        ]

    def __str__(self):
        return self.name

    @property
    def is_busy(self):
        return self.status in (self.Status.DEPLOYING, self.Status.STOPPING, self.Status.REMOVING)


class AppDeployment(models.Model):
    """One deploy, stop or removal of an app: who, when, with which file, and what compose said."""

    class Action(models.TextChoices):
        DEPLOY = "deploy", "Deploy"
        STOP = "stop", "Stop"
        REMOVE = "remove", "Remove"

    class Result(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    OUTPUT_LIMIT = 32 * 1024  # the tail of compose's output that is kept

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="deployments")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=16, choices=Action.choices, default=Action.DEPLOY)
    compose_file = models.TextField(blank=True)
    result = models.CharField(max_length=16, choices=Result.choices, default=Result.RUNNING)
    output = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]

    def __str__(self):
        return f"{self.action} of {self.app_id} at {self.started_at:%Y-%m-%d %H:%M}"
