from celery import shared_task

from . import services


@shared_task(acks_late=True)
def server_reconcile(server_id):
    services.server_reconcile(server_id=server_id)
