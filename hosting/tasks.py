from celery import shared_task

from . import monitor, proxy, services


@shared_task(acks_late=True)
def server_reconcile(server_id):
    services.server_reconcile(server_id=server_id)


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
    return services.servers_reconcile_stuck()
