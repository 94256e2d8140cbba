"""Virtual servers on the request side: their lifecycle, limits and quotas.

Each runs in a transaction, writes the activity log and leaves the Docker
work to the worker (tasks → reconcile) after the commit.
"""

import re

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Sum

from accounts.models import User
from accounts.services import activity_log
from controlpanel.errors import refusal

from ..activity import Action
from ..models import ContainerSnapshot, VirtualServer
from .. import tasks
from .domains import server_domains_remove
from .nodes import node_place

Op = VirtualServer.Operation
Desired = VirtualServer.DesiredState
State = VirtualServer.State


ERRORS = {
    "quota": "You have reached your limit of {quota} virtual servers. Delete one or ask an administrator for more.",
    "disk_quota": ("{email}'s servers may have {quota} MB of disk in all; {taken} MB are taken, and this needs "
                   "{adding} MB. Delete a server or ask an administrator for more."),
    "busy": "The server is busy ({state}); try again when it is done.",
    "no_disk": "This server was made before disks had quotas: its disk has no size to change.",
    "node_offline": "The machine this server runs on is offline: nothing can be done with it until that machine is back. Its data is kept.",
    "move_same": "The server is on {node} already.",
    "move_old_disk": "This server was made before disks had quotas: its data is in a Docker volume, which cannot be moved.",
}


def quota_for(user):
    return settings.SERVER_QUOTA_DEFAULT if user.server_quota is None else user.server_quota


def quota_left(user, server_count=None):
    """How many more servers `user` may create; pass their live server count if it is at hand."""
    if server_count is None:
        server_count = VirtualServer.objects.live().filter(owner=user).count()
    return max(quota_for(user) - server_count, 0)


def disk_quota_for(user):
    """MB of disk all of `user`'s servers may have together."""
    if user.disk_quota_mb is not None:
        return user.disk_quota_mb
    return settings.USER_DISK_QUOTA_MB or quota_for(user) * settings.SERVER_DEFAULT_DISK_MB


def _check_disk_total(owner, *, adding_mb, besides=None):
    """A user's servers together have at most their disk quota (servers from before disks had quotas count nothing)."""
    servers = VirtualServer.objects.live().filter(owner=owner, disk_mb__isnull=False)
    if besides is not None:
        servers = servers.exclude(pk=besides.pk)
    taken, quota = servers.aggregate(taken=Sum("disk_mb"))["taken"] or 0, disk_quota_for(owner)
    if taken + adding_mb > quota:
        raise refusal(ERRORS, "disk_quota", email=owner.email, quota=quota, taken=taken, adding=adding_mb)


def _enqueue_reconcile(server):
    transaction.on_commit(lambda: tasks.on_node(tasks.server_reconcile, server.node, server.pk))


def log_server_activity(*, action, actor, server, message, request=None):
    """An activity row about `server` (its container's name is the target)."""
    activity_log(action=action, user=actor, message=message, target=server.container_name, request=request)


@transaction.atomic
def server_create(*, owner, name, node=None, request=None, actor=None):
    """A new server on the node with the most room (or `node`, an admin's choice)."""
    actor = actor or owner
    # Lock the owner's row so two quick creates cannot both slip under the quota.
    owner = User.objects.select_for_update().get(pk=owner.pk)
    if quota_left(owner) <= 0:
        raise refusal(ERRORS, "quota", quota=quota_for(owner))
    _check_disk_total(owner, adding_mb=settings.SERVER_DEFAULT_DISK_MB)
    server = VirtualServer.objects.create(
        owner=owner,
        node=node_place(memory_mb=settings.SERVER_DEFAULT_MEMORY_MB, node=node),
        name=name,
        desired_state=Desired.RUNNING,
        operation=Op.CREATING,
        memory_mb=settings.SERVER_DEFAULT_MEMORY_MB,
        cpus=settings.SERVER_DEFAULT_CPUS,
        pids_limit=settings.SERVER_DEFAULT_PIDS,
        disk_mb=settings.SERVER_DEFAULT_DISK_MB,
    )
    log_server_activity(action=Action.SERVER_CREATED, actor=actor, server=server, message=f"Created virtual server “{name}” ({server.container_name})", request=request)
    _enqueue_reconcile(server)
    return server


