from celery import shared_task

from . import monitor, proxy, reconcile


@shared_task(acks_late=True)
def server_reconcile(server_id):
    reconcile.server_reconcile(server_id=server_id)


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
