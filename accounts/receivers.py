"""Login and logout are logged from Django's auth signals: the one place they all pass."""

from django.contrib.auth.signals import (
    user_logged_in,
    user_logged_out,
    user_login_failed,
)
from django.dispatch import receiver

from . import services
from .activity import Action


@receiver(user_logged_in)
def on_login(sender, request, user, **kwargs):
    services.session_track(request=request, user=user)
    services.activity_log(action=Action.LOGIN, user=user, message="Logged in", request=request)


@receiver(user_logged_out)
def on_logout(sender, request, user, **kwargs):
    if user is None:
        return
    services.session_untrack(request=request)
    services.activity_log(action=Action.LOGOUT, user=user, message="Logged out", request=request)


@receiver(user_login_failed)
def on_login_failed(sender, credentials, request=None, **kwargs):
    services.visitor_activity(action=Action.LOGIN_FAILED, request=request, typed=credentials.get("username", ""))
