"""The panel's own housekeeping: the monitor's cycles and panel-wide locks."""

from django.db import models
from django.utils import timezone


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
