"""What runs inside a server: its containers, as its daemon lists them, and the apps deployed from the panel."""

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Count
from django.db.models.fields.json import KT
from django.utils import timezone

from .servers import OfServerQuerySet, VirtualServer


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
    # When its state began: the read's time less the age in Docker's status text
    # (docker_age); the page counts on from there.
    state_since = models.DateTimeField(null=True, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    # When it was last written: an unchanged row is never rewritten; when its
    # daemon was last read is on its server (or node, for the host's).
    last_changed = models.DateTimeField(default=timezone.now)
    # An action its owner asked for from the panel, until the worker has done it
    # (the monitor never writes these).
    action = models.CharField(max_length=16, blank=True)
    action_error = models.CharField(max_length=255, blank=True)

    objects = OfServerQuerySet.as_manager()

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
    def status_around_age(self):
        """Docker's status text before and after its age ("Exited (0) ", " ago"), or None: the page puts a live age between."""
        age = docker_age(self.status)
        return age and age[1:]

    @property
    def state_class(self):
        """A CSS class for the state a daemon reported (anything unknown gets one class)."""
        return self.state if self.state in self.KNOWN_STATES else "unknown"


class ImageSnapshot(models.Model):
    """One image in a server's daemon, as it last listed it (read when someone looks at the
    server's images). It comes from inside the server: bounded when stored, escaped when shown."""

    server = models.ForeignKey(VirtualServer, on_delete=models.CASCADE, related_name="images")
    image_id = models.CharField(max_length=128)
    tags = models.JSONField(default=list, blank=True)
    size = models.BigIntegerField(default=0)
    created = models.DateTimeField(null=True, blank=True)
    # A removal its owner asked for, until the worker has tried it (the refresh never writes these).
    action = models.CharField(max_length=16, blank=True)
    action_error = models.CharField(max_length=255, blank=True)

    objects = OfServerQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "image_id"]
        constraints = [models.UniqueConstraint(fields=["server", "image_id"], name="%(app_label)s_%(class)s_unique")]

    def __str__(self):
        return self.tags[0] if self.tags else self.short_id

    @property
    def short_id(self):
        return self.image_id.removeprefix("sha256:")[:12]


# Docker says how long a container has been in its state in words (go-units' HumanDuration,
# rounded down): "Up Less than a second", "Up About an hour (healthy)", "Exited (0) 3 days ago".
DOCKER_AGE = re.compile(r"(?P<before>(?:Up|Exited \(-?\d+\)|Restarting \(-?\d+\)) )"
                        r"(?:Less than a second|About an? (?P<about>minute|hour)|(?P<count>\d{1,6}) (?P<unit>second|minute|hour|day|week|month|year)s?)")
AGE_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400}


def docker_age(status):
    """(seconds, the text before the age, the text after it) of a Docker status text, or None if it tells no age."""
    match = DOCKER_AGE.match(status or "")
    if not match:
        return None
    if match["about"]:
        seconds = AGE_SECONDS[match["about"]]
    else:
        seconds = int(match["count"] or 0) * AGE_SECONDS[match["unit"] or "second"]
    return seconds, match["before"], status[match.end():]


def app_container_states(server_id):
    """{compose project: {state: how many}} of a server's containers, as its daemon last listed them."""
    rows = (ContainerSnapshot.objects.filter(server_id=server_id)
            .annotate(project=KT(f"labels__{ContainerSnapshot.COMPOSE_PROJECT}"))
            .values_list("project", "state").annotate(count=Count("pk")).order_by())
    states = {}
    for project, state, count in rows:
        states.setdefault(project, {})[state] = count
    return states


def validate_app_name(value):
    if not APP_NAME.fullmatch(value):
        raise ValidationError("Use lowercase letters, digits, - and _, starting with a letter or digit (at most 40).",
                              code="invalid_app_name")


APP_NAME_TAKEN = "This server already has an app of that name."
APP_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


class App(models.Model):
    """A compose project inside a server, deployed from the panel: `docker compose -p <name> up -d`."""

    class Status(models.TextChoices):
        NEW = "new", "Not deployed yet"
        DEPLOYING = "deploying", "Deploying"
        STARTING = "starting", "Starting"
        RUNNING = "running", "Deployed"  # and not stopped: its containers say how it is (health)
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

    objects = OfServerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["server", "name"], name="%(app_label)s_%(class)s_unique_name",
                                    violation_error_message=APP_NAME_TAKEN),
        ]

    def __str__(self):
        return self.name

    @property
    def is_busy(self):
        return self.status in (self.Status.DEPLOYING, self.Status.STARTING, self.Status.STOPPING, self.Status.REMOVING)

    def health(self, states, *, server_running):
        """(a state's CSS name, words) of how the app is: what the panel is doing to it, else, deployed
        and not stopped, what its containers do (`states`: {state: how many}, as the daemon listed them)."""
        if self.status != self.Status.RUNNING:
            return "busy" if self.is_busy else self.status, self.get_status_display()
        if not server_running:
            return "exited", "Server not running"
        total, running = sum(states.values()), states.get("running", 0)
        if not total:
            return "failed", "No containers"
        if states.get("restarting"):
            return "restarting", f"Restarting ({running} of {total} running)"
        if running == total:
            return "running", "Running" if total == 1 else f"Running ({total} of {total})"
        return ("partial", f"{running} of {total} running") if running else ("exited", "Exited")


class AppDeployment(models.Model):
    """One deploy, stop or removal of an app: who, when, with which file, and what compose said."""

    class Action(models.TextChoices):
        DEPLOY = "deploy", "Deploy"
        START = "start", "Start"  # its containers again, as last deployed (also when its server starts)
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
