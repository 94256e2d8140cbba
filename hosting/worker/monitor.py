"""One poll cycle: read every daemon, write container snapshots, prune, record server states.

Reads happen concurrently in threads (each only talks HTTP), which also parse
and digest each answer: every row, and the whole list. All database writes
happen afterwards in the calling thread, a constant number of queries per
cycle: a daemon whose list is unchanged costs none of its rows a read or a
write, and a changed one only its new, changed and vanished rows. When each
daemon was last read is kept once per daemon (its server, or the node for the
host's engine), and its rows are pruned by that.
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
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from controlpanel.text import visible_controls

from ..backends import caddy, disks, docker
from ..models import ContainerSnapshot, MonitorRun, Node, VirtualServer
from ..models.workloads import docker_age

log = logging.getLogger(__name__)
LOCK_KEY = "hosting:monitor:lock"
Observed = VirtualServer.ObservedState
SNAPSHOT_FIELDS = ["name", "image", "command", "created", "state", "status", "ports", "labels", "networks", "mounts"]
HOST = None  # the daemon key of the host; a server id for an inner daemon
POLLED_FIELDS = ["pk", "container_started_at", "observed_state", "ip_address", "operation", "inner_next_poll_at", "inner_failures",
                 "inner_digest", "created_at", "disk_mb", "disk_used_mb", "disk_full"]


@dataclass
class DaemonRead:
    server_id: int | None
    rows: dict = field(default_factory=dict)  # docker id -> (digest, snapshot fields), made in the reader thread
    digest: str = ""  # of the whole list
    error: str = ""
    seconds: float = 0.0


# Untrusted data, bounded, its control characters made visible ----------------------

def _text(value, limit):
    if value is None:
        return ""
    return visible_controls((value if isinstance(value, str) else json.dumps(value, default=str))[:limit])


def _items(value, limit):
    return value[:limit] if isinstance(value, list) else []


def from_timestamp(value):
    """A time Docker gives in seconds since 1970, or None if it is not one."""
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
        "name": visible_controls(name.lstrip("/")[:255]),
        "image": _text(entry.get("Image"), 512),
        "command": _text(entry.get("Command"), 2048),
        "created": from_timestamp(entry.get("Created")),
        "state": _text(entry.get("State"), 32),
        "status": _text(entry.get("Status"), 255),
        "ports": _ports(entry.get("Ports")),
        "labels": _labels(entry.get("Labels")),
        "networks": _networks(entry.get("NetworkSettings")),
        "mounts": _mounts(entry.get("Mounts")),
    }
    return docker_id, fields


def _since(fields, now):
    """When the container's state began, by the age its status text tells (rewritten with the text)."""
    age = docker_age(fields["status"])
    return now - timedelta(seconds=age[0]) if age else None


def _digest(fields):
    return hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


# Reading -----------------------------------------------------------------------

def _read_engine(node):
    """A node's engine: its container list (the host's daemon read) and, when it answered, its facts."""
    engine = docker.Engine.of(node)
    read = _read(HOST, lambda: docker.host_containers_json(engine, timeout=settings.MONITOR_DAEMON_TIMEOUT))
    facts = {}
    if not read.error:
        try:
            facts = docker.engine_facts(engine)
        except docker.DockerError:
            pass
    return read, facts


def read_engines(nodes):
    """Every node's engine at once: a cycle costs about the slowest node's read, not their sum."""
    with ThreadPoolExecutor(max_workers=max(1, min(len(nodes), settings.MONITOR_CONCURRENCY))) as pool:
        return dict(zip(nodes, pool.map(_read_engine, nodes)))


def _read_inner(server):
    return _read(server.pk, lambda: docker.inner_containers_json(
        str(server.socket_dir), timeout=settings.MONITOR_DAEMON_TIMEOUT, max_bytes=settings.MONITOR_MAX_BODY_BYTES))


def _read(server_id, fetch):
    started = time.perf_counter()
    try:
        return digested(server_id, fetch(), started)
    except docker.DockerError as error:
        return DaemonRead(server_id, error=str(error), seconds=time.perf_counter() - started)


