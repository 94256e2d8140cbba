from celery import shared_task
from django.conf import settings

from .backends import caddy
from .models import Node
from .worker import claims, monitor, moves, nodes, reconcile, workloads


def on_node(task, node, *args, tenant=False):
    """Send `task` to the worker next to `node`'s engine (its tenants' queue with `tenant`)."""
    return task.apply_async(args, queue=node.tenant_queue if tenant else node.queue)


@shared_task(acks_late=True)
def server_reconcile(server_id):
    if reconcile.server_reconcile(server_id=server_id):
        _apps_resume(server_id)


@shared_task(ignore_result=True, expires=30)
def server_refresh(server_id):
    """Read one server's inner daemon now (someone is looking at its page)."""
    reconcile.server_refresh(server_id=server_id)


# Moves: the panel's worker runs them (it alone reaches both nodes' engines); each node's worker does its part.

@shared_task(acks_late=True, soft_time_limit=moves.MOVE_SECONDS, time_limit=moves.MOVE_SECONDS + 60)
def server_move(server_id):
    moves.server_move(server_id=server_id)


@shared_task(acks_late=True)
def server_move_out(server_id):
    moves.server_move_out(server_id=server_id)


@shared_task(acks_late=True)
def server_move_in(server_id):
    moves.server_move_in(server_id=server_id)


@shared_task(acks_late=True)
def server_leftovers_remove(server_id, owner_id, disk_mb):
    moves.server_leftovers_remove(server_id=server_id, owner_id=owner_id, disk_mb=disk_mb)


# Tenants' work (settings.CELERY_TASK_ROUTES: their own queue): one at a time per
# server, the next waiting its turn in the queue, and bounded in time.
TENANT_WORK = {"bind": True, "acks_late": True, "max_retries": None,
               "soft_time_limit": workloads.WORK_SECONDS + 20, "time_limit": workloads.WORK_SECONDS + 30}


def _in_turn(task, work, **ids):
    try:
        work(**ids)
    except workloads.ServerBusy:
        raise task.retry(countdown=2) from None


@shared_task(**TENANT_WORK)
def container_action(self, container_id):
    _in_turn(self, workloads.container_action, container_id=container_id)


@shared_task(**TENANT_WORK, expires=60)
def images_refresh(self, server_id):
    _in_turn(self, workloads.images_refresh, server_id=server_id)


@shared_task(**TENANT_WORK)
def image_remove(self, image_id):
    _in_turn(self, workloads.image_remove, image_id=image_id)


@shared_task(**TENANT_WORK)
def app_run(self, deployment_id):
    _in_turn(self, workloads.app_run, deployment_id=deployment_id)


def _apps_resume(server_id):
    """A server started: its apps start again, each in its turn on its node's tenants' queue."""
    server, starts = workloads.apps_resume(server_id=server_id)
    for deployment_id in starts:
        on_node(app_run, server.node, deployment_id, tenant=True)


@shared_task(ignore_result=True)
def monitor_cycle():
    """The cycle of the node this worker sits on; the panel's own worker also has every other node's worker run theirs."""
    here = Node.local()
    others = monitor.other_nodes(here)
    if others:
        nodes.brokers_ensure()  # Redis forgets them when it restarts
    for node in others:
        on_node(monitor_cycle.s().set(expires=settings.MONITOR_INTERVAL), node)
    run = monitor.run_cycle()
    if here.is_local:  # a node's worker adds cycles, it may not remove any
        monitor.runs_purge()
    for server_id in run.servers_started if run else ():
        _apps_resume(server_id)
    return run and run.pk


@shared_task(ignore_result=True)
def proxy_apply():
    """The Caddy of the node this worker sits on takes its domains' configuration now."""
    caddy.apply_quietly()


@shared_task(ignore_result=True)
def proxy_reapply_if_drifted():
    """This node's Caddy, checked; the panel's own worker has every other node's worker check theirs."""
    for node in monitor.other_nodes():
        on_node(proxy_reapply_if_drifted.s().set(expires=settings.PROXY_DRIFT_INTERVAL), node)
    return caddy.reapply_if_drifted()


@shared_task(ignore_result=True)
def servers_reconcile_stuck():
    stuck = reconcile.stuck_servers()
    for server in stuck:
        on_node(server_reconcile, server.node, server.pk)
    return [server.pk for server in stuck]


@shared_task(ignore_result=True, expires=60)
def domain_check_claim(domain_id):
    claims.domain_check_claim(domain_id=domain_id)


@shared_task(ignore_result=True)
def domains_check_claims():
    """Expire old claims, then look up the TXT record of every DNS claim."""
    claims.domains_expire_claims()
    return sum(claims.domain_check_claim(domain_id=pk) for pk in claims.dns_claims_due())


# Nodes: their certificate authorities are the worker's alone.

@shared_task(acks_late=True)
def node_prepare(node_id):
    nodes.node_prepare(node_id=node_id)


@shared_task(acks_late=True)
def node_sign(node_id, csr):
    nodes.node_sign(node_id=node_id, csr=csr)


@shared_task(acks_late=True)
def node_forget(name, database_role="", broker_user=""):
    nodes.node_forget(name=name, database_role=database_role, broker_user=broker_user)
