"""Moving users and servers over from the legacy Flask/SQLite platform.

Reads its database (see shared/legacy/README.md) and imports, in one
transaction, users (bcrypt hashes kept), registration codes still valid,
virtual servers with their ids (which name their running containers),
domains and the activity history. Container rows are not imported: the
monitor rebuilds them. Dirty rows are reported, never fatal; a second run
skips what is already there.
"""

import re
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import ActivityLog, RegistrationCode, User, normalize_email

from .domain_names import normalize_domain
from .models import Domain, Node, VirtualServer

MARKUP = re.compile(r"[<>&]")
LEGACY_ACTIVITY_TARGET = "legacy-activity:{}"


class LegacyImportError(Exception):
    """The file is not a legacy database we can read."""


@dataclass
class Report:
    counts: dict = field(default_factory=lambda: defaultdict(Counter))  # table -> read/imported/skipped
    notes: list = field(default_factory=list)  # (table, legacy id, what was done)

    def read(self, table):
        self.counts[table]["read"] += 1

    def imported(self, table):
        self.counts[table]["imported"] += 1

    def skipped(self, table, legacy_id, reason):
        self.counts[table]["skipped"] += 1
        self.counts[table][f"skipped: {reason}"] += 1
        self.notes.append((table, legacy_id, f"skipped: {reason}"))

    def note(self, table, legacy_id, text):
        self.notes.append((table, legacy_id, text))


class _DryRun(Exception):
    pass


def _rows(db, table):
    return db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608 - fixed table names


