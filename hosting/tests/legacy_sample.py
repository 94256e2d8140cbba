"""A legacy platform database built from its schema, with rows shaped like the real
platform's (the legacy README describes both): 42 users, 2 registration codes,
54 server rows (row 0 is the host; some soft-deleted; ids with gaps; names
the panel must fix), 105 container rows, 31 domains (some of deleted servers)
and 300 activity rows. Every user's password is the part of the email before
`@`, then `-pass`."""

import random
import sqlite3
from datetime import datetime, timedelta

import bcrypt

SCHEMA = """
CREATE TABLE System_Users (
    ID          INTEGER NOT NULL UNIQUE PRIMARY KEY AUTOINCREMENT,
    Email       TEXT NOT NULL UNIQUE,
    Password    TEXT NOT NULL,
    Admin       INTEGER DEFAULT 0,
    Enabled     INTEGER NOT NULL DEFAULT 0,
    LastLogin   TEXT NOT NULL DEFAULT ''
);
CREATE TABLE System_RegistrationCodes (
    ID          INTEGER NOT NULL UNIQUE PRIMARY KEY AUTOINCREMENT,
    UserID      INTEGER NOT NULL UNIQUE,
    Code        TEXT NOT NULL UNIQUE,
    ValidUntil  INTEGER NOT NULL
);
CREATE TABLE Hosting_VirtualServers (
    ID          INTEGER NOT NULL UNIQUE PRIMARY KEY,
    OwnerID     INTEGER NOT NULL,
    Name        TEXT NOT NULL DEFAULT '',
    Enabled     INTEGER NOT NULL DEFAULT 1,
    Deleted     INTEGER NOT NULL DEFAULT 0,
    CreatedAt   TEXT NOT NULL,
    UpdatedAt   TEXT NOT NULL
);
CREATE TABLE Hosting_DockerContainers (
    DockerID        TEXT NOT NULL,
    ParentServerID  INTEGER NOT NULL,
    Command         TEXT NOT NULL,
    CreatedAt       TEXT NOT NULL,
    Image           TEXT NOT NULL,
    Labels          TEXT NOT NULL,
    Mounts          TEXT NOT NULL,
    Names           TEXT NOT NULL,
    Networks        TEXT NOT NULL,
    Ports           TEXT NOT NULL,
    RunningFor      TEXT NOT NULL,
    Size            TEXT NOT NULL,
    State           TEXT NOT NULL,
    Status          TEXT NOT NULL,
    UpdatedAt       TEXT NOT NULL,
    UNIQUE(DockerID, ParentServerID)
);
CREATE TABLE Hosting_DomainNames (
    ID              INTEGER NOT NULL UNIQUE PRIMARY KEY AUTOINCREMENT,
    VirtualServerID INTEGER NOT NULL,
    DomainName      TEXT NOT NULL UNIQUE,
    IsCloudflare    INTEGER NOT NULL DEFAULT 0,
    SSL             INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE System_RecentActivity (
    ID      INTEGER NOT NULL UNIQUE PRIMARY KEY AUTOINCREMENT,
    UserID  INTEGER NOT NULL,
    Message TEXT NOT NULL,
    Time    TEXT NOT NULL
);
"""

FIRST = ["anna", "ben", "carla", "dmitri", "eva", "farid", "greta", "hugo", "ines", "jonas", "kaja", "lukas", "mira", "noah"]
WORDS = ["blog", "shop", "wiki", "api", "lab", "class", "game", "docs", "chat", "cloud"]


def _hash(password, cost):
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def build_sample(path, *, now):
    """Write the sample database to `path`; `now` decides which registration code is still valid."""
    rng = random.Random(2026)
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    local = lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731 - the legacy's local-time strings
    start = datetime(2026, 11, 2, 8, 0, 0)

    users = [(1, "admin@admin.com", 1, 1)]
    for n in range(2, 43):
        name = f"{FIRST[n % len(FIRST)]}{n}"
        email = f"{name.capitalize()}@School.example" if n % 7 == 0 else f"{name}@school.example"
        users.append((n, email, 1 if n in (5, 17) else 0, 0 if n % 9 == 0 else 1))
    db.executemany("INSERT INTO System_Users VALUES (?,?,?,?,?,?)", [
        (uid, email, _hash(email.split("@")[0] + "-pass", 12 if uid in (1, 5, 17) else 4), admin, enabled,
         local(start + timedelta(hours=uid)) if uid % 4 else "")
        for uid, email, admin, enabled in users
    ])
    db.executemany("INSERT INTO System_RegistrationCodes VALUES (?,?,?,?)", [
        (1, 1, "K7PQ2XMZ", int((now + timedelta(minutes=20)).timestamp())),
        (2, 5, "R4WT9HNB", int((now - timedelta(days=10)).timestamp())),
    ])

    servers = [(0, 0, "HOST", 1, 0, local(start), local(start))]
    server_id = 0
    for n in range(53):
        server_id += rng.choice([1, 1, 1, 2, 3])  # ids with gaps
        owner = rng.randint(1, 42)
        name = rng.choice(WORDS) + f" {n}"
        if n % 4 == 0:
            name = f"{name}:8080"  # names the panel must fix
        if n in (7, 30, 44):
            name = ""
        deleted = 1 if n % 6 == 5 else 0
        made = start + timedelta(days=n % 20, minutes=n)
        servers.append((server_id, owner, name, 0 if n % 10 == 3 else 1, deleted, local(made), local(made + timedelta(days=2))))
    db.executemany("INSERT INTO Hosting_VirtualServers VALUES (?,?,?,?,?,?,?)", servers)

    live = [s[0] for s in servers[1:] if not s[4]]
    deleted = [s[0] for s in servers[1:] if s[4]]
    domains = []
    for n in range(31):
        host = rng.choice(deleted) if n % 5 == 4 else rng.choice(live)  # some point at deleted servers
        domains.append((n + 1, host, f"{rng.choice(WORDS)}{n}.{'School' if n % 3 == 0 else 'school'}.example", n % 8 == 0, n % 2))
    db.executemany("INSERT INTO Hosting_DomainNames VALUES (?,?,?,?,?)", domains)

    db.executemany("INSERT INTO Hosting_DockerContainers VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", [
        (f"{n:064x}", rng.choice([0, *live]), "sleep 1", local(start), "busybox", "", "", f"/app{n}", "bridge", "",
         "2 days", "1MB", "running", "Up 2 days", local(start)) for n in range(105)
    ])
    db.executemany("INSERT INTO System_RecentActivity VALUES (?,?,?,?)", [
        (n + 1, rng.randint(1, 42), rng.choice(["Logged in", "Created a server", "Added a domain", "Stopped a server"]) + f" ({n})",
         local(start + timedelta(hours=n)))
        for n in range(300)
    ])
    db.commit()
    db.close()
    return path
