"""Moving users and servers over from the legacy Flask/SQLite platform.

Reads its database (the legacy README describes it) and imports, in one
transaction, users (bcrypt hashes kept), registration codes still valid,
virtual servers with their ids (which name their running containers),
domains and the activity history. Container rows are not imported: the
monitor rebuilds them. A second run skips what is already there.

The file may be hostile: every value is parsed strictly (a flag is 0 or 1,
an id a whole number in range, a time the legacy format), anything else is
a reported row, never a traceback, and each row is written in a savepoint,
so one the database refuses spoils no other.
"""

import re
import sqlite3
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from accounts.hashers import bcrypt_cost
from accounts.models import ActivityLog, RegistrationCode, User, normalize_email

from .activity import Action
from .domain_names import normalize_domain
from .models import Domain, Node, VirtualServer

MARKUP = re.compile(r"[<>&]")
LEGACY_ACTIVITY_TARGET = "legacy-activity:{}"
LEGACY_CODE = re.compile(r"[A-Z0-9]{8}")
MAX_SERVER_ID = 2**31 - 1  # ids go on counting after the highest imported one
TABLES = ("System_Users", "System_RegistrationCodes", "Hosting_VirtualServers", "Hosting_DomainNames", "System_RecentActivity")


class LegacyImportError(Exception):
    """The file is not a legacy database we can read."""


class _Unreadable(ValueError):
    """A value of a row is not what the legacy schema says; str() says what."""


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


# Reading hostile values ---------------------------------------------------------

def _rows(db, table, report):
    """The table's rows as dicts (a missing column reads as None); a missing table is empty."""
    try:
        cursor = db.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
    except sqlite3.Error as error:
        report.note(table, "-", f"not read: {error}")
        return []
    columns = [column[0] for column in cursor.description]
    return [dict(zip(columns, values)) for values in cursor.fetchall()]


def _shown(value):
    """A value as a report shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(value, what, low=None, high=None):
    """A whole number (not text, not a float, not a flag) within [low, high]."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Unreadable(f"{what} {_shown(value)} is not a whole number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise _Unreadable(f"{what} {_shown(value)} is out of range")
    return value


def _flag(value):
    """0 or 1, exactly; None for anything else ("0 " is not 0)."""
    return value == 1 if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1) else None


