"""Moving a server to another node: stop it, copy its disk's files, start it there; its domains follow.

The panel's own worker runs the move (server_move): it alone reaches both engines.
Each node's worker does what must happen on its machine, and says so in the
server's row, the only way a node's worker answers:
- the source's (move_out): the server stopped, its disk mounted (move_source_ready);
- the destination's (move_in): a slot claimed, a disk of the server's size made and
  mounted, the container made but not started (move_slot).
The panel's worker then copies the disk's files between the two stopped
containers (their owners moved to the new slot's uids) and switches the row to
the destination, whose worker starts it. Until that switch the source keeps
everything: a move that fails anywhere removes what the destination made and
starts the server again where it was, the reason on its page.
"""

import itertools
import logging
import time

from celery.exceptions import SoftTimeLimitExceeded

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import activity_log

from ..activity import Action
from ..backends import disks, docker
from ..models import UIDS_PER_SERVER, Node, VirtualServer
from . import reconcile

log = logging.getLogger(__name__)
Op, Desired, Observed = VirtualServer.Operation, VirtualServer.DesiredState, VirtualServer.ObservedState
MOVE_SECONDS = 3600  # the copy included: past it, the move is undone


class MoveFailed(Exception):
    """A step of a move failed; str() is fit to show."""


def _moving(server_id, *nodes):
    """The server while it is moving, with `nodes` ("node", "moving_to") at hand: a node's worker
    asks only for its own (its role sees no other node's row, and a join with one finds nothing)."""
    return VirtualServer.objects.select_related(*nodes).filter(pk=server_id, operation=Op.MOVING).first()


def _report(server, problem):
    """A node's worker tells the panel's why its part failed."""
    VirtualServer.objects.filter(pk=server.pk, operation=Op.MOVING).update(last_error=problem[:1000])


def server_move_out(*, server_id):
    """On the source node: the server stopped, its disk mounted for the copy."""
    server = _moving(server_id, "node")
    if server is None:
        return
    try:
        docker.container_stop(reconcile.engine_of(server), server.container_name)
        reconcile.disk_mount(server)
    except (docker.DockerError, disks.DiskError) as error:
        _report(server, f"Its node could not stop it: {error}")
        return
    VirtualServer.objects.filter(pk=server.pk).update(move_source_ready=True)


def server_move_in(*, server_id):
    """On the destination node: a slot, a disk and a container (not started) waiting for the files."""
    server = _moving(server_id, "moving_to")
    if server is None:
        return
    here = server.moving_to
    engine = docker.Engine.of(here)
    # Its servers' slots, and those other moves here wait in.
    held = {*VirtualServer.objects.filter(node=here).exclude(slot=None).values_list("slot", flat=True),
            *VirtualServer.objects.filter(moving_to=here).exclude(pk=server.pk).exclude(move_slot=None).values_list("move_slot", flat=True)}
    server.node, server.slot = here, next(slot for slot in itertools.count(1) if slot not in held)
    try:
        if server.slot > docker.server_slots(engine):
            raise docker.DockerError(f"{here.name} has no free slot for another server.")
        reconcile.disk_mount(server)
        docker.server_create(engine, reconcile.server_spec(server))
    except (docker.DockerError, disks.DiskError) as error:
        _report(server, f"{here.name} could not make room for it: {error}")
        return
    if not VirtualServer.objects.filter(pk=server.pk, operation=Op.MOVING, moving_to=here).update(move_slot=server.slot):
        server_leftovers_remove(server_id=server.pk, owner_id=server.owner_id, disk_mb=server.disk_mb)  # ended meanwhile


def server_leftovers_remove(*, server_id, owner_id, disk_mb):
    """On a node a server is no longer on (moved away, or a move here that failed): its
    container, disk and folders go. Its row is another node's now: what is needed comes as arguments."""
    server = VirtualServer(pk=server_id, owner_id=owner_id, node=Node.local(), disk_mb=disk_mb)
    try:
        reconcile.remove(server, keep_volume=False)
    except (docker.DockerError, disks.DiskError) as error:
        log.warning("could not remove what server %s left on this node: %s", server_id, error)


def _send(task, node, *args):
    """A node's worker gets its part: the task named `task` (hosting.tasks imports this module)."""
    from .. import tasks

    tasks.on_node(getattr(tasks, task), node, *args)


