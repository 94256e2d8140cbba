"""The nodes' broker users: a node's worker signs in to Redis as a user of its own.

Its access control list lets it reach only keys that start with its node's prefix
(its queues, the bindings Celery keeps for them, its unacknowledged messages, its
cache) and no channel: it cannot read or add to another node's queues or the
panel's, nor list the keys that exist (SCAN, KEYS). Redis forgets users when it
restarts without an ACL file, so the panel gives them again (user_ensure) from
the password's hash it keeps.

The only module that manages Redis users.
"""

import hashlib

import redis
from django.conf import settings

# What Celery's Redis transport and Django's Redis cache use (scripts: the locks' release;
# Redis checks the keys a script touches), less what lists or reaches beyond a user's own
# keys, and server-wide functions.
COMMANDS = ["+@read", "+@write", "+@keyspace", "+@transaction", "+@connection", "+@scripting", "-@dangerous", "-@admin", "-scan",
            "-randomkey", "-function"]


class BrokerError(Exception):
    """Redis refused or could not be reached; str() is fit to show."""


def password_hash(password):
    return hashlib.sha256(password.encode()).hexdigest()


def _client():
    if not settings.REDIS_URL:
        raise BrokerError("Nodes need the panel's Redis (REDIS_URL): a local run without it keeps its queues in files.")
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=10)


def _setuser(client, user, prefix, secret_hash):
    client.execute_command("ACL", "SETUSER", user, "reset", "on", f"#{secret_hash}", f"~{prefix}*", f"~_kombu.binding.{prefix}*",
                           f"~_kombu.binding_permanent.{prefix}*",
                           "resetchannels", *COMMANDS)


def user_ensure(user, prefix, secret_hash, *, replace=False):
    """Give Redis the user (again, after a restart); `replace`: also when it has it (a new password)."""
    try:
        client = _client()
        if replace or not client.execute_command("ACL", "GETUSER", user):
            _setuser(client, user, prefix, secret_hash)
    except redis.RedisError as error:
        raise BrokerError(f"Redis refused the node's user: {error}") from None


def user_drop(user):
    """A removed node's user goes; Redis drops its connections."""
    try:
        _client().execute_command("ACL", "DELUSER", user)
    except redis.RedisError as error:
        raise BrokerError(f"Redis refused to remove the node's user: {error}") from None
