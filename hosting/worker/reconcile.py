"""Virtual server work on the worker side: make each container match its row.

Tasks call these after the request's commit; they talk to Docker and record
what it shows, failures included.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import activity_log

from ..activity import Action
from ..backends import caddy, disks, docker
from ..models import VirtualServer
from . import monitor

log = logging.getLogger(__name__)
Op = VirtualServer.Operation
Desired = VirtualServer.DesiredState
Observed = VirtualServer.ObservedState


def server_spec(server):
    return docker.ServerSpec(
        container_name=server.container_name,
        hostname=server.hostname,
        volume_name=server.volume_name,
        socket_dir=str(server.socket_dir),
        identity_dir=str(server.identity_dir),
        disk_dir=None if server.disk_mb is None else str(server.disk_dir),
        labels=server_labels(server),
        memory_mb=server.memory_mb,
        cpus=float(server.cpus),
        pids_limit=server.pids_limit,
        slot=server.slot,
        uid=server.host_uid,
    )


def server_labels(server):
    return {
        "controlpanel.instance": settings.PANEL_INSTANCE,
        "controlpanel.server-id": str(server.pk),
        "controlpanel.owner-id": str(server.owner_id),
    }


def remove(server, *, keep_volume):
    docker.server_remove(
        engine_of(server),
        server.container_name,
        labels=server_labels(server),
        adopt_unlabelled=server.imported,
        volume_name=None if keep_volume else server.volume_name,
    )
    disks.folder_remove(str(server.socket_dir))
    disks.folder_remove(str(server.identity_dir))
    disks.disk_remove(image=str(server.disk_image), mountpoint=str(server.disk_dir), keep_image=keep_volume)


def engine_of(server):
    return docker.Engine.of(server.node)


def _disk_owner(server):
    return server.host_uid if settings.SERVER_ISOLATION == "rootless" else 0


def disk_mount(server):
    """Its disk (at its size: a change applies here) and its socket folder mounted, before its
    container starts. Returns whether either was mounted just now."""
    if server.disk_mb is None:  # from before disks had quotas: a Docker volume and a plain folder
        return False
    mounted = disks.disk_ensure(image=str(server.disk_image), mountpoint=str(server.disk_dir), size_mb=server.disk_mb,
                                owner_uid=_disk_owner(server))
    return disks.socket_folder_ensure(str(server.socket_dir), owner_uid=_disk_owner(server)) or mounted


def _unmount(server):
    """A stopped server's disk and socket folder are let go of (the next start mounts them again)."""
    if server.disk_mb is not None:
        disks.unmount(str(server.disk_dir))
        disks.unmount(str(server.socket_dir))


def _start(server, engine):
    _claim_slot(server, engine)
    mounted_now = disk_mount(server)
    docker.server_create(engine, server_spec(server))
    info = docker.container_info(engine, server.container_name) if mounted_now else None  # only then can it have started early
    if info and info.state in (Observed.RUNNING, Observed.RESTARTING):
        # It started before its disk was there (the node rebooted): start it again, onto its disk.
        docker.container_restart(engine, server.container_name)
    else:
        docker.container_start(engine, server.container_name)


def server_reconcile(*, server_id):
    """Make the container match the row's desired state and limits, then record what Docker shows.
    Returns whether its container started again (monitor.started_again): its apps are to start too.

    Idempotent: running it again, or after a worker died half-way, finishes
    the job. A failure is recorded on the server and in the activity log.
    """
    server = VirtualServer.objects.select_related("node").get(pk=server_id)
    if server.deleted_at:
        return False
    operation, engine = server.operation, engine_of(server)
    try:
        if server.desired_state == Desired.DELETED:
            remove(server, keep_volume=settings.SERVER_KEEP_VOLUME_ON_DELETE)
        elif server.desired_state == Desired.RUNNING:
            if operation == Op.RESTARTING and docker.container_info(engine, server.container_name):
                if server.disk_mb is None:
                    docker.container_restart(engine, server.container_name)
                else:  # with its disk let go of in between, so a new size applies
                    docker.container_stop(engine, server.container_name)
                    _unmount(server)
            _start(server, engine)
        else:
            docker.container_stop(engine, server.container_name)
            _unmount(server)
        info = docker.container_info(engine, server.container_name)
        if info and server.desired_state != Desired.DELETED:
            # Limits are desired state too: an admin's change reaches the container here.
            docker.container_update_limits(engine, server.container_name, memory_mb=server.memory_mb, cpus=float(server.cpus),
                                           pids_limit=server.pids_limit)
    except (docker.DockerError, disks.DiskError) as error:
        _record_failure(server, operation, str(error))
        return False
    _record_result(server, info)
    if not info or info.state != Observed.RUNNING:
        return False
    # Show what runs inside at once, not at the next monitor cycle.
    server.refresh_from_db()
    monitor.refresh_server(server, wait=settings.MONITOR_DAEMON_TIMEOUT)
    return monitor.started_again(server.pk, info.started_at)


