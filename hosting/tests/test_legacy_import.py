"""Moving over from the legacy platform: a sample database built from its schema,
a crafted dirty one, and random hostile rows."""

import io
import shutil
import sqlite3
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.contrib.auth import authenticate
from django.db import transaction
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from accounts.models import ActivityLog, RegistrationCode, User
from hosting.backends import caddy
from hosting import services
from hosting.legacy import import_legacy
from hosting.models import Domain, VirtualServer

from .legacy_sample import SCHEMA, build_sample

pytestmark = pytest.mark.django_db


def legacy(path, sql):
    db = sqlite3.connect(path)
    rows = db.execute(sql).fetchall()
    db.close()
    return rows


@pytest.fixture(scope="session")
def built_sample(tmp_path_factory):
    return build_sample(tmp_path_factory.mktemp("legacy") / "database.db", now=timezone.now())


@pytest.fixture
def sample(tmp_path, built_sample):
    copy = tmp_path / "database.db"
    shutil.copy(built_sample, copy)
    return copy


def test_sample_database_imports_completely(sample, settings):
    out = io.StringIO()
    call_command("import_legacy", str(sample), stdout=out)
    users = legacy(sample, "SELECT ID, Email, Admin, Enabled FROM System_Users")
    assert User.objects.count() == len(users)
    servers = legacy(sample, "SELECT ID, Deleted FROM Hosting_VirtualServers WHERE ID != 0")
    assert VirtualServer.objects.count() == len(servers)
    assert VirtualServer.objects.live().count() == sum(1 for _, deleted in servers if not deleted)
    assert set(VirtualServer.objects.filter(deleted_at__isnull=False).values_list("pk", flat=True)) == {i for i, d in servers if d}
    assert ActivityLog.objects.filter(action="legacy").count() == legacy(sample, "SELECT COUNT(*) FROM System_RecentActivity")[0][0]
    valid_codes = legacy(sample, f"SELECT COUNT(*) FROM System_RegistrationCodes WHERE ValidUntil > {int(timezone.now().timestamp())}")[0][0]
    assert RegistrationCode.objects.count() == valid_codes
    assert "users" in out.getvalue() and "imported" in out.getvalue()

    # Admins are admins, disabled users are disabled, and everyone's old password still works.
    for legacy_id, email, is_admin, enabled in users:
        user = User.objects.get(email=email.strip().lower())
        assert (user.is_admin, user.is_active) == (bool(is_admin), bool(enabled))
        password = f"{email.split('@')[0]}-pass"
        assert user.check_password(password), email
        assert (authenticate(username=email, password=password) is not None) == bool(enabled)

    # Ids are kept, and the next server gets a higher id than any legacy one.
    highest = max(i for i, _ in servers)
    for server_id, _ in servers:
        assert VirtualServer.objects.get(pk=server_id).container_name == f"{settings.SERVER_CONTAINER_PREFIX}{server_id}"
    owner = User.objects.get(email="admin@admin.com")
    owner.server_quota = 100
    owner.save()
    new = services.server_create(owner=owner, name="after the move")
    assert new.pk > highest

    # Domains of live servers are routed; the activity history shows on the pages.
    routed = set(Domain.objects.values_list("name", flat=True))
    config = str(caddy.render())
    assert routed and all(name in config for name in routed)
    assert not Domain.objects.filter(server__deleted_at__isnull=False).exists()


def test_imported_user_sees_their_history(sample, client):
    import_legacy(sample)
    email, user_id = legacy(sample, "SELECT u.Email, u.ID FROM System_Users u JOIN System_RecentActivity a ON a.UserID = u.ID WHERE u.Enabled = 1 LIMIT 1")[0]
    message = legacy(sample, f"SELECT Message FROM System_RecentActivity WHERE UserID = {user_id} ORDER BY Time DESC LIMIT 1")[0][0]
    assert client.login(username=email, password=f"{email.split('@')[0]}-pass")
    assert message in client.get(reverse("accounts:account")).content.decode()


def test_activity_times_use_the_legacy_time_zone(sample, settings):
    settings.LEGACY_TIME_ZONE = "Europe/Vilnius"
    import_legacy(sample)
    legacy_id, raw = legacy(sample, "SELECT ID, Time FROM System_RecentActivity ORDER BY ID LIMIT 1")[0]
    entry = ActivityLog.objects.get(target=f"legacy-activity:{legacy_id}")
    local = datetime.strptime(raw, "%Y-%m-%d %H:%M:%S")
    assert entry.created_at == local.replace(tzinfo=dt_timezone.utc) - timedelta(hours=2)  # Vilnius is UTC+2 in November