def server_move(*, server_id):
    """The panel's worker: the whole move."""
    server = _moving(server_id, "node", "moving_to")
    if server is None:
        return
    source, destination = server.node, server.moving_to
    _send("server_move_out", source, server.pk)
    _send("server_move_in", destination, server.pk)
    try:
        server = _wait_until_ready(server)
        rootless = settings.SERVER_ISOLATION == "rootless"
        there = VirtualServer(node=destination, slot=server.move_slot)  # its uids there, by the one rule (host_uid)
        owners = (server.host_uid, UIDS_PER_SERVER, there.host_uid) if rootless else (0, 0, 0)
        docker.folder_copy(docker.Engine.of(source), server.container_name, docker.Engine.of(destination), server.container_name,
                           docker.server_disk_path(), owners)
        _switch(server)
    except SoftTimeLimitExceeded:
        _undo(server, f"It took more than {MOVE_SECONDS // 60} minutes.")
        return
    except (MoveFailed, docker.DockerError) as error:
        _undo(server, str(error))
        return
    if server.desired_state == Desired.RUNNING:
        _send("server_reconcile", destination, server.pk)
    for node in (source, destination):  # its domains leave the old node's Caddy for the new one's
        _send("proxy_apply", node)
    _send("server_leftovers_remove", source, server.pk, server.owner_id, server.disk_mb)


def _wait_until_ready(server):
    deadline = time.monotonic() + settings.SERVER_MOVE_READY_SECONDS
    while time.monotonic() < deadline:
        server = _moving(server.pk, "node", "moving_to")
        if server is None:
            raise MoveFailed("The move was ended elsewhere.")
        if server.last_error:
            raise MoveFailed(server.last_error)
        if server.move_source_ready and server.move_slot is not None:
            return server
        time.sleep(0.5)
    waiting = [node.name for node, ready in ((server.node, server.move_source_ready), (server.moving_to, server.move_slot is not None))
               if not ready]
    raise MoveFailed(f"The worker of {' and '.join(waiting)} did not answer in {settings.SERVER_MOVE_READY_SECONDS} seconds.")


@transaction.atomic
def _switch(server):
    """The row goes to the destination: from here on, the server is there."""
    try:
        moved = VirtualServer.objects.filter(pk=server.pk, operation=Op.MOVING).update(
            node=server.moving_to, slot=server.move_slot, moving_to=None, move_slot=None, move_source_ready=False,
            operation=Op.STARTING if server.desired_state == Desired.RUNNING else Op.NONE,
            observed_state=Observed.CREATED, observed_at=timezone.now(), ip_address=None, inner_digest="", last_error="",
            updated_at=timezone.now())
    except IntegrityError:
        raise MoveFailed(f"Its slot on {server.moving_to.name} was taken meanwhile; try again.") from None
    if not moved:
        raise MoveFailed("The move was ended elsewhere.")
    activity_log(action=Action.SERVER_MOVED, user=User.objects.named(server.owner_id), target=server.container_name,
                 message=f"Moved virtual server “{server.name}” from {server.node.name} to {server.moving_to.name}")


def _undo(server, problem):
    """The destination's part removed; the server started again where it was (if it ran), the reason on its page."""
    source, destination = server.node, server.moving_to
    message = f"Moving to {destination.name} failed: {problem} It is still on {source.name}."
    _send("server_leftovers_remove", destination, server.pk, server.owner_id, server.disk_mb)  # whatever its part had made
    fields = {"operation": Op.NONE, "moving_to": None, "move_slot": None, "move_source_ready": False, "last_error": message,
              "updated_at": timezone.now()}
    try:
        engine = docker.Engine.of(source)
        if server.desired_state == Desired.RUNNING:
            docker.container_start(engine, server.container_name)  # its disk is still mounted: move_out left it so
        info = docker.container_info(engine, server.container_name)
        fields.update(observed_state=info.state if info else Observed.MISSING, ip_address=reconcile.address_of(info))
    except docker.DockerError as error:
        fields["last_error"] = f"{message} Starting it again there failed too: {error}"
    VirtualServer.objects.filter(pk=server.pk).update(**fields)
    activity_log(action=Action.SERVER_FAILED, user=User.objects.named(server.owner_id), target=server.container_name, message=fields["last_error"])