def _change(*, actor, server, desired, operation, action, verb, request=None):
    with transaction.atomic():
        server = VirtualServer.objects.select_for_update().get(pk=server.pk)
        server.refuse_if_going()
        if server.operation:
            raise refusal(ERRORS, "busy", state=server.state.label.lower())
        if server.state == State.NODE_OFFLINE:
            raise refusal(ERRORS, "node_offline")
        server.desired_state = desired
        server.operation = operation
        server.last_error = ""
        server.save(update_fields=["desired_state", "operation", "last_error", "updated_at"])
        log_server_activity(action=action, actor=actor, server=server, message=f"{verb} virtual server “{server.name}” ({server.container_name})", request=request)
        _enqueue_reconcile(server)
    return server


def server_start(*, actor, server, request=None):
    # Starting a server whose create failed creates it again.
    operation = Op.CREATING if server.state == State.FAILED else Op.STARTING
    return _change(actor=actor, server=server, desired=Desired.RUNNING, operation=operation, action=Action.SERVER_STARTED, verb="Started", request=request)


def server_stop(*, actor, server, request=None):
    return _change(actor=actor, server=server, desired=Desired.STOPPED, operation=Op.STOPPING, action=Action.SERVER_STOPPED, verb="Stopped", request=request)


def server_restart(*, actor, server, request=None):
    return _change(actor=actor, server=server, desired=Desired.RUNNING, operation=Op.RESTARTING, action=Action.SERVER_RESTARTED, verb="Restarted", request=request)


@transaction.atomic
def server_delete(*, actor, server, request=None):
    server = VirtualServer.objects.select_for_update().get(pk=server.pk)
    if server.operation == Op.DELETING or server.deleted_at:
        return server  # already on its way
    if server.operation == Op.MOVING:
        raise refusal(ERRORS, "busy", state=server.state.label.lower())
    # The server goes whether or not Caddy answers now.
    server_domains_remove(server)
    server.desired_state = Desired.DELETED
    server.operation = Op.DELETING
    server.last_error = ""
    server.save(update_fields=["desired_state", "operation", "last_error", "updated_at"])
    log_server_activity(action=Action.SERVER_DELETED, actor=actor, server=server, message=f"Deleted virtual server “{server.name}” ({server.container_name})", request=request)
    _enqueue_reconcile(server)
    return server


@transaction.atomic
def server_move(*, actor, server, node, request=None):
    """An admin moves a server to `node`: stopped, its disk's files copied, started there
    (hosting.worker.moves, after the commit). Refused if either node cannot take part now."""
    server = VirtualServer.objects.select_for_update().select_related("node").get(pk=server.pk)
    server.refuse_if_going()
    if server.operation:
        raise refusal(ERRORS, "busy", state=server.state.label.lower())
    if server.state == State.NODE_OFFLINE:
        raise refusal(ERRORS, "node_offline")
    if node.pk == server.node_id:
        raise refusal(ERRORS, "move_same", node=node.name)
    if server.disk_mb is None:
        raise refusal(ERRORS, "move_old_disk")
    node_place(memory_mb=server.memory_mb, node=node)  # its room, state and worker, as for a new server
    VirtualServer.objects.filter(pk=server.pk).update(operation=Op.MOVING, moving_to=node, move_slot=None, move_source_ready=False,
                                                      last_error="")
    log_server_activity(action=Action.SERVER_MOVING, actor=actor, server=server, request=request,
                        message=f"Moving virtual server “{server.name}” from {server.node.name} to {node.name}")
    transaction.on_commit(lambda: tasks.server_move.delay(server.pk))
    return server