def digested(server_id, containers, started):
    """A daemon's `/containers/json` answer, bounded, parsed and digested."""
    if not isinstance(containers, list):
        raise docker.DockerError("The daemon's container list is not a list.")
    if server_id is not HOST:  # the host's engine is the panel's own, with a container per server
        containers = containers[: settings.MONITOR_MAX_CONTAINERS]
    rows = {}
    for docker_id, fields in filter(None, map(snapshot_fields, containers)):
        rows[docker_id] = (_digest(fields), fields)
    whole = hashlib.sha1("".join(sorted(f"{docker_id}:{digest};" for docker_id, (digest, _) in rows.items())).encode())
    return DaemonRead(server_id, rows, whole.hexdigest(), seconds=time.perf_counter() - started)


def read_inner_daemons(servers):
    """Read the servers' inner daemons concurrently, each bounded by its own timeout."""
    if not servers:
        return []
    with ThreadPoolExecutor(max_workers=settings.MONITOR_CONCURRENCY) as pool:
        return list(pool.map(_read_inner, servers))


# Writing -----------------------------------------------------------------------

def write_snapshots(reads, known, now):
    """Write what changed in the answers of the daemons that answered: insert new
    rows, rewrite changed ones, drop vanished ones. `known` is each daemon's
    digest as last stored ({server id or HOST: digest}); a daemon whose answer
    has that digest is skipped whole. A daemon that failed is not in `reads`:
    its rows stay. Returns (rows written, {daemon: new digest}). Call it in a
    transaction, with the digests' write.

    Seven statements at most for the whole batch, whatever the number of
    daemons and containers.
    """
    changed_reads = [read for read in reads if read.digest != known.get(read.server_id)]
    if not changed_reads:
        return 0, {}
    daemons = Q(server_id__in=[r.server_id for r in changed_reads if r.server_id is not None])
    if any(r.server_id is None for r in changed_reads):
        daemons |= Q(server__isnull=True)
    existing = {
        (server_id, docker_id): (pk, digest)
        for server_id, docker_id, pk, digest in ContainerSnapshot.objects.filter(daemons).values_list("server_id", "docker_id", "pk", "digest")
    }

    new, changed, seen = [], [], set()
    for read in changed_reads:
        for docker_id, (digest, fields) in read.rows.items():
            key = (read.server_id, docker_id)
            seen.add(key)
            if key not in existing:
                new.append({"server_id": read.server_id, "docker_id": docker_id, "digest": digest, "first_seen": now,
                            "last_changed": now, "action": "", "action_error": "", "state_since": _since(fields, now), **fields})
            elif existing[key][1] != digest:
                changed.append({"id": existing[key][0], "digest": digest, "last_changed": now, "state_since": _since(fields, now), **fields})
    vanished = [pk for key, (pk, _) in existing.items() if key not in seen]

    if new:
        _insert(new)
    if changed:
        _update(ContainerSnapshot, [*SNAPSHOT_FIELDS, "digest", "last_changed", "state_since"], changed)
    if vanished:
        ContainerSnapshot.objects.filter(pk__in=vanished).delete()
    return len(new) + len(changed), {read.server_id: read.digest for read in changed_reads}


# New and changed rows go in with COPY on PostgreSQL: building them as model
# instances and SQL parameters cost 0.2 ms a row (benchmark_monitor --synthetic);
# SQLite, for the local run, takes the ORM's bulk statements.
JSON_FIELDS = {"ports", "labels", "networks", "mounts"}


def _copy(cursor, table, rows):
    columns = list(rows[0])
    with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([json.dumps(row[c]) if c in JSON_FIELDS else row[c] for c in columns])


def _insert(rows):
    if connection.vendor != "postgresql":
        ContainerSnapshot.objects.bulk_create([ContainerSnapshot(**row) for row in rows], batch_size=500)
        return
    # Through a temporary table: PostgreSQL refuses COPY into a table under row-level
    # security, as the snapshots are for a node's own worker (migration 0015).
    table, columns = ContainerSnapshot._meta.db_table, ", ".join(rows[0])
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE monitor_new AS SELECT {columns} FROM {table} WITH NO DATA")
        _copy(cursor, "monitor_new", rows)
        cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM monitor_new")
        cursor.execute("DROP TABLE monitor_new")


