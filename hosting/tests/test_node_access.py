"""What a node's own worker can reach with what it holds (SECURITY.md: Nodes): its sign-ins to
the panel's PostgreSQL and Redis, made as the panel's worker makes them when a node joins,
used here the way a node taken over would use them."""

from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from django.db import connection

from hosting.models import ContainerSnapshot, Node, VirtualServer
from hosting.worker import nodes as node_worker_side

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def made(alice, bob):
    """Two joined nodes, each with a server of its own, and node2's worker's settings."""
    Node.local()
    node1, node2 = (Node.objects.create(name=f"node{i}", docker_url=f"tcp://192.0.2.{i}:2376", certificate="signed") for i in (1, 2))
    theirs = VirtualServer.objects.create(owner=alice, node=node1, name="alice's", memory_mb=512, cpus=1, pids_limit=64)
    ours = VirtualServer.objects.create(owner=bob, node=node2, name="bob's", memory_mb=512, cpus=1, pids_limit=64)
    made = []

    def access(node):
        fields = node_worker_side.worker_access_make(node)
        Node.objects.filter(pk=node.pk).update(**fields)
        made.append((node, fields["database_role"]))
        return fields["worker_environment"]

    yield access, node1, node2, theirs, ours
    for node, role in made:
        node_worker_side.node_forget(name=node.name, database_role=role, broker_user=node.broker_user)


def sign_in(environment):
    url = urlsplit(environment["DATABASE_URL"])
    return psycopg.connect(host=url.hostname, port=url.port, dbname=url.path.lstrip("/"), user=url.username,
                           password=url.password, autocommit=True)


def password_verifier(role):
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [role])
        return cursor.fetchone()[0]


def rows(database, query, *params):
    return database.execute(query, params).fetchall()


def test_a_nodes_database_role_sees_its_own_nodes_rows_and_no_password(made, alice, bob):
    access, node1, node2, theirs, ours = made
    with sign_in(access(node2)) as database:
        assert rows(database, "SELECT name FROM hosting_node") == [("node2",)]
        assert rows(database, "SELECT id FROM hosting_virtualserver") == [(ours.pk,)]
        assert rows(database, "SELECT email FROM accounts_user") == [(bob.email,)]  # its servers' owners, to name them
        for secret in ("SELECT password FROM accounts_user", "SELECT * FROM django_session", "SELECT * FROM accounts_sshkey",
                       "SELECT * FROM accounts_registrationcode", "SELECT * FROM accounts_activitylog"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                database.execute(secret)
        # It writes what it observed, on its own servers only; never who owns one, or its node's capacity.
        assert database.execute("UPDATE hosting_virtualserver SET observed_state = 'running' WHERE id = %s", [theirs.pk]).rowcount == 0
        assert database.execute("UPDATE hosting_virtualserver SET observed_state = 'running' WHERE id = %s", [ours.pk]).rowcount == 1
        for change in ("UPDATE hosting_virtualserver SET owner_id = %s" % alice.pk, "UPDATE hosting_node SET memory_mb = 999999",
                       "UPDATE hosting_node SET status = 'active'", "DELETE FROM hosting_virtualserver"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                database.execute(change)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            database.execute("INSERT INTO hosting_containersnapshot (server_id, docker_id, name, image, command, state, status, ports,"
                             " labels, networks, mounts, digest, first_seen, last_changed, action, action_error) VALUES"
                             " (%s, 'x', 'x', '', '', '', '', '[]', '{}', '{}', '[]', 'x', now(), now(), '', '')", [theirs.pk])
    assert not ContainerSnapshot.objects.exists()
    assert VirtualServer.objects.get(pk=theirs.pk).observed_state == "unknown"


def test_a_nodes_broker_user_reaches_its_own_keys_only(made, settings):
    access, node1, node2, theirs, ours = made
    access(node1)
    broker = redis.Redis.from_url(access(node2)["REDIS_URL"])
    broker.lpush("node:node2:servers", "work")
    assert broker.rpop("node:node2:servers") == b"work"
    broker.sadd("_kombu.binding.node:node2:servers", "binding")
    panel = redis.Redis.from_url(settings.REDIS_URL)
    panel.set(f":1:django.contrib.sessions.cache{'x' * 32}", "a session")
    for reach in (lambda: broker.lpush("celery", "forged"), lambda: broker.lpush("node:node1:servers", "forged"),
                  lambda: broker.hgetall("unacked"), lambda: broker.get(f":1:django.contrib.sessions.cache{'x' * 32}"),
                  lambda: broker.scan(), lambda: broker.keys("*"), lambda: broker.publish("/0.celery.pidbox", "x"),
                  lambda: broker.execute_command("ACL", "LIST"), lambda: broker.flushdb()):
        with pytest.raises(redis.exceptions.NoPermissionError):
            reach()
    assert not panel.llen("celery") and not panel.llen("node:node1:servers")
    panel.delete(f":1:django.contrib.sessions.cache{'x' * 32}", "_kombu.binding.node:node2:servers")


def test_a_node_set_up_again_or_removed_leaves_its_old_sign_ins_useless(made):
    access, node1, node2, theirs, ours = made
    first = access(node2)
    role = Node.objects.get(pk=node2.pk).database_role
    was = password_verifier(role)
    second = access(node2)  # set up again: new passwords
    # (Whether PostgreSQL asks for the password at all is its pg_hba.conf's say, the machine's: the role's verifier is ours.)
    assert password_verifier(role) != was and password_verifier(role).startswith("SCRAM-SHA-256$")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(first["REDIS_URL"]).ping()
    sign_in(second).close()
    node_worker_side.node_forget(name="node2", database_role=role, broker_user=node2.broker_user)
    with pytest.raises(psycopg.OperationalError):
        sign_in(second)
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(second["REDIS_URL"]).ping()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        assert not cursor.fetchall()
