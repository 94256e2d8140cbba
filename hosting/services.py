"""Virtual server work. Views call one function here; Docker work runs in tasks."""

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ActivityLog, User
from accounts.services import activity_log

from . import docker, monitor, proxy
from .models import Domain, Node, VirtualServer

log = logging.getLogger(__name__)
Action = ActivityLog.Action
Op = VirtualServer.Operation
Desired = VirtualServer.DesiredState
Observed = VirtualServer.ObservedState


def quota_for(user):
    return settings.SERVER_QUOTA_DEFAULT if user.server_quota is None else user.server_quota


def quota_left(user, server_count=None):
    """How many more servers `user` may create; pass their live server count if it is at hand."""
    if server_count is None:
        server_count = VirtualServer.objects.live().filter(owner=user).count()
    return max(quota_for(user) - server_count, 0)


def _enqueue_reconcile(server):
    from .tasks import server_reconcile

    transaction.on_commit(lambda: server_reconcile.delay(server.pk))


def _log(*, action, actor, server, message, request=None):
    activity_log(action=action, user=actor, message=message, target=server.container_name, request=request)


@transaction.atomic
def server_create(*, owner, name, request=None, actor=None):
    actor = actor or owner
    # Lock the owner's row so two quick creates cannot both slip under the quota.
    owner = User.objects.select_for_update().get(pk=owner.pk)
    if quota_left(owner) <= 0:
        raise ValidationError(
            f"You have reached your limit of {quota_for(owner)} virtual servers. Delete one or ask an administrator for more."
        )
    server = VirtualServer.objects.create(
        owner=owner,
        node=Node.local(),
        name=name,
        desired_state=Desired.RUNNING,
        operation=Op.CREATING,
        memory_mb=settings.SERVER_DEFAULT_MEMORY_MB,
        cpus=settings.SERVER_DEFAULT_CPUS,
        pids_limit=settings.SERVER_DEFAULT_PIDS,
    )
    _log(action=Action.SERVER_CREATED, actor=actor, server=server, message=f"Created virtual server “{name}” ({server.container_name})", request=request)
    _enqueue_reconcile(server)
    return server


def _change(*, actor, server, desired, operation, action, verb, request=None):
    with transaction.atomic():
        server = VirtualServer.objects.select_for_update().get(pk=server.pk)
        if server.deleted_at or server.desired_state == Desired.DELETED:
            raise ValidationError("This virtual server is being deleted.")
        if server.operation:
            raise ValidationError(f"The server is busy ({server.get_operation_display().lower()}); try again when it is done.")
        server.desired_state = desired
        server.operation = operation
        server.last_error = ""
        server.save(update_fields=["desired_state", "operation", "last_error", "updated_at"])
        _log(action=action, actor=actor, server=server, message=f"{verb} virtual server “{server.name}” ({server.container_name})", request=request)
        _enqueue_reconcile(server)
    return server


def server_start(*, actor, server, request=None):
    # Starting a server whose create failed creates it again.
    operation = Op.CREATING if server.state == "failed" else Op.STARTING
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
    if server.domains.exists():
        server.domains.all().delete()
        # The server goes whether or not Caddy answers now; the drift task
        # removes the routes later if it does not.
        transaction.on_commit(proxy.apply_quietly)
    server.desired_state = Desired.DELETED
    server.operation = Op.DELETING
    server.last_error = ""
    server.save(update_fields=["desired_state", "operation", "last_error", "updated_at"])
    _log(action=Action.SERVER_DELETED, actor=actor, server=server, message=f"Deleted virtual server “{server.name}” ({server.container_name})", request=request)
    _enqueue_reconcile(server)
    return server


@transaction.atomic
def server_rename(*, actor, server, name, request=None):
    old = server.name
    if old == name:
        return server
    server.name = name
    server.save(update_fields=["name", "updated_at"])
    _log(action=Action.SERVER_RENAMED, actor=actor, server=server, message=f"Renamed virtual server “{old}” to “{name}”", request=request)
    return server