def test_a_second_run_changes_nothing(sample):
    first = import_legacy(sample)
    snapshot = (User.objects.count(), VirtualServer.objects.count(), Domain.objects.count(), ActivityLog.objects.count(), RegistrationCode.objects.count())
    second = import_legacy(sample)
    assert (User.objects.count(), VirtualServer.objects.count(), Domain.objects.count(), ActivityLog.objects.count(), RegistrationCode.objects.count()) == snapshot
    assert all(counts["imported"] == 0 for counts in second.counts.values())
    assert second.counts["users"]["skipped"] == first.counts["users"]["read"]
    assert any("already imported" in text for _, _, text in second.notes)


def test_dry_run_reports_and_changes_nothing(sample):
    report = import_legacy(sample, dry_run=True)
    assert report.counts["users"]["imported"] > 0
    assert not User.objects.exists() and not VirtualServer.objects.exists() and not ActivityLog.objects.exists()


def test_not_a_legacy_database_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all")
    with pytest.raises(CommandError, match="not a legacy platform database"):
        call_command("import_legacy", str(junk), stdout=io.StringIO())


def crafted(tmp_path):
    """A small legacy database with every kind of dirt the import must survive."""
    path = tmp_path / "dirty.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    import bcrypt

    def hashed(password):
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()

    valid_until = int((timezone.now() + timedelta(minutes=20)).timestamp())
    db.executemany("INSERT INTO System_Users VALUES (?,?,?,?,?,?)", [
        (1, " Boss@Example.com ", hashed("boss-pass"), 1, 1, "2026-11-01 10:00:00"),
        (2, "boss@example.com", hashed("other-pass"), 0, 1, ""),  # collides when lowercased
        (3, "not an email", hashed("x-pass"), 0, 1, ""),
        (4, "nohash@example.com", "plaintext!", 0, 1, "garbage"),
    ])
    db.executemany("INSERT INTO System_RegistrationCodes VALUES (?,?,?,?)", [(1, 1, "live2345", valid_until), (2, 4, "OLDCODE1", 1)])
    db.executemany("INSERT INTO Hosting_VirtualServers VALUES (?,?,?,?,?,?,?)", [
        (0, 0, "HOST", 1, 0, "", ""),
        (5, 1, "<script>alert(1)</script>", 1, 0, "2026-01-01 00:00:00", "2026-01-02 00:00:00"),
        (7, 99, "orphan", 1, 0, "2026-01-01 00:00:00", "2026-01-01 00:00:00"),  # owner does not exist
        (9, 2, "dup's", 0, 0, "bad time", "bad time"),
        (12, 1, "gone", 1, 1, "2026-01-01 00:00:00", "2026-02-01 00:00:00"),
    ])
    db.executemany("INSERT INTO Hosting_DomainNames VALUES (?,?,?,?,?)", [
        (1, 5, "WWW.Good.Example.", 0, 1),
        (2, 5, "bad name.example", 0, 0),
        (3, 7, "orphan.example.org", 0, 0),  # server was not imported
        (4, 12, "deleted.example.org", 0, 0),  # server deleted
        (5, 9, "www.good.example", 1, 0),  # duplicate after normalising
        (6, 404, "nowhere.example.org", 0, 0),
    ])
    db.executemany("INSERT INTO System_RecentActivity VALUES (?,?,?,?)", [
        (1, 1, "<img src=x onerror=alert(1)> logged in", "2026-11-20 10:00:00"),
        (2, 77, "by a user that is gone", "2026-11-20 10:01:00"),
        (3, 1, "unreadable time", "yesterday"),
    ])
    db.commit()
    db.close()
    return path


