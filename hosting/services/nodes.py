"""Nodes on the request side: adding a machine, letting it join, draining and removing
it, and placing a new server on the node with the most room."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.services import activity_log
from controlpanel.errors import refusal

from .. import tasks
from ..activity import Action
from ..models import Node, VirtualServer

ERRORS = {
    "no_room": ("No node has room for a server of {memory_mb} MB now: every active node is full, draining or offline. "
                "Ask an administrator to add a node or make room."),
    "not_placeable": "{node} cannot take this server: {why}.",
    "name_taken": "There is already a node called “{name}”.",
    "has_servers": "{node} still has {count} server{s}: move or delete them first.",
    "local": "The panel's own host cannot be removed.",
    "join_invalid": "This join token is not valid: it was used, it expired, or the node was removed. Make a new one on the Nodes page.",
}
JOIN_TOKEN_HOURS = 24


def _hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def _join_token():
    """A new one-time join token, and what the node's row keeps of it (its hash, its end)."""
    token = secrets.token_urlsafe(32)
    return token, {"join_token_hash": _hash(token), "join_expires_at": timezone.now() + timedelta(hours=JOIN_TOKEN_HOURS)}


def _why_not(node, memory_mb):
    """Why `node` cannot take a server of `memory_mb` now, or ""."""
    if node.status != Node.Status.ACTIVE:
        return "it is draining"
    if node.is_offline:
        return "it is offline"
    if not node.is_local and not node.certificate:
        return "it has not joined yet"
    if not node.has_worker:
        return "its worker is not running"
    if node.max_servers is not None and node.server_count >= node.max_servers:
        return f"it has its most servers ({node.max_servers})"
    capacity = node.capacity_mb
    if capacity is not None and (node.promised_mb or 0) + memory_mb > capacity:
        return f"it has {max(capacity - (node.promised_mb or 0), 0)} MB of memory left to promise"
    return ""


def node_place(*, memory_mb, node=None):
    """The node a new server of `memory_mb` goes to: `node` (an admin's choice) if it can
    take it, else the active node with the most memory left to promise (one whose
    capacity is unknown counts as the roomiest). Call it in the transaction that makes
    the server, which holds the nodes' rows so two creates cannot both take the last room."""
    Node.local()  # the panel's own host is always one, from its first server on
    list(Node.objects.select_for_update().values_list("pk"))  # held until the server is made (not with the sums: SQL forbids)
    candidates = Node.objects.with_promised().order_by("pk")
    if node is not None:
        node = candidates.get(pk=node.pk)
        if why := _why_not(node, memory_mb):
            raise refusal(ERRORS, "not_placeable", node=node.name, why=why)
        return node
    open_nodes = [n for n in candidates if not _why_not(n, memory_mb)]
    if not open_nodes:
        raise refusal(ERRORS, "no_room", memory_mb=memory_mb)

    def room(n):
        return float("inf") if n.capacity_mb is None else n.capacity_mb - (n.promised_mb or 0)

    return max(open_nodes, key=lambda n: (room(n), -n.server_count, -n.pk))


def _log(*, action, actor, node, message, request=None):
    activity_log(action=action, user=actor, message=message, target=f"node {node.name}", request=request)


@transaction.atomic
def node_add(*, actor, name, address, public_address="", memory_mb=None, cpus=None, max_servers=None, overcommit=1, request=None):
    """A machine to be: its row, a one-time join token (returned; only its hash is kept),
    and, after the commit, its certificate authority made by the worker."""
    if Node.objects.filter(name=name).exists() or name == settings.NODE_NAME:
        raise refusal(ERRORS, "name_taken", "name", name=name)
    token, joining = _join_token()
    node = Node.objects.create(
        name=name, docker_url=f"tcp://{f'[{address}]' if ':' in address else address}:2376", public_address=public_address or address,
        memory_mb=memory_mb, cpus=cpus, max_servers=max_servers, overcommit=overcommit, **joining)
    _log(action=Action.NODE_ADDED, actor=actor, node=node, request=request, message=f"Added node {name} ({address})")
    transaction.on_commit(lambda: tasks.node_prepare.delay(node.pk))
    return node, token


@transaction.atomic
def node_update(*, actor, node, status, public_address, memory_mb, cpus, max_servers, overcommit, request=None):
    node = Node.objects.select_for_update().get(pk=node.pk)
    node.status, node.public_address = status, public_address
    node.memory_mb, node.cpus, node.max_servers, node.overcommit = memory_mb, cpus, max_servers, overcommit
    node.save(update_fields=["status", "public_address", "memory_mb", "cpus", "max_servers", "overcommit"])
    memory = f"{memory_mb} MB" if memory_mb else "its engine's memory"
    _log(action=Action.NODE_CHANGED, actor=actor, node=node, request=request,
         message=f"Changed node {node.name}: {node.get_status_display().lower()}, {memory} × {overcommit}, "
                 f"{f'at most {max_servers} servers' if max_servers else 'no limit of servers'}")
    return node


@transaction.atomic
def node_remove(*, actor, node, request=None):
    """A node with no servers left goes: its certificates are forgotten at once (by the
    worker, which holds them), so nothing it holds is trusted again."""
    node = Node.objects.select_for_update().get(pk=node.pk)
    if node.is_local:
        raise refusal(ERRORS, "local")
    count = VirtualServer.objects.live().filter(node=node).count()
    if count:
        raise refusal(ERRORS, "has_servers", node=node.name, count=count, s="s" if count != 1 else "")
    VirtualServer.objects.filter(node=node).update(node=Node.local())  # deleted servers keep a home for their history
    name, database_role, broker_user = node.name, node.database_role, node.broker_user if node.broker_secret_hash else ""
    node.delete()
    _log(action=Action.NODE_REMOVED, actor=actor, node=node, request=request, message=f"Removed node {name}")
    transaction.on_commit(lambda: tasks.node_forget.delay(name, database_role, broker_user))


@transaction.atomic
def node_new_token(*, actor, node, request=None):
    """A fresh join token, for a node set up again: the old certificate is no longer the one the panel expects."""
    token, joining = _join_token()
    Node.objects.filter(pk=node.pk).update(certificate="", **joining)
    _log(action=Action.NODE_CHANGED, actor=actor, node=node, request=request, message=f"New join token for node {node.name}")
    return token


def node_for_token(token):
    """The node this join token is for, while it is valid, else None."""
    if not token or len(token) > 100:
        return None
    return Node.objects.filter(join_token_hash=_hash(token), join_expires_at__gt=timezone.now()).first()


def node_join(*, token, csr):
    """A node sends its certificate request with its join token: the worker signs it (the
    web tier holds no CA key). Returns the node; its certificate appears on it when signed."""
    node = node_for_token(token)
    if node is None:
        raise refusal(ERRORS, "join_invalid")
    transaction.on_commit(lambda: tasks.node_sign.delay(node.pk, csr))
    return node


def node_joined(*, node):
    """The node has its certificate and its worker's settings: its token is used up, and the
    settings (passwords) are kept no longer."""
    Node.objects.filter(pk=node.pk).update(join_token_hash="", join_expires_at=None, worker_environment={})