def _update(model, fields, rows):
    """Rewrite `fields` of many rows (dicts with their "id") of `model`, each with values of its own."""
    if connection.vendor != "postgresql":
        model.objects.bulk_update([model(**row) for row in rows], fields, batch_size=500)
        return
    # bulk_update's CASE per field and row grows with the square of the rows on PostgreSQL.
    table = model._meta.db_table
    with connection.cursor() as cursor:  # in the caller's transaction: a failure leaves no table behind
        cursor.execute(f"CREATE TEMPORARY TABLE monitor_changes AS SELECT id, {', '.join(fields)} FROM {table} WITH NO DATA")
        _copy(cursor, "monitor_changes", rows)
        assignments = ", ".join(f"{f} = c.{f}" for f in fields)
        cursor.execute(f"UPDATE {table} AS t SET {assignments} FROM monitor_changes AS c WHERE t.id = c.id")
        cursor.execute("DROP TABLE monitor_changes")


def _store_digests(digests, counts, node, now):
    """Each daemon's new list digest (on its server, with how many containers it listed;
    on the node for the host's engine), and when the host's engine was read."""
    node.host_seen_at = now
    if HOST in digests:
        node.host_digest = digests.pop(HOST)
    node.save(update_fields=["host_seen_at", "host_digest"])
    if digests:
        _update(VirtualServer, ["inner_digest", "container_count"],
                [{"id": pk, "inner_digest": digest, "container_count": counts[pk]} for pk, digest in digests.items()])


def prune_stale(now, node):
    """Drop the rows of daemons not read for MONITOR_STALE_AFTER (and of deleted
    servers); they are written whole again when their daemon next answers. The
    servers of an offline node keep theirs until it is back."""
    cutoff = now - settings.MONITOR_STALE_AFTER
    stale = VirtualServer.objects.filter(Q(inner_seen_at__lt=cutoff) | Q(inner_seen_at__isnull=True) | Q(deleted_at__isnull=False),
                                         node=node).exclude(deleted_at__isnull=True, observed_state=Observed.NODE_OFFLINE)
    deleted, _ = ContainerSnapshot.objects.filter(server__in=stale.values("pk")).delete()
    stale.exclude(inner_digest="").update(inner_digest="", container_count=0)
    if node.is_local and (node.host_seen_at is None or node.host_seen_at < cutoff):  # the host's rows are the panel's host's
        Node.objects.filter(pk=node.pk).update(host_digest="")
        deleted += ContainerSnapshot.objects.filter(server__isnull=True).delete()[0]
    return deleted


def server_states_from_host(host_read, servers):
    """Each server's (container state, address on the users' network) as the host lists it."""
    seen = {
        fields["name"]: (fields["state"] or Observed.UNKNOWN, fields["networks"].get(settings.SERVER_NETWORK) or None)
        for _, fields in host_read.rows.values()
    }
    valid = set(Observed.values)
    states = {}
    for server in servers:
        state, ip = seen.get(server.container_name, (Observed.MISSING, None))
        states[server.pk] = (state if state in valid else Observed.UNKNOWN, ip)
    return states


def _record_server_states(servers, states, answered, now):
    """Each server's state as the host showed it, and when it was seen (and, for
    those in `answered`, its inner daemon): one write per server, and one more
    where its state changed. Returns whether an address changed (the proxy
    must follow)."""
    changed, moved = [], False
    for server in servers:
        state, ip = states[server.pk]
        ip = ip if state == Observed.RUNNING else None  # a stopped server's address is nobody's to route to
        if (server.observed_state, server.ip_address) != (state, ip):
            moved |= server.ip_address != ip
            server.observed_state, server.ip_address = state, ip
            changed.append(server)
    if changed:
        _update(VirtualServer, ["observed_state", "ip_address"],
                [{"id": s.pk, "observed_state": s.observed_state, "ip_address": s.ip_address} for s in changed])
    others = [s.pk for s in servers if s.pk not in answered]
    if others:
        VirtualServer.objects.filter(pk__in=others).update(observed_at=now)
    _record_answered(answered, now, observed_at=now)
    return moved


def _record_answered(server_ids, now, **also):
    """Their inner daemons answered: when, and their failure count reset."""
    if server_ids:
        VirtualServer.objects.filter(pk__in=server_ids).update(inner_seen_at=now, inner_failures=0, inner_next_poll_at=None, **also)


