from celery import shared_task

from . import domains, monitor, proxy, reconcile, workloads


@shared_task(acks_late=True)
def server_reconcile(server_id):
    reconcile.server_reconcile(server_id=server_id)


@shared_task(ignore_result=True, expires=30)
def server_refresh(server_id):
    """Read one server's inner daemon now (someone is looking at its page)."""
    reconcile.server_refresh(server_id=server_id)


@shared_task(acks_late=True)
def container_action(container_id):
    workloads.container_action(container_id=container_id)


@shared_task(acks_late=True)
def app_run(deployment_id):
    workloads.app_run(deployment_id=deployment_id)


@shared_task(ignore_result=True)
def monitor_cycle():
    run = monitor.run_cycle()
    monitor.runs_purge()
    return run and run.pk


@shared_task(ignore_result=True)
def proxy_reapply_if_drifted():
    return proxy.reapply_if_drifted()


@shared_task(ignore_result=True)
def servers_reconcile_stuck():
    stuck = reconcile.stuck_servers()
    for server_id in stuck:
        server_reconcile.delay(server_id)
    return stuck


@shared_task(ignore_result=True)
def domains_check_claims():
    """Expire old claims, then look up the TXT record of every DNS claim."""
    domains.domains_expire_claims()
    return sum(domains.domain_check_claim(domain_id=pk) for pk in domains.dns_claims_due())