def _claim_slot(server, engine):
    """Give the server the lowest free slot on its node, if it has none yet."""
    node_servers = VirtualServer.objects.filter(node=server.node_id)
    while server.slot is None:
        slot = node_servers.free_slot()
        if slot > docker.server_slots(engine):
            raise docker.DockerError(f"This node has room for {docker.server_slots(engine)} servers and all are taken: "
                                     "delete one, or give the node a larger subnet (SERVER_NETWORK_SUBNET for this host).")
        try:
            with transaction.atomic():
                if node_servers.filter(pk=server.pk, slot__isnull=True).update(slot=slot):
                    server.slot = slot
                else:
                    server.refresh_from_db(fields=["slot"])
        except IntegrityError:
            pass  # another worker took it first: look again


def _record_result(server, info):
    now = timezone.now()
    fields = {"operation": Op.NONE, "last_error": "", "observed_at": now}
    fields["observed_state"] = info.state if info else Observed.MISSING
    fields["ip_address"] = address_of(info)
    if server.desired_state == Desired.DELETED:
        fields.update(deleted_at=now, slot=None)  # its address and uids are free for the next server
    VirtualServer.objects.filter(pk=server.pk).update(updated_at=now, **fields)
    if fields["ip_address"] != server.ip_address:
        caddy.apply_quietly()  # its domains follow it: to its address, or to the "stopped" page


def address_of(info):
    """Only a running server has an address its domains may reach."""
    return (info.ip_address or None) if info and info.state == Observed.RUNNING else None


def _record_failure(server, operation, message):
    if operation == Op.CREATING:
        # Leave nothing half-made behind; the user can retry or delete.
        try:
            remove(server, keep_volume=False)
        except (docker.DockerError, disks.DiskError):
            log.warning("could not clean up after failed create of %s", server.container_name)
    fields = {"operation": Op.NONE, "last_error": message, "observed_at": timezone.now(), "updated_at": timezone.now()}
    try:
        info = docker.container_info(engine_of(server), server.container_name)
    except docker.DockerError:  # the engine is away: what runs is unknown, its address kept
        fields["observed_state"] = Observed.MISSING if operation == Op.CREATING else Observed.UNKNOWN
    else:
        fields.update(observed_state=info.state if info else Observed.MISSING, ip_address=address_of(info))
    VirtualServer.objects.filter(pk=server.pk).update(**fields)
    if fields.get("ip_address", server.ip_address) != server.ip_address:
        caddy.apply_quietly()
    verb = (VirtualServer.Operation(operation).label if operation else "Changing").lower()
    activity_log(
        action=Action.SERVER_FAILED,
        user=User.objects.named(server.owner_id),
        message=f"{verb.capitalize()} virtual server “{server.name}” failed: {message}",
        target=server.container_name,
    )


def server_refresh(*, server_id):
    server = VirtualServer.objects.filter(pk=server_id, deleted_at__isnull=True).first()
    if server is not None:
        monitor.refresh_server(server)


def stuck_servers():
    """Servers stuck in an operation (a worker died half-way, a message was lost), with their nodes.

    Reconciling is idempotent, so running it again finishes the job or records a clear failure.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.SERVER_OPERATION_TIMEOUT)
    # A move is the panel's worker's to finish or undo (hosting.worker.moves), never a reconcile's.
    return list(VirtualServer.objects.live().exclude(operation__in=["", Op.MOVING]).filter(updated_at__lt=cutoff).select_related("node"))