@transaction.atomic
def server_set_limits(*, actor, server, memory_mb, cpus, pids_limit, request=None):
    """Admins change a server's limits; a live container gets them at once."""
    server = VirtualServer.objects.select_for_update().get(pk=server.pk)
    server.memory_mb, server.cpus, server.pids_limit = memory_mb, cpus, pids_limit
    server.save(update_fields=["memory_mb", "cpus", "pids_limit", "updated_at"])
    if docker.container_info(server.container_name) is not None:
        # Raises DockerError, rolling the row back with it.
        docker.container_update_limits(server.container_name, memory_mb=memory_mb, cpus=float(cpus), pids_limit=pids_limit)
    _log(
        action=Action.SERVER_LIMITS_CHANGED,
        actor=actor,
        server=server,
        message=f"Set limits of “{server.name}”: {memory_mb} MB memory, {cpus} CPUs, {pids_limit} processes",
        request=request,
    )
    return server


# Background work ---------------------------------------------------------------

def server_spec(server):
    return docker.ServerSpec(
        container_name=server.container_name,
        hostname=server.hostname,
        volume_name=server.volume_name,
        socket_dir=str(server.socket_dir),
        labels={
            "controlpanel.instance": settings.PANEL_INSTANCE,
            "controlpanel.server-id": str(server.pk),
            "controlpanel.owner-id": str(server.owner_id),
        },
        memory_mb=server.memory_mb,
        cpus=float(server.cpus),
        pids_limit=server.pids_limit,
    )


def _remove(server, *, keep_volume):
    spec = server_spec(server)
    docker.server_remove(
        spec.container_name,
        labels=spec.labels,
        adopt_unlabelled=server.imported,
        volume_name=None if keep_volume else spec.volume_name,
        socket_dir=spec.socket_dir,
    )


def server_reconcile(*, server_id):
    """Make the container match the row's desired state, then record what Docker shows.

    Idempotent: running it again, or after a worker died half-way, finishes
    the job. A failure is recorded on the server and in the activity log.
    """
    server = VirtualServer.objects.select_related("owner").get(pk=server_id)
    if server.deleted_at:
        return
    operation = server.operation
    try:
        if server.desired_state == Desired.DELETED:
            _remove(server, keep_volume=settings.SERVER_KEEP_VOLUME_ON_DELETE)
        elif server.desired_state == Desired.RUNNING:
            if operation == Op.RESTARTING and docker.container_info(server.container_name):
                docker.container_restart(server.container_name)
            else:
                docker.server_create(server_spec(server))
                docker.container_start(server.container_name)
        else:
            docker.container_stop(server.container_name)
        info = docker.container_info(server.container_name)
    except docker.DockerError as error:
        _record_failure(server, operation, str(error))
        return
    _record_result(server, info)
    if info and info.state == Observed.RUNNING:
        # Show what runs inside at once, not at the next monitor cycle.
        server.refresh_from_db()
        monitor.refresh_server(server, wait=settings.MONITOR_DAEMON_TIMEOUT)


def _record_result(server, info):
    now = timezone.now()
    fields = {"operation": Op.NONE, "last_error": "", "observed_at": now}
    fields["observed_state"] = info.state if info else Observed.MISSING
    if info and info.ip_address:
        fields["ip_address"] = info.ip_address
    if server.desired_state == Desired.DELETED:
        fields["deleted_at"] = now
    VirtualServer.objects.filter(pk=server.pk).update(updated_at=now, **fields)
    if fields.get("ip_address", server.ip_address) != server.ip_address:
        proxy.apply_quietly()  # its domains follow it to the new address


def _record_failure(server, operation, message):
    if operation == Op.CREATING:
        # Leave nothing half-made behind; the user can retry or delete.
        try:
            _remove(server, keep_volume=False)
        except docker.DockerError:
            log.warning("could not clean up after failed create of %s", server.container_name)
    info = None
    try:
        info = docker.container_info(server.container_name)
    except docker.DockerError:
        pass
    VirtualServer.objects.filter(pk=server.pk).update(
        operation=Op.NONE,
        last_error=message,
        observed_state=info.state if info else (Observed.MISSING if operation == Op.CREATING else Observed.UNKNOWN),
        observed_at=timezone.now(),
        updated_at=timezone.now(),
    )
    verb = (VirtualServer.Operation(operation).label if operation else "Changing").lower()
    activity_log(
        action=Action.SERVER_FAILED,
        user=server.owner,
        message=f"{verb.capitalize()} virtual server “{server.name}” failed: {message}",
        target=server.container_name,
    )


# Domains -------------------------------------------------------------------------