def test_dirty_data_is_reported_not_fatal(tmp_path, as_admin):
    report = import_legacy(crafted(tmp_path))
    notes = "\n".join(f"{table} #{legacy_id}: {text}" for table, legacy_id, text in report.notes)

    assert "users #2: skipped: email 'boss@example.com' collides with user 1" in notes
    assert "users #3: skipped: email 'not an email' is not valid" in notes
    assert "users #4: password is not a bcrypt hash" in notes
    assert "normalised to 'boss@example.com'" in notes
    boss = User.objects.get(email="boss@example.com")
    assert boss.is_admin and boss.check_password("boss-pass")
    assert not User.objects.get(email="nohash@example.com").has_usable_password()

    assert RegistrationCode.objects.get().code == "LIVE2345"
    assert "registration codes #2: skipped: expired" in notes

    assert "virtual servers #7: skipped: its owner (user 99) does not exist" in notes
    assert VirtualServer.objects.get(pk=5).name == "script alert(1) script"
    assert VirtualServer.objects.get(pk=9).owner == boss, "the colliding account's servers go to the kept one"
    assert VirtualServer.objects.get(pk=12).deleted_at is not None
    assert not VirtualServer.objects.filter(pk=7).exists()

    assert list(Domain.objects.values_list("name", flat=True)) == ["www.good.example"]
    for legacy_id in (2, 3, 4, 5, 6):
        assert f"domains #{legacy_id}: skipped" in notes

    assert "activity #1: message contains markup: kept as text" in notes
    assert "activity #3: skipped: time 'yesterday' is not readable" in notes
    kept = ActivityLog.objects.get(target="legacy-activity:2")
    assert kept.user is None and kept.email == "legacy user 77"
    page = as_admin.get(reverse("accounts:activity_list")).content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt; logged in" in page and "<img src=x" not in page

    # Ids continue after the highest legacy id, even the skipped one (never reused).
    assert services.server_create(owner=boss, name="next").pk > 12


def test_a_failure_half_way_leaves_nothing(tmp_path, monkeypatch):
    from hosting import legacy as legacy_module

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(legacy_module, "_import_activity", explode)
    with pytest.raises(RuntimeError):
        import_legacy(crafted(tmp_path))
    assert not User.objects.exists() and not VirtualServer.objects.exists() and not Domain.objects.exists()


def hostile(tmp_path, rows, typed=False):
    """A legacy file with these rows ({table: [dict]}); untyped, so any value can be stored."""
    path = tmp_path / "hostile.db"
    db = sqlite3.connect(path)
    columns = {table: [line.split()[0] for line in body.strip().splitlines() if line.split()[0].isidentifier() and line.split()[0] not in ("UNIQUE",)]
               for table, body in (part.split("(", 1) for part in SCHEMA.replace("CREATE TABLE", "\0").split("\0")[1:])}
    for table, names in columns.items():
        table = table.strip()
        db.execute(f"CREATE TABLE {table} ({', '.join(names)})")
        for row in rows.get(table, []):
            db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    db.commit()
    db.close()
    return path


def _bcrypt(password, cost=4):
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def notes_of(report):
    return "\n".join(f"{table} #{legacy_id}: {text}" for table, legacy_id, text in report.notes)


def test_hostile_values_are_reported_rows(tmp_path):
    forever = int((timezone.now() + timedelta(days=3650)).timestamp())
    path = hostile(tmp_path, {
        "System_Users": [
            {"ID": 1, "Email": "boss@example.com", "Password": _bcrypt("boss-pass"), "Admin": 1, "Enabled": 1, "LastLogin": ""},
            {"ID": 2, "Email": "sneaky@example.com", "Password": _bcrypt("x-pass"), "Admin": "0 ", "Enabled": 1, "LastLogin": ""},
            {"ID": 3, "Email": "costly@example.com", "Password": _bcrypt("c-pass").replace("$2b$04$", "$2b$14$"), "Admin": 0, "Enabled": 1, "LastLogin": ""},
            {"ID": 3, "Email": "twin@example.com", "Password": "", "Admin": 0, "Enabled": 1, "LastLogin": ""},
        ],
        "System_RegistrationCodes": [
            {"ID": 1, "UserID": 1, "Code": "A", "ValidUntil": forever},
            {"ID": 2, "UserID": 1, "Code": "K7PQ2XMZ", "ValidUntil": forever},
            {"ID": 3, "UserID": 1, "Code": "ZZZZZZZZ", "ValidUntil": "tomorrow"},
            {"ID": 4, "UserID": 1, "Code": "YYYYYYYY", "ValidUntil": 2**62},
        ],
        "Hosting_VirtualServers": [
            {"ID": "seven", "OwnerID": 1, "Name": "text id", "Enabled": 1, "Deleted": 0, "CreatedAt": "", "UpdatedAt": ""},
            {"ID": 8, "OwnerID": 1, "Name": "first", "Enabled": 1, "Deleted": 0, "CreatedAt": "", "UpdatedAt": ""},
            {"ID": 8, "OwnerID": 1, "Name": "second", "Enabled": 1, "Deleted": 0, "CreatedAt": "", "UpdatedAt": ""},
            {"ID": -5, "OwnerID": 1, "Name": "negative", "Enabled": 1, "Deleted": 0, "CreatedAt": "", "UpdatedAt": ""},
            {"ID": 2**63 - 1, "OwnerID": 1, "Name": "bigint", "Enabled": 1, "Deleted": 0, "CreatedAt": "", "UpdatedAt": ""},
            {"ID": 9, "OwnerID": 1, "Name": "nul\x00name", "Enabled": 1, "Deleted": "no", "CreatedAt": "", "UpdatedAt": ""},
        ],
    })
    report = import_legacy(path)
    notes = notes_of(report)
    assert not User.objects.get(email="sneaky@example.com").is_admin and "Admin '0 ' is not 0 or 1" in notes
    costly = User.objects.get(email="costly@example.com")
    assert not costly.has_usable_password() and "costs 14 rounds" in notes
    assert "users #3: skipped: a second row with the same ID" in notes

    code = RegistrationCode.objects.get()
    assert code.code == "K7PQ2XMZ" and code.expires_at <= timezone.now() + timedelta(minutes=31)
    assert "registration codes #1: skipped: code 'A' is not 8 letters and digits" in notes
    assert "registration codes #3: skipped: ValidUntil 'tomorrow' is not a whole number" in notes
    assert "registration codes #4: skipped: ValidUntil" in notes and "out of range" in notes

    assert "virtual servers #'seven': skipped: its ID is not a whole number" in notes
    assert "virtual servers #8: skipped: a second row with the same ID" in notes
    assert VirtualServer.objects.get(pk=8).name == "first"
    assert "virtual servers #-5: skipped" in notes and f"virtual servers #{2**63 - 1}: skipped" in notes
    nine = VirtualServer.objects.get(pk=9)
    assert nine.deleted_at is not None, "a Deleted flag that is neither 0 nor 1 never brings a server back"
    # The panel still makes servers, and lists them.
    boss = User.objects.get(email="boss@example.com")
    assert services.server_create(owner=boss, name="after").pk == 10