@transaction.atomic
def server_rename(*, actor, server, name, request=None):
    old = server.name
    if old == name:
        return server
    server.name = name
    server.save(update_fields=["name", "updated_at"])
    log_server_activity(action=Action.SERVER_RENAMED, actor=actor, server=server, message=f"Renamed virtual server “{old}” to “{name}”", request=request)
    return server


@transaction.atomic
def server_set_limits(*, actor, server, memory_mb, cpus, pids_limit, disk_mb=None, request=None):
    """Admins change a server's limits: the row says what they should be, the
    worker applies them to its container (and any container made later has them).
    A new disk size applies when the server next starts (a restart applies it now).
    `disk_mb` None: its disk as it is."""
    server = VirtualServer.objects.select_for_update().get(pk=server.pk)
    server.refuse_if_going()
    disk = ""
    if disk_mb is not None and disk_mb != server.disk_mb:
        if server.disk_mb is None:
            raise refusal(ERRORS, "no_disk")
        _check_disk_total(User.objects.select_for_update().get(pk=server.owner_id), adding_mb=disk_mb, besides=server)
        server.disk_mb, disk = disk_mb, f", {disk_mb} MB disk (from its next start)"
    server.memory_mb, server.cpus, server.pids_limit = memory_mb, cpus, pids_limit
    server.save(update_fields=["memory_mb", "cpus", "pids_limit", "disk_mb", "updated_at"])
    log_server_activity(
        action=Action.SERVER_LIMITS_CHANGED,
        actor=actor,
        server=server,
        message=f"Set limits of “{server.name}”: {memory_mb} MB memory, {cpus} CPUs, {pids_limit} processes{disk}",
        request=request,
    )
    _enqueue_reconcile(server)
    return server


def server_watched(server):
    """Someone is looking at the server's page: have the worker re-read what runs inside
    it, at most every SERVER_REFRESH_SECONDS, so the list follows what they do in it."""
    if server.state == State.RUNNING and cache.add(f"hosting:refresh:{server.pk}", 1, timeout=settings.SERVER_REFRESH_SECONDS):
        transaction.on_commit(lambda: tasks.on_node(tasks.server_refresh, server.node, server.pk))


def orphan_containers():
    """Host containers named like virtual servers with no live row: shown to admins, never touched."""
    pattern = re.compile(rf"{re.escape(settings.SERVER_CONTAINER_PREFIX)}([0-9]+)")
    live = set(VirtualServer.objects.live().values_list("pk", flat=True))
    return [
        snapshot
        for snapshot in ContainerSnapshot.objects.filter(server__isnull=True, name__startswith=settings.SERVER_CONTAINER_PREFIX)
        if (match := pattern.fullmatch(snapshot.name)) and int(match.group(1)) not in live
    ]


def user_live_servers_check(sender, user, **kwargs):
    """A user who still owns live servers cannot be deleted (accounts.signals.user_delete_check)."""
    count = VirtualServer.objects.live().filter(owner=user).count()
    if count:
        return f"{user.email} still owns {count} virtual server{'s' if count != 1 else ''}; delete them first."
    return None


# What each isolation mode exposes, for the admin pages (SECURITY.md has the whole table).
ISOLATION = {
    "rootless": "Root inside a virtual server is an unprivileged uid on this host, with no capability here.",
    "capabilities": "Root inside a virtual server is root on this host (every capability but one): for trusted tenants only.",
    "privileged": "Root inside a virtual server is root on this host, with every device: for trusted tenants only.",
    "runtime": "Servers run under the {runtime} runtime: what root inside can do on this host is that runtime's promise.",
}


def isolation_summary():
    """(mode, what it exposes, whether it is for trusted tenants only)."""
    mode = settings.SERVER_ISOLATION
    if mode.startswith("runtime:"):
        return mode, ISOLATION["runtime"].format(runtime=mode.split(":", 1)[1]), False
    return mode, ISOLATION[mode], mode != "rootless"
