from django.conf import settings
from django.utils import timezone

from .models import User


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
