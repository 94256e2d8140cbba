import smtplib

from celery import shared_task
from django.core.mail import send_mail

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


@shared_task(autoretry_for=(OSError, smtplib.SMTPException), retry_backoff=30, max_retries=5)
def email_send(subject, body, to):
    """One email, through EMAIL_URL's server; tried again for a few minutes while it is away."""
    send_mail(subject, body, None, [to])