def _domain_rules(*, user, name, ssl, cloudflare, exclude=None):
    """Check a domain against the rules; return whether it needs an admin's approval."""
    errors = {}
    if name.startswith("*.") and ssl and not cloudflare and settings.CADDY_TLS_ISSUER == "acme":
        errors["ssl"] = "Automatic certificates for wildcard names need a DNS challenge, which is not set up: turn HTTPS off or use Cloudflare."
    if Domain.objects.filter(name=name).exclude(pk=exclude).exists():
        errors["name"] = "This domain is already in use."
    if errors:
        raise ValidationError(errors)
    platform = settings.PLATFORM_DOMAIN
    on_platform = bool(platform) and name.endswith("." + platform) and name.count(".") == platform.count(".") + 1
    if name == platform or (platform and name.endswith("." + platform) and not on_platform):
        raise ValidationError({"name": f"Choose a single name directly under {platform}, like mysite.{platform}."})
    return not (on_platform or user.is_admin or settings.DOMAIN_OWNERSHIP == "allowed")


def _lock_proxy():
    """Serialise proxy changes: each renders the configuration with every earlier change in it."""
    Node.objects.select_for_update().filter(pk=Node.local().pk).first()


@transaction.atomic
def domain_add(*, actor, server, name, port=80, ssl=True, cloudflare=False, request=None):
    """Add a domain and route it; if Caddy refuses or is down, nothing is saved (ProxyError)."""
    _lock_proxy()
    server = VirtualServer.objects.select_for_update().get(pk=server.pk)
    if server.domains.count() >= settings.DOMAINS_PER_SERVER:
        raise ValidationError(f"A server can have at most {settings.DOMAINS_PER_SERVER} domains.")
    needs_approval = _domain_rules(user=actor, name=name, ssl=ssl, cloudflare=cloudflare)
    try:
        with transaction.atomic():
            domain = Domain.objects.create(
                server=server, name=name, port=port, ssl=ssl, cloudflare=cloudflare, approved=not needs_approval
            )
    except IntegrityError:  # someone took it a moment ago
        raise ValidationError({"name": "This domain is already in use."}) from None
    pending = " (waiting for an administrator's approval)" if needs_approval else ""
    activity_log(
        action=Action.DOMAIN_ADDED, user=actor, target=domain.name, request=request,
        message=f"Added domain {domain.display_name} → “{server.name}” port {port}{pending}",
    )
    if domain.approved:
        proxy.apply()
    return domain


@transaction.atomic
def domain_update(*, actor, domain, port, ssl, cloudflare, request=None):
    _lock_proxy()
    domain = Domain.objects.select_for_update().select_related("server").get(pk=domain.pk)
    _domain_rules(user=actor, name=domain.name, ssl=ssl, cloudflare=cloudflare, exclude=domain.pk)
    domain.port, domain.ssl, domain.cloudflare = port, ssl, cloudflare
    domain.save(update_fields=["port", "ssl", "cloudflare"])
    activity_log(
        action=Action.DOMAIN_UPDATED, user=actor, target=domain.name, request=request,
        message=f"Changed domain {domain.display_name}: port {port}, HTTPS {'on' if ssl else 'off'}, Cloudflare {'on' if cloudflare else 'off'}",
    )
    if domain.approved:
        proxy.apply()
    return domain


@transaction.atomic
def domain_remove(*, actor, domain, request=None):
    _lock_proxy()
    name, display = domain.name, domain.display_name
    domain.delete()
    activity_log(action=Action.DOMAIN_REMOVED, user=actor, target=name, request=request, message=f"Removed domain {display}")
    proxy.apply()


@transaction.atomic
def domain_approve(*, actor, domain, request=None):
    _lock_proxy()
    Domain.objects.filter(pk=domain.pk).update(approved=True)
    activity_log(action=Action.DOMAIN_APPROVED, user=actor, target=domain.name, request=request, message=f"Approved domain {domain.display_name}")
    proxy.apply()


def servers_reconcile_stuck():
    """Re-run the work of servers stuck in an operation (a worker died half-way, a message was lost).

    Reconciling is idempotent, so running it again finishes the job or records a clear failure.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.SERVER_OPERATION_TIMEOUT)
    stuck = list(VirtualServer.objects.live().exclude(operation="").filter(updated_at__lt=cutoff).values_list("pk", flat=True))
    from .tasks import server_reconcile

    for server_id in stuck:
        server_reconcile.delay(server_id)
    return stuck


def user_live_servers_check(user):
    """A user who still owns live servers cannot be deleted (see accounts.services)."""
    count = VirtualServer.objects.live().filter(owner=user).count()
    if count:
        return f"{user.email} still owns {count} virtual server{'s' if count != 1 else ''}; delete them first."
    return None
