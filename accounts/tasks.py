from celery import shared_task

from . import services, throttling


@shared_task
def registration_codes_purge():
    return services.registration_codes_purge()


@shared_task
def activity_purge():
    return services.activity_purge()


@shared_task
def sessions_purge():
    return services.sessions_purge()


@shared_task
def throttle_counts_purge():
    return throttling.purge()