def _text(value, limit):
    """Text as the database can keep it (PostgreSQL refuses NUL), cut to `limit`."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return ("" if value is None else str(value)).replace("\x00", "\ufffd")[:limit]


def _local_time(value, zone):
    """A legacy 'YYYY-MM-DD HH:MM:SS' local-time string as an aware datetime, or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        naive = datetime.strptime(value.strip()[:19], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return naive.replace(tzinfo=zone)


@contextmanager
def _row(report, table, legacy_id):
    """One row's import: what cannot be read, or what the database refuses, is a skipped row."""
    try:
        with transaction.atomic():  # a savepoint: a refused row leaves the rest intact
            yield
    except _Unreadable as error:
        report.skipped(table, legacy_id, str(error))
    except (DatabaseError, ValueError, TypeError, OverflowError) as error:
        report.skipped(table, legacy_id, f"unreadable row ({type(error).__name__})")


def _legacy_id(row, report, table, seen):
    """The row's ID, or None (reported) if it is not a whole number or came before."""
    legacy_id = row.get("ID")
    report.read(table)
    if not isinstance(legacy_id, int) or isinstance(legacy_id, bool):
        report.skipped(table, _shown(legacy_id), "its ID is not a whole number")
        return None
    if legacy_id in seen:
        report.skipped(table, legacy_id, "a second row with the same ID")
        return None
    seen.add(legacy_id)
    return legacy_id


# The import -------------------------------------------------------------------------

def import_legacy(path, *, dry_run=False):
    """Import everything from the legacy database at `path`; returns a Report.

    One transaction: all or nothing. With dry_run the work is done and then
    rolled back, so the report says exactly what would happen.
    """
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.execute("SELECT 1 FROM System_Users LIMIT 1")
    except sqlite3.Error as error:
        raise LegacyImportError(f"{path} is not a legacy platform database: {error}") from None
    db.text_factory = lambda data: data.decode("utf-8", "replace")

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
    users, by_email, seen = {}, {}, set()
    for row in _rows(db, "System_Users", report):
        if (legacy_id := _legacy_id(row, report, "users", seen)) is None:
            continue
        with _row(report, "users", legacy_id):
            raw_email = _text(row.get("Email"), 300)
            email = normalize_email(raw_email)
            try:
                validate_email(email)
            except ValidationError:
                raise _Unreadable(f"email {_shown(raw_email)} is not valid") from None
            if email in by_email:
                users[legacy_id] = by_email[email]
                report.skipped("users", legacy_id, f"email {raw_email!r} collides with user {by_email[email][1]} when lowercased; its servers go to that account")
                continue
            if existing := User.objects.filter(email=email).first():
                users[legacy_id] = by_email[email] = (existing, legacy_id)
                report.skipped("users", legacy_id, "already imported (same email)")
                continue
            user = User(email=email, is_admin=_flag(row.get("Admin")) is True, is_active=_flag(row.get("Enabled")) is True,
                        last_login=_local_time(row.get("LastLogin"), zone))
            for column, value in (("Admin", row.get("Admin")), ("Enabled", row.get("Enabled"))):
                if _flag(value) is None:
                    report.note("users", legacy_id, f"{column} {_shown(value)} is not 0 or 1: taken as 0")
            _legacy_password(user, _text(row.get("Password"), 200), report, legacy_id)
            if raw_email != email:
                report.note("users", legacy_id, f"email {raw_email!r} normalised to {email!r}")
            user.save()
            users[legacy_id] = by_email[email] = (user, legacy_id)
            report.imported("users")
    return {legacy_id: user for legacy_id, (user, _) in users.items()}


def _legacy_password(user, raw_hash, report, legacy_id):
    cost = bcrypt_cost(raw_hash)
    if cost is None:
        user.set_unusable_password()
        report.note("users", legacy_id, "password is not a bcrypt hash: imported without a password (an admin must set one)")
    elif cost > settings.BCRYPT_MAX_COST:
        user.set_unusable_password()
        report.note("users", legacy_id, f"password hash costs {cost} rounds, more than the {settings.BCRYPT_MAX_COST} "
                                        "a login may take: imported without a password (an admin must set one)")
    else:
        user.set_legacy_bcrypt_hash(raw_hash)


def _import_codes(db, report, users):
    now = timezone.now()
    latest = now + settings.REGISTRATION_CODE_TTL
    seen = set()
    for row in _rows(db, "System_RegistrationCodes", report):
        if (legacy_id := _legacy_id(row, report, "registration codes", seen)) is None:
            continue
        with _row(report, "registration codes", legacy_id):
            seconds = _whole(row.get("ValidUntil"), "ValidUntil", low=0, high=2**33)
            valid_until = datetime.fromtimestamp(seconds, tz=dt_timezone.utc)
            admin = users.get(row.get("UserID"))
            code = _text(row.get("Code"), 40).strip().upper()
            if not LEGACY_CODE.fullmatch(code):
                report.skipped("registration codes", legacy_id, f"code {_shown(code)} is not 8 letters and digits")
            elif valid_until <= now:
                report.skipped("registration codes", legacy_id, "expired")
            elif admin is None or not (admin.is_admin and admin.is_active):
                report.skipped("registration codes", legacy_id, "its owner is not an imported, enabled administrator")
            elif RegistrationCode.objects.filter(code=code).exists():
                report.skipped("registration codes", legacy_id, "already imported")
            elif RegistrationCode.objects.filter(created_by=admin).exists():
                report.skipped("registration codes", legacy_id, "that administrator already has a code here")
            else:
                if valid_until > latest:
                    report.note("registration codes", legacy_id, f"valid until {valid_until:%Y-%m-%d}: shortened to this panel's {settings.REGISTRATION_CODE_TTL}")
                RegistrationCode.objects.create(code=code, created_by=admin, created_at=now, expires_at=min(valid_until, latest))
                report.imported("registration codes")


def _import_servers(db, report, users, zone):
    """Legacy server id -> VirtualServer (live or soft-deleted), ids preserved."""
    node = Node.local()
    servers, highest, seen = {}, 0, set()
    ours = dict(VirtualServer.objects.values_list("pk", "imported"))
    for row in _rows(db, "Hosting_VirtualServers", report):
        legacy_id = row.get("ID")
        if legacy_id == 0 and not isinstance(legacy_id, bool):
            continue  # the reserved HOST row stands for the host itself
        if (legacy_id := _legacy_id(row, report, "virtual servers", seen)) is None:
            continue
        with _row(report, "virtual servers", legacy_id):
            _whole(legacy_id, "ID", low=1, high=MAX_SERVER_ID)
            if legacy_id in ours:
                if not ours[legacy_id]:
                    # Never merged into a server of this panel: its domains would land on someone else's.
                    raise _Unreadable("its id is taken by a server made on this panel: not imported, nor its domains")
                servers[legacy_id] = VirtualServer.objects.get(pk=legacy_id)
                report.skipped("virtual servers", legacy_id, "already imported (same id)")
                continue
            highest = max(highest, legacy_id)
            owner = users.get(row.get("OwnerID"))
            if owner is None:
                raise _Unreadable(f"its owner (user {_shown(row.get('OwnerID'))}) does not exist; its container will show as an orphan")
            enabled, deleted = _flag(row.get("Enabled")), _flag(row.get("Deleted"))
            if deleted is None:
                report.note("virtual servers", legacy_id, f"Deleted {_shown(row.get('Deleted'))} is not 0 or 1: taken as deleted")
            elif enabled is None:
                report.note("virtual servers", legacy_id, f"Enabled {_shown(row.get('Enabled'))} is not 0 or 1: taken as stopped")
            created = _local_time(row.get("CreatedAt"), zone) or timezone.now()
            updated = _local_time(row.get("UpdatedAt"), zone) or created
            server = VirtualServer(
                pk=legacy_id,
                owner=owner,
                node=node,
                name=_server_name(row.get("Name"), legacy_id, report),
                desired_state=VirtualServer.DesiredState.RUNNING if enabled else VirtualServer.DesiredState.STOPPED,
                memory_mb=settings.SERVER_DEFAULT_MEMORY_MB,
                cpus=settings.SERVER_DEFAULT_CPUS,
                pids_limit=settings.SERVER_DEFAULT_PIDS,
                created_at=created,
                imported=True,
            )
            if deleted is not False:
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
    raw = _text(raw, 1000)
    name = " ".join(re.sub(r"[^\w \-.()]", " ", raw).split())[:64]
    if not name:
        report.note("virtual servers", legacy_id, f"name {_shown(raw)} is empty: named “Server {legacy_id}”")
        return f"Server {legacy_id}"
    if name != raw:
        report.note("virtual servers", legacy_id, f"name {_shown(raw)} has characters names cannot have: renamed “{name}”")
    return name


def _continue_ids_after(highest):
    """The next server created gets an id above every legacy id (never reused)."""
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
    seen = set()
    for row in _rows(db, "Hosting_DomainNames", report):
        if (legacy_id := _legacy_id(row, report, "domains", seen)) is None:
            continue
        with _row(report, "domains", legacy_id):
            raw = _text(row.get("DomainName"), 300)
            try:
                name = normalize_domain(raw, allow_wildcard=True)
            except ValidationError as error:
                raise _Unreadable(f"{_shown(raw)} is not a valid domain name ({error.messages[0]})") from None
            server = servers.get(row.get("VirtualServerID"))
            ssl, cloudflare = _flag(row.get("SSL")), _flag(row.get("IsCloudflare"))
            if server is None or server.deleted_at:
                report.skipped("domains", legacy_id, f"{raw!r}: its server {_shown(row.get('VirtualServerID'))} is gone")
            elif Domain.objects.filter(name=name, status=Domain.Status.ACTIVE).exists():
                report.skipped("domains", legacy_id, f"{name} already exists here")
            else:
                if ssl is None or cloudflare is None:
                    report.note("domains", legacy_id, "SSL or IsCloudflare is not 0 or 1: taken as 0")
                Domain.objects.create(name=name, server=server, ssl=ssl is True, cloudflare=cloudflare is True)
                report.imported("domains")
                if name != raw:
                    report.note("domains", legacy_id, f"{raw!r} normalised to {name}")


def _import_activity(db, report, users, zone):
    done = set(ActivityLog.objects.filter(target__startswith="legacy-activity:").values_list("target", flat=True))
    entries, seen = [], set()
    for row in _rows(db, "System_RecentActivity", report):
        if (legacy_id := _legacy_id(row, report, "activity", seen)) is None:
            continue
        target = LEGACY_ACTIVITY_TARGET.format(legacy_id)
        if target in done:
            report.skipped("activity", legacy_id, "already imported")
            continue
        when = _local_time(row.get("Time"), zone)
        if when is None:
            report.skipped("activity", legacy_id, f"time {_shown(row.get('Time'))} is not readable")
            continue
        user = users.get(row.get("UserID"))
        message = _text(row.get("Message"), 2000)
        if MARKUP.search(message):
            report.note("activity", legacy_id, "message contains markup: kept as text")
        entries.append(ActivityLog(
            user=user, email=user.email if user else _text(f"legacy user {row.get('UserID')}", 254),
            action=Action.LEGACY, message=message, target=target, created_at=when,
        ))
        report.imported("activity")
    ActivityLog.objects.bulk_create(entries, batch_size=1000)