def _local_time(value, zone):
    """A legacy 'YYYY-MM-DD HH:MM:SS' local-time string as an aware datetime, or None."""
    if not value or not str(value).strip():
        return None
    try:
        naive = datetime.strptime(str(value).strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return naive.replace(tzinfo=zone)


def import_legacy(path, *, dry_run=False):
    """Import everything from the legacy database at `path`; returns a Report.

    One transaction: all or nothing. With dry_run the work is done and then
    rolled back, so the report says exactly what would happen.
    """
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        db.execute("SELECT 1 FROM System_Users LIMIT 1")
    except sqlite3.Error as error:
        raise LegacyImportError(f"{path} is not a legacy platform database: {error}") from None

    report = Report()
    zone = ZoneInfo(settings.LEGACY_TIME_ZONE)
    try:
        with transaction.atomic():
            users = _import_users(db, report, zone)
            _import_codes(db, report, users)
            servers = _import_servers(db, report, users, zone)
            _import_domains(db, report, servers)
            _import_activity(db, report, users, zone)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    finally:
        db.close()
    return report


def _import_users(db, report, zone):
    """Legacy user id -> our User (imported now, or already here from an earlier run)."""
    users, seen = {}, {}
    for row in _rows(db, "System_Users"):
        report.read("users")
        legacy_id, raw_email = row["ID"], row["Email"] or ""
        email = normalize_email(raw_email)
        try:
            validate_email(email)
        except ValidationError:
            report.skipped("users", legacy_id, f"email {raw_email!r} is not valid")
            continue
        if email in seen:
            users[legacy_id] = seen[email]
            report.skipped("users", legacy_id, f"email {raw_email!r} collides with user {seen[email][1]} when lowercased; its servers go to that account")
            continue
        existing = User.objects.filter(email=email).first()
        if existing:
            users[legacy_id] = seen[email] = (existing, legacy_id)
            report.skipped("users", legacy_id, "already imported (same email)")
            continue
        user = User(
            email=email,
            is_admin=bool(row["Admin"]),
            is_active=bool(row["Enabled"]),
            last_login=_local_time(row["LastLogin"], zone),
        )
        try:
            user.set_legacy_bcrypt_hash(row["Password"] or "")
        except ValueError:
            user.set_unusable_password()
            report.note("users", legacy_id, "password is not a bcrypt hash: imported without a password (an admin must set one)")
        if raw_email != email:
            report.note("users", legacy_id, f"email {raw_email!r} normalised to {email!r}")
        user.save()
        users[legacy_id] = seen[email] = (user, legacy_id)
        report.imported("users")
    return {legacy_id: user for legacy_id, (user, _) in users.items()}


def _import_codes(db, report, users):
    now = timezone.now()
    for row in _rows(db, "System_RegistrationCodes"):
        report.read("registration codes")
        valid_until = datetime.fromtimestamp(int(row["ValidUntil"] or 0), tz=dt_timezone.utc)
        admin = users.get(row["UserID"])
        code = str(row["Code"] or "").strip().upper()
        if valid_until <= now:
            report.skipped("registration codes", row["ID"], "expired")
        elif admin is None or not admin.is_admin:
            report.skipped("registration codes", row["ID"], "its owner is not an imported administrator")
        elif RegistrationCode.objects.filter(code=code).exists():
            report.skipped("registration codes", row["ID"], "already imported")
        elif RegistrationCode.objects.filter(created_by=admin).exists():
            report.skipped("registration codes", row["ID"], "that administrator already has a code here")
        else:
            RegistrationCode.objects.create(code=code, created_by=admin, created_at=now, expires_at=valid_until)
            report.imported("registration codes")


def _import_servers(db, report, users, zone):
    """Legacy server id -> VirtualServer (live or soft-deleted), ids preserved."""
    node = Node.local()
    servers, highest = {}, 0
    existing = set(VirtualServer.objects.values_list("pk", flat=True))
    for row in _rows(db, "Hosting_VirtualServers"):
        legacy_id = row["ID"]
        if legacy_id == 0:
            continue  # the reserved HOST row stands for the host itself
        report.read("virtual servers")
        highest = max(highest, legacy_id)
        if legacy_id in existing:
            servers[legacy_id] = VirtualServer.objects.get(pk=legacy_id)
            report.skipped("virtual servers", legacy_id, "already imported (same id)")
            continue
        owner = users.get(row["OwnerID"])
        if owner is None:
            report.skipped("virtual servers", legacy_id, f"its owner (user {row['OwnerID']}) does not exist; its container will show as an orphan")
            continue
        name = _server_name(row["Name"], legacy_id, report)
        created = _local_time(row["CreatedAt"], zone) or timezone.now()
        updated = _local_time(row["UpdatedAt"], zone) or created
        server = VirtualServer(
            pk=legacy_id,
            owner=owner,
            node=node,
            name=name,
            desired_state=VirtualServer.DesiredState.RUNNING if row["Enabled"] else VirtualServer.DesiredState.STOPPED,
            memory_mb=settings.SERVER_DEFAULT_MEMORY_MB,
            cpus=settings.SERVER_DEFAULT_CPUS,
            pids_limit=settings.SERVER_DEFAULT_PIDS,
            created_at=created,
            imported=True,
        )
        if row["Deleted"]:
            server.desired_state = VirtualServer.DesiredState.DELETED
            server.deleted_at = updated
        server.save(force_insert=True)
        VirtualServer.objects.filter(pk=legacy_id).update(updated_at=updated)
        servers[legacy_id] = server
        report.imported("virtual servers")
    _continue_ids_after(highest)
    return servers


def _server_name(raw, legacy_id, report):
    """The legacy name made to fit our rules, keeping as much of it as it can."""
    raw = str(raw or "")
    name = " ".join(re.sub(r"[^\w \-.()]", " ", raw).split())[:64]
    if not name:
        report.note("virtual servers", legacy_id, f"name {raw!r} is empty: named “Server {legacy_id}”")
        return f"Server {legacy_id}"
    if name != raw:
        report.note("virtual servers", legacy_id, f"name {raw!r} has characters names cannot have: renamed “{name}”")
    return name


def _continue_ids_after(highest):
    """The next server created gets an id above every legacy id, even skipped ones."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), GREATEST(%s, (SELECT COALESCE(MAX(id), 1) FROM hosting_virtualserver)))",
                [VirtualServer._meta.db_table, max(highest, 1)],
            )
    elif connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            table = VirtualServer._meta.db_table
            cursor.execute("UPDATE sqlite_sequence SET seq = MAX(seq, %s) WHERE name = %s", [highest, table])
            if cursor.rowcount == 0:
                cursor.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, highest])


def _import_domains(db, report, servers):
    for row in _rows(db, "Hosting_DomainNames"):
        report.read("domains")
        legacy_id, raw = row["ID"], row["DomainName"]
        server = servers.get(row["VirtualServerID"])
        try:
            name = normalize_domain(raw, allow_wildcard=True)
        except ValidationError as error:
            report.skipped("domains", legacy_id, f"{raw!r} is not a valid domain name ({error.messages[0]})")
            continue
        if server is None or server.deleted_at:
            report.skipped("domains", legacy_id, f"{raw!r}: its server {row['VirtualServerID']} is gone")
        elif Domain.objects.filter(name=name).exists():
            report.skipped("domains", legacy_id, f"{name} already exists here")
        else:
            Domain.objects.create(name=name, server=server, ssl=bool(row["SSL"]), cloudflare=bool(row["IsCloudflare"]))
            report.imported("domains")
            if name != raw:
                report.note("domains", legacy_id, f"{raw!r} normalised to {name}")


def _import_activity(db, report, users, zone):
    done = set(ActivityLog.objects.filter(target__startswith="legacy-activity:").values_list("target", flat=True))
    entries = []
    for row in _rows(db, "System_RecentActivity"):
        report.read("activity")
        target = LEGACY_ACTIVITY_TARGET.format(row["ID"])
        if target in done:
            report.skipped("activity", row["ID"], "already imported")
            continue
        when = _local_time(row["Time"], zone)
        if when is None:
            report.skipped("activity", row["ID"], f"time {row['Time']!r} is not readable")
            continue
        user = users.get(row["UserID"])
        message = str(row["Message"] or "")[:2000]
        if MARKUP.search(message):
            report.note("activity", row["ID"], "message contains markup: kept as text")
        entries.append(ActivityLog(
            user=user, email=user.email if user else f"legacy user {row['UserID']}",
            action=ActivityLog.Action.LEGACY, message=message, target=target, created_at=when,
        ))
        report.imported("activity")
    ActivityLog.objects.bulk_create(entries, batch_size=1000)