def _record_failures(server_ids, now):
    """Their inner daemons did not answer: each backs off, 1, 2, 4 ... up to 16 cycles."""
    servers = list(VirtualServer.objects.filter(pk__in=server_ids).only("pk", "inner_failures"))
    for server in servers:
        server.inner_failures += 1
        cycles = min(2 ** (server.inner_failures - 1), 16)
        server.inner_next_poll_at = now + timedelta(seconds=settings.MONITOR_INTERVAL * cycles - 1)
    if servers:
        _update(VirtualServer, ["inner_failures", "inner_next_poll_at"],
                [{"id": s.pk, "inner_failures": s.inner_failures, "inner_next_poll_at": s.inner_next_poll_at} for s in servers])


def record_disks(servers):
    """Each mounted disk's use (one statvfs each, no walk), written where it changed by
    a megabyte or more, or filled up or emptied. Returns how many servers were written."""
    changed = []
    for server in servers:
        usage = disks.disk_usage(str(server.disk_dir)) if server.disk_mb is not None else None
        if usage is None:
            continue
        used_mb = usage.used_bytes // (1024 * 1024)
        if server.disk_used_mb is None or abs(used_mb - server.disk_used_mb) >= 1 or usage.full != server.disk_full:
            server.disk_used_mb, server.disk_full = used_mb, usage.full
            changed.append(server)
    if changed:
        with transaction.atomic():
            _update(VirtualServer, ["disk_used_mb", "disk_full"],
                    [{"id": s.pk, "disk_used_mb": s.disk_used_mb, "disk_full": s.disk_full} for s in changed])
    return len(changed)


def record_reads(host_read, inner_reads, servers, states, node, now):
    """The cycle's writes, in one transaction: snapshots, digests, server states,
    inner daemons' results (when the host's engine answered: else nothing was
    learnt), and the prune. Returns (rows written, rows pruned, whether an
    address moved)."""
    written, moved = 0, False
    with transaction.atomic():
        if not host_read.error:
            known = {HOST: node.host_digest, **{server.pk: server.inner_digest for server in servers}}
            # The host's own containers are listed for the panel's host only (the Host page).
            daemons = [host_read, *inner_reads] if node.is_local else inner_reads
            written, digests = write_snapshots([r for r in daemons if not r.error], known, now)
            _store_digests(digests, {r.server_id: len(r.rows) for r in inner_reads}, node, now)
            moved = _record_server_states(servers, states, {r.server_id for r in inner_reads if not r.error}, now)
            _record_failures([r.server_id for r in inner_reads if r.error], now)
        pruned = prune_stale(now, node)
    return written, pruned, moved


# Servers that started again ----------------------------------------------------
#
# A server's container may start without the panel asking (its machine came back, its
# restart policy): its apps are to start with it. A status text that tells of a start in
# the last two cycles has its container inspected for the exact time, which, new, is news.

def started_again(server_id, started_at):
    """Record when a server's container started (its engine's StartedAt); whether that is news.
    One conditional write: of the worker and the monitor that both see a start, one says so."""
    return bool(started_at) and VirtualServer.objects.filter(pk=server_id).exclude(
        container_started_at=started_at).update(container_started_at=started_at) == 1


def recent_starts(engine, host_read, servers):
    """{server id: its container's StartedAt} of the running servers whose status tells of a recent start."""
    recent = {fields["name"] for _, fields in host_read.rows.values()
              if fields["state"] == Observed.RUNNING and (age := docker_age(fields["status"])) and age[0] < 2 * settings.MONITOR_INTERVAL}
    starts = {}
    for server in servers:
        if server.container_name in recent:
            try:
                info = docker.container_info(engine, server.container_name)
            except docker.DockerError:
                continue  # the next cycle looks again
            if info and info.started_at != server.container_started_at:
                starts[server.pk] = info.started_at
    return starts


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


def host_facts(engine_facts):
    """The panel's own node's engine facts, and the disk where servers keep their data, for the dashboard."""
    facts = dict(engine_facts)
    try:
        usage = shutil.disk_usage(settings.SERVER_SOCKET_ROOT if settings.SERVER_SOCKET_ROOT.exists() else settings.DATA_DIR)
        facts.update(disk_free_bytes=usage.free, disk_total_bytes=usage.total)
    except OSError:
        pass
    return facts


