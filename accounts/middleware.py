import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.utils import timezone

from .models import User

SESSION_STARTED = "controlpanel_started"
SESSION_ACTIVE = "controlpanel_active"


class SessionTimeoutMiddleware:
    """End sessions idle for SESSION_IDLE_TIMEOUT, and any SESSION_ABSOLUTE_TIMEOUT after login.

    The activity stamp is written at most once a minute, not on every request.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = int(time.time())
            session = request.session
            started = session.setdefault(SESSION_STARTED, now)
            active = session.get(SESSION_ACTIVE, started)
            if now - started > settings.SESSION_ABSOLUTE_TIMEOUT or now - active > settings.SESSION_IDLE_TIMEOUT:
                logout(request)
                messages.info(request, "Your session has ended. Please log in again.")
            elif now - active >= 60:
                session[SESSION_ACTIVE] = now
        return self.get_response(request)


class LastSeenMiddleware:
    """Record when a signed-in user was last active, at most once a minute."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if user.is_authenticated:
            now = timezone.now()
            if user.last_seen is None or now - user.last_seen >= settings.LAST_SEEN_INTERVAL:
                User.objects.filter(pk=user.pk).update(last_seen=now)
                user.last_seen = now
        return self.get_response(request)