def test_a_legacy_id_taken_by_a_native_server_is_refused_never_merged(tmp_path, make_server, fake_docker, bob):
    native = make_server(name="bob's own", owner=bob)
    path = hostile(tmp_path, {
        "System_Users": [{"ID": 1, "Email": "mallory@example.com", "Password": _bcrypt("m-pass"), "Admin": 0, "Enabled": 1, "LastLogin": ""}],
        "Hosting_VirtualServers": [{"ID": native.pk, "OwnerID": 1, "Name": "legacy", "Enabled": 1, "Deleted": 0, "CreatedAt": "", "UpdatedAt": ""}],
        "Hosting_DomainNames": [{"ID": 1, "VirtualServerID": native.pk, "DomainName": "mallory.example.org", "IsCloudflare": 0, "SSL": 0}],
    })
    report = import_legacy(path)
    assert f"virtual servers #{native.pk}: skipped: its id is taken by a server made on this panel" in notes_of(report)
    native.refresh_from_db()
    assert native.owner == bob and native.name == "bob's own" and not native.domains.exists()
    assert not Domain.objects.filter(name="mallory.example.org").exists()


VALUES = (st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(allow_nan=True)
          | st.text(max_size=50) | st.binary(max_size=20) | st.sampled_from(["\x00", "0 ", "1", "2026-11-20 10:00:00", "a@b.co", "x" * 10_000]))
COLUMNS = {
    "System_Users": ["ID", "Email", "Password", "Admin", "Enabled", "LastLogin"],
    "System_RegistrationCodes": ["ID", "UserID", "Code", "ValidUntil"],
    "Hosting_VirtualServers": ["ID", "OwnerID", "Name", "Enabled", "Deleted", "CreatedAt", "UpdatedAt"],
    "Hosting_DomainNames": ["ID", "VirtualServerID", "DomainName", "IsCloudflare", "SSL"],
    "System_RecentActivity": ["ID", "UserID", "Message", "Time"],
}
ROWS = st.fixed_dictionaries({
    table: st.lists(st.fixed_dictionaries({column: VALUES for column in columns}), max_size=4) for table, columns in COLUMNS.items()
})


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=ROWS)
def test_random_hostile_rows_never_raise_outside_a_reported_row(tmp_path_factory, rows):
    path = hostile(tmp_path_factory.mktemp("hostile"), rows)
    with transaction.atomic():
        report = import_legacy(path)
        for table, label in [("System_Users", "users"), ("System_RegistrationCodes", "registration codes"),
                             ("Hosting_DomainNames", "domains"), ("System_RecentActivity", "activity")]:
            counts = report.counts[label]
            assert counts["read"] == len(rows[table])
            assert counts["imported"] + counts["skipped"] <= counts["read"]
        transaction.set_rollback(True)
