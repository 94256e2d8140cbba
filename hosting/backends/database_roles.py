"""The nodes' database roles: a node's worker signs in to PostgreSQL as a role of its own.

Row-level security (migration 0015) shows such a role its own node's row and
what hangs off it (its servers, their snapshots, domains, apps); the grants
below let it write only the columns its work sets (what it observed, how an
operation ended), read no password hash and no other node's rows. The panel's
own role owns the tables, so the policies do not apply to it.

The only module that manages PostgreSQL roles; PostgreSQL only (a node's
worker needs a database it can reach over the network).
"""

from django.db import DatabaseError, connection, transaction
from psycopg import sql

# What a node's worker may do with each table (row-level security picks the rows): read its
# node's rows whole, write its servers' container snapshots whole, add its cycles and what it
# did to the admins' logs, remove apps it removed (with their history); and write only the
# columns its work sets.
TABLE_GRANTS = {
    "SELECT": ["hosting_node", "hosting_virtualserver", "hosting_containersnapshot", "hosting_imagesnapshot", "hosting_domain",
               "hosting_app", "hosting_appdeployment"],
    "INSERT": ["hosting_containersnapshot", "hosting_imagesnapshot", "hosting_monitorrun", "accounts_activitylog",
               "hosting_appdeployment"],  # its apps started again when their server starts
    "UPDATE": ["hosting_containersnapshot", "hosting_imagesnapshot"],
    "DELETE": ["hosting_containersnapshot", "hosting_imagesnapshot", "hosting_app", "hosting_appdeployment"],  # an app takes its history
}
COLUMN_GRANTS = {
    ("UPDATE", "hosting_node"): ["contacted_at", "contact_error", "facts", "worker_seen_at", "host_seen_at", "host_digest"],
    ("UPDATE", "hosting_virtualserver"): [
        "operation", "observed_state", "observed_at", "last_error", "slot", "ip_address", "inner_seen_at", "inner_digest",
        "inner_failures", "inner_next_poll_at", "disk_used_mb", "disk_full", "updated_at", "deleted_at", "move_source_ready",
        "move_slot", "container_started_at", "images_read_at", "container_count",
    ],
    ("UPDATE", "hosting_app"): ["status", "compose_file", "updated_at"],
    ("UPDATE", "hosting_appdeployment"): ["result", "output", "finished_at"],
    # Its servers' owners, to name them in the activity log: never a password hash.
    ("SELECT", "accounts_user"): ["id", "email"],
    # The ids of the rows it adds (INSERT ... RETURNING id), nothing else of them.
    ("SELECT", "hosting_monitorrun"): ["id"],
    ("SELECT", "accounts_activitylog"): ["id"],
}


class RoleError(Exception):
    """PostgreSQL refused to make or change a role; str() is fit to show."""


def role_name(node_id):
    """One per node and database (several panels may share a PostgreSQL server)."""
    return f"{connection.settings_dict['NAME']}_node_{node_id}"[:63]


def role_ensure(name, password):
    """Make the role (or reset its password and grants): what a node's worker signs in as."""
    if connection.vendor != "postgresql":
        raise RoleError("Nodes need the panel's database to be PostgreSQL (DATABASE_URL): their workers reach it over the network.")
    role = sql.Identifier(name)
    statements = [
        sql.SQL("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN "
                "CREATE ROLE {role} LOGIN; END IF; END $$").format(name=sql.Literal(name), role=role),
        sql.SQL("ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD {password}").format(
            role=role, password=sql.Literal(password)),
        *(sql.SQL("GRANT {privilege} ON {table} TO {role}").format(
            privilege=sql.SQL(privilege), table=sql.Identifier(table), role=role)
          for privilege, tables in TABLE_GRANTS.items() for table in tables),
        *(sql.SQL("GRANT {privilege} ({columns}) ON {table} TO {role}").format(
            privilege=sql.SQL(privilege), columns=sql.SQL(", ").join(map(sql.Identifier, columns)), table=sql.Identifier(table),
            role=role)
          for (privilege, table), columns in COLUMN_GRANTS.items()),
    ]
    _run(statements)


def role_drop(name):
    """A removed node's role goes, and with it every grant: its password opens nothing."""
    _run([
        sql.SQL("DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN "
                "EXECUTE format('DROP OWNED BY %I', {name}); EXECUTE format('DROP ROLE %I', {name}); END IF; END $$").format(
            name=sql.Literal(name)),
    ])


def _run(statements):
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    except DatabaseError as error:
        raise RoleError(f"The database refused the node's role: {error}".strip()) from None