def record_nodes(engine_reads, servers, now):
    """Each node's contact (facts, when, or why not; for this process's own, that its worker
    is there) and, for the other nodes, its servers' states as its engine lists them; the
    servers of a node not reached for two cycles are marked offline (their rows and
    snapshots stay). Returns whether an address changed."""
    moved = False
    for node, (read, facts) in engine_reads.items():
        if read.error:
            node.contact_error = read.error[:255]
        else:
            node.contacted_at, node.contact_error, node.facts = now, "", facts or node.facts
        if node.is_here:
            node.worker_seen_at = now
        Node.objects.filter(pk=node.pk).update(contacted_at=node.contacted_at, contact_error=node.contact_error, facts=node.facts,
                                               worker_seen_at=node.worker_seen_at)
        theirs = [s for s in servers if s.node_id == node.pk]
        if node.is_offline:
            offline = [s for s in theirs if s.observed_state != Observed.NODE_OFFLINE]
            moved |= any(s.ip_address for s in offline)
            VirtualServer.objects.filter(pk__in=[s.pk for s in offline]).update(observed_state=Observed.NODE_OFFLINE, ip_address=None)
        elif not read.error and not node.is_here:
            moved |= _record_server_states(theirs, server_states_from_host(read, theirs), set(), now)
    return moved


def other_nodes(here=None):
    """The nodes whose engines this worker reads too, over mutual TLS (their contact, facts and
    servers' states), and whose own workers it has run their cycles: all of them, for the
    panel's own worker (`here`: its node); none, for a node's worker."""
    here = here or Node.local()
    # A node still joining has no engine to read yet: read, it would only fail and show offline.
    return list(Node.objects.exclude(pk=here.pk).exclude(certificate="")) if here.is_local else []


def _cycle():
    started, clock = timezone.now(), time.perf_counter()
    node = Node.local()  # this process's own: its inner daemons are read from here
    engine_reads = read_engines([node, *other_nodes(node)])
    host_read, engine_facts = engine_reads[node]
    everyone = list(VirtualServer.objects.live().only(*POLLED_FIELDS, "node_id"))
    servers = [s for s in everyone if s.node_id == node.pk]
    now, inner_reads, states, starts = timezone.now(), [], {}, {}
    if host_read.error:
        log.warning("monitor: host daemon failed: %s", host_read.error)
    else:
        states = server_states_from_host(host_read, servers)
        inner_reads = read_inner_daemons([s for s in servers if _due_for_inner_poll(s, states, now)])
        starts = recent_starts(docker.Engine.of(node), host_read, servers)
    writing = time.perf_counter()
    rows_written, pruned, moved = record_reads(host_read, inner_reads, servers, states, node, now)
    with transaction.atomic():
        moved |= record_nodes(engine_reads, everyone, now)
    record_disks(servers)
    db_ms = int((time.perf_counter() - writing) * 1000)
    if moved:
        caddy.apply_quietly()  # domains follow their server to its new address
    reads = [read for read, _ in engine_reads.values()] + inner_reads
    failures = [{"daemon": "host" if n == node else f"node {n.name}", "error": r.error} for n, (r, _) in engine_reads.items() if r.error]
    failures += [{"daemon": f"server {r.server_id}", "error": r.error} for r in inner_reads if r.error]
    run = MonitorRun.objects.create(
        started_at=started,
        duration_ms=int((time.perf_counter() - clock) * 1000),
        daemons_polled=len(reads),
        daemons_failed=len(failures),
        containers_seen=sum(len(r.rows) for r in reads),
        rows_written=rows_written,
        rows_pruned=pruned,
        slowest_read_ms=int(max(r.seconds for r in reads) * 1000),
        total_read_ms=int(sum(r.seconds for r in reads) * 1000),
        db_ms=db_ms,
        failures=failures[:50],
        host=host_facts(engine_facts) if not host_read.error else {},
    )
    run.servers_started = [pk for pk, started_at in starts.items() if started_again(pk, started_at)]  # for their apps
    return run


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
        with transaction.atomic():
            _, digests = write_snapshots([read], {server.pk: server.inner_digest}, now)
            changed = {"inner_digest": digests[server.pk], "container_count": len(read.rows)} if digests else {}
            _record_answered([server.pk], now, **changed)


def runs_purge(keep=timedelta(days=1)):
    deleted, _ = MonitorRun.objects.filter(started_at__lt=timezone.now() - keep).delete()
    return deleted
