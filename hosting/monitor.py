"""One poll cycle: read every daemon, write container snapshots, prune, record server states.

Reads happen concurrently in threads (each only talks HTTP); all database
writes happen afterwards in the calling thread, a constant number of queries
per daemon however many containers it has.
"""

import hashlib
import json
import logging
import re
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import docker, proxy
from .models import ContainerSnapshot, MonitorRun, VirtualServer

log = logging.getLogger(__name__)
LOCK_KEY = "hosting:monitor:lock"
Observed = VirtualServer.ObservedState
SNAPSHOT_FIELDS = ["name", "image", "command", "created", "state", "status", "ports", "labels", "networks", "mounts"]
HOST = None  # the daemon key of the host; a server id for an inner daemon


@dataclass
class DaemonRead:
    server_id: int | None
    rows: dict = field(default_factory=dict)  # docker id -> snapshot fields, parsed once when read
    error: str = ""
    seconds: float = 0.0


# Untrusted data, bounded ------------------------------------------------------

def _text(value, limit):
    if value is None:
        return ""
    return (value if isinstance(value, str) else json.dumps(value, default=str))[:limit]


def _items(value, limit):
    return value[:limit] if isinstance(value, list) else []


def _created(value):
    try:
        return datetime.fromtimestamp(int(value), tz=dt_timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _ports(value):
    ports = []
    for port in _items(value, 50):
        if not isinstance(port, dict):
            continue
        private = f"{_text(port.get('PrivatePort'), 10)}/{_text(port.get('Type'), 8)}"
        public = port.get("PublicPort")
        ports.append(f"{_text(port.get('IP'), 45)}:{_text(public, 10)}→{private}" if public else private)
    return ports


def _labels(value):
    if not isinstance(value, dict):
        return {}
    return {_text(k, 128): _text(v, 512) for k, v in list(value.items())[:64]}


def _networks(value):
    networks = value.get("Networks") if isinstance(value, dict) else None
    if not isinstance(networks, dict):
        return {}
    return {
        _text(name, 128): _text(net.get("IPAddress") if isinstance(net, dict) else "", 45)
        for name, net in list(networks.items())[:16]
    }


def _mounts(value):
    return [
        f"{_text(m.get('Source') or m.get('Name'), 256)}:{_text(m.get('Destination'), 256)}"
        for m in _items(value, 32)
        if isinstance(m, dict)
    ]


def snapshot_fields(entry):
    """Our bounded, flat form of one `/containers/json` entry, or None if it has no usable id."""
    if not isinstance(entry, dict):
        return None
    docker_id = entry.get("Id")
    if not isinstance(docker_id, str) or not re.fullmatch(r"[0-9a-zA-Z]{1,128}", docker_id):
        return None
    names = entry.get("Names")
    name = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else ""
    fields = {
        "name": name.lstrip("/")[:255],
        "image": _text(entry.get("Image"), 512),
        "command": _text(entry.get("Command"), 2048),
        "created": _created(entry.get("Created")),
        "state": _text(entry.get("State"), 32),
        "status": _text(entry.get("Status"), 255),
        "ports": _ports(entry.get("Ports")),
        "labels": _labels(entry.get("Labels")),
        "networks": _networks(entry.get("NetworkSettings")),
        "mounts": _mounts(entry.get("Mounts")),
    }
    return docker_id, fields


def _digest(fields):
    return hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


# Reading -----------------------------------------------------------------------

def _read_host():
    return _read(HOST, lambda: docker.host_containers_json(timeout=settings.MONITOR_DAEMON_TIMEOUT))


def _read_inner(server):
    return _read(server.pk, lambda: docker.inner_containers_json(
        str(server.socket_dir), timeout=settings.MONITOR_DAEMON_TIMEOUT, max_bytes=settings.MONITOR_MAX_BODY_BYTES))


def _read(server_id, fetch):
    started = time.perf_counter()
    try:
        containers = fetch()
        if not isinstance(containers, list):
            raise docker.DockerError("The daemon's container list is not a list.")
        rows = dict(filter(None, map(snapshot_fields, containers[: settings.MONITOR_MAX_CONTAINERS])))
        return DaemonRead(server_id, rows, seconds=time.perf_counter() - started)
    except docker.DockerError as error:
        return DaemonRead(server_id, error=str(error), seconds=time.perf_counter() - started)


def read_inner_daemons(servers):
    """Read the servers' inner daemons concurrently, each bounded by its own timeout."""
    if not servers:
        return []
    with ThreadPoolExecutor(max_workers=settings.MONITOR_CONCURRENCY) as pool:
        return list(pool.map(_read_inner, servers))


# Writing -----------------------------------------------------------------------

def write_snapshots(reads, now):
    """Upsert the rows of the daemons that answered: insert new, rewrite changed, bump the rest, drop the vanished.

    Five queries at most for the whole batch, whatever the number of daemons
    and containers. A daemon that failed is not in `reads`: its rows stay.
    """
    rows = {(read.server_id, docker_id): fields for read in reads for docker_id, fields in read.rows.items()}
    daemons = Q(server_id__in=[r.server_id for r in reads if r.server_id is not None])
    if any(r.server_id is None for r in reads):
        daemons |= Q(server__isnull=True)
    existing = {
        (server_id, docker_id): (pk, digest)
        for server_id, docker_id, pk, digest in ContainerSnapshot.objects.filter(daemons).values_list("server_id", "docker_id", "pk", "digest")
    }

    new, changed, unchanged = [], [], []
    for key, fields in rows.items():
        digest = _digest(fields)
        server_id, docker_id = key
        if key not in existing:
            new.append(ContainerSnapshot(server_id=server_id, docker_id=docker_id, digest=digest, first_seen=now, last_seen=now, **fields))
        elif existing[key][1] != digest:
            changed.append(ContainerSnapshot(pk=existing[key][0], server_id=server_id, docker_id=docker_id, digest=digest, last_seen=now, **fields))
        else:
            unchanged.append(existing[key][0])
    vanished = [pk for key, (pk, _) in existing.items() if key not in rows]

    with transaction.atomic():
        if new:
            ContainerSnapshot.objects.bulk_create(new, batch_size=500)
        if changed:
            # An upsert on the primary key: one INSERT ... ON CONFLICT, much
            # cheaper to build than bulk_update's CASE per field and row.
            ContainerSnapshot.objects.bulk_create(
                changed, batch_size=500, update_conflicts=True, unique_fields=["id"],
                update_fields=[*SNAPSHOT_FIELDS, "digest", "last_seen"],
            )
        if unchanged:
            ContainerSnapshot.objects.filter(pk__in=unchanged).update(last_seen=now)
        if vanished:
            ContainerSnapshot.objects.filter(pk__in=vanished).delete()
    return len(new) + len(changed)


def prune_stale(now):
    deleted, _ = ContainerSnapshot.objects.filter(last_seen__lt=now - settings.MONITOR_STALE_AFTER).delete()
    return deleted


def _server_states_from_host(host_read, servers):
    """Each server's (container state, address on the users' network) as the host lists it."""
    seen = {
        fields["name"]: (fields["state"] or Observed.UNKNOWN, fields["networks"].get(settings.SERVER_NETWORK) or None)
        for fields in host_read.rows.values()
    }
    valid = set(Observed.values)
    states = {}
    for server in servers:
        state, ip = seen.get(server.container_name, (Observed.MISSING, None))
        states[server.pk] = (state if state in valid else Observed.UNKNOWN, ip)
    return states


def _record_server_states(servers, states, now):
    """Returns whether an address changed (the proxy must follow)."""
    changed, moved = [], False
    for server in servers:
        state, ip = states[server.pk]
        ip = ip if state == Observed.RUNNING else None  # a stopped server's address is nobody's to route to
        if (server.observed_state, server.ip_address) != (state, ip):
            moved |= server.ip_address != ip
            server.observed_state, server.ip_address = state, ip
            changed.append(server)
    if changed:
        VirtualServer.objects.bulk_update(changed, ["observed_state", "ip_address"], batch_size=500)
    VirtualServer.objects.filter(pk__in=[s.pk for s in servers]).update(observed_at=now)
    return moved


def _record_inner_results(reads, now):
    """Success resets a server's failure count; failures back off: 1, 2, 4 ... up to 16 cycles."""
    ok = [r.server_id for r in reads if not r.error]
    if ok:
        VirtualServer.objects.filter(pk__in=ok).update(inner_seen_at=now, inner_failures=0, inner_next_poll_at=None)
    failed = [r.server_id for r in reads if r.error]
    if failed:
        servers = list(VirtualServer.objects.filter(pk__in=failed).only("pk", "inner_failures"))
        for server in servers:
            server.inner_failures += 1
            cycles = min(2 ** (server.inner_failures - 1), 16)
            server.inner_next_poll_at = now + timedelta(seconds=settings.MONITOR_INTERVAL * cycles - 1)
        VirtualServer.objects.bulk_update(servers, ["inner_failures", "inner_next_poll_at"])


# The cycle ---------------------------------------------------------------------

def _due_for_inner_poll(server, states, now):
    return states[server.pk][0] == Observed.RUNNING and (server.inner_next_poll_at is None or server.inner_next_poll_at <= now)


def run_cycle():
    """One full poll. Returns the MonitorRun, or None when another cycle holds the lock."""
    token = secrets.token_hex(8)
    if not cache.add(LOCK_KEY, token, timeout=settings.MONITOR_LOCK_TIMEOUT):
        log.info("monitor: another cycle is running; skipping")
        return None
    try:
        return _cycle()
    finally:
        if cache.get(LOCK_KEY) == token:
            cache.delete(LOCK_KEY)


def host_facts():
    """The engine's facts, and the disk where servers keep their data, for the dashboard."""
    facts = {}
    try:
        facts.update(docker.engine_facts())
    except docker.DockerError:
        pass
    try:
        usage = shutil.disk_usage(settings.SERVER_SOCKET_ROOT if settings.SERVER_SOCKET_ROOT.exists() else settings.DATA_DIR)
        facts.update(disk_free_bytes=usage.free, disk_total_bytes=usage.total)
    except OSError:
        pass
    return facts


def _cycle():
    started, clock = timezone.now(), time.perf_counter()
    host_read = _read_host()
    servers = list(VirtualServer.objects.live().only(
        "pk", "observed_state", "ip_address", "operation", "inner_next_poll_at", "inner_failures", "created_at"))
    moved = False
    reads = [host_read]
    rows_written = 0
    if host_read.error:
        log.warning("monitor: host daemon failed: %s", host_read.error)
    else:
        now = timezone.now()
        states = _server_states_from_host(host_read, servers)
        inner_reads = read_inner_daemons([s for s in servers if _due_for_inner_poll(s, states, now)])
        reads += inner_reads
        with transaction.atomic():  # one commit for the whole cycle's writes
            rows_written = write_snapshots([r for r in reads if not r.error], now)
            moved = _record_server_states(servers, states, now)
            _record_inner_results(inner_reads, now)
    if moved:
        proxy.apply_quietly()  # domains follow their server to its new address
    failures = [{"daemon": "host" if r.server_id is None else f"server {r.server_id}", "error": r.error} for r in reads if r.error]
    return MonitorRun.objects.create(
        started_at=started,
        duration_ms=int((time.perf_counter() - clock) * 1000),
        daemons_polled=len(reads),
        daemons_failed=len(failures),
        containers_seen=sum(len(r.rows) for r in reads),
        rows_written=rows_written,
        rows_pruned=prune_stale(timezone.now()),
        slowest_read_ms=int(max(r.seconds for r in reads) * 1000),
        total_read_ms=int(sum(r.seconds for r in reads) * 1000),
        failures=failures[:50],
        host=host_facts() if not host_read.error else {},
    )


def refresh_server(server, wait=0.0):
    """Re-read one server's inner daemon right after a panel action.

    A daemon that was just started needs a moment: retry for up to `wait`
    seconds. Failures here are not counted: the cycle does that.
    """
    if server.observed_state != Observed.RUNNING:
        return
    deadline = time.monotonic() + wait
    while (read := _read_inner(server)).error and time.monotonic() < deadline:
        time.sleep(0.2)
    if not read.error:
        now = timezone.now()
        write_snapshots([read], now)
        _record_inner_results([read], now)


def runs_purge(keep=timedelta(days=1)):
    deleted, _ = MonitorRun.objects.filter(started_at__lt=timezone.now() - keep).delete()
    return deleted
