"""Personal access tokens: made, found, revoked."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts.models import User
from accounts.services import activity_log
from controlpanel.errors import refusal

from .activity import Action
from .models import ApiToken

# Secret scanners (GitHub's, gitleaks) find tokens by a fixed prefix.
PREFIX = "cpat_"
HINT_LENGTH = len(PREFIX) + 6

ERRORS = {
    "too_many": "An account can have at most {limit} API tokens; revoke one first.",
    "days": "Choose how long the token lasts: {choices} days.",
}


def digest(secret):
    """The keyed hash a token is kept as (SECRET_KEY is the key: rotating it ends every token)."""
    return salted_hmac("controlpanel.api.token", secret, algorithm="sha256").hexdigest()


@transaction.atomic
def token_create(*, user, name, scope, days, servers=(), request=None):
    """A new token and its secret, which is never stored and so is shown only now."""
    user = User.objects.select_for_update().get(pk=user.pk)
    if days not in settings.API_TOKEN_DAYS:
        raise refusal(ERRORS, "days", "days", choices=", ".join(map(str, settings.API_TOKEN_DAYS)))
    if user.api_tokens.filter(revoked_at__isnull=True, expires_at__gt=timezone.now()).count() >= settings.API_TOKENS_PER_USER:
        raise refusal(ERRORS, "too_many", limit=settings.API_TOKENS_PER_USER)
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, scope=scope, digest=digest(secret), hint=secret[:HINT_LENGTH],
                                    expires_at=timezone.now() + timedelta(days=days), is_limited=bool(servers))
    token.servers.set(servers)
    limited = f", for {len(servers)} server{'s' if len(servers) != 1 else ''}" if servers else ""
    activity_log(action=Action.TOKEN_CREATED, user=user, target=token.hint, request=request,
                 message=f"Created API token “{name}” ({scope}{limited}, {days} days)")
    return token, secret


def token_revoke(*, actor, token, request=None):
    """The token stops working at once; its row stays, for the log's sake."""
    if ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        whose = "" if actor == token.user else f" of {token.user.email}"
        activity_log(action=Action.TOKEN_REVOKED, user=actor, target=token.hint, request=request,
                     message=f"Revoked API token “{token.name}”{whose}")


def token_find(secret):
    """The usable token with this secret, or None (unknown, revoked, expired, or its user disabled)."""
    if not secret.startswith(PREFIX) or len(secret) > 100:
        return None
    try:
        token = ApiToken.objects.select_related("user").get(digest=digest(secret))
    except ApiToken.DoesNotExist:
        return None
    return token if token.is_usable else None


def tokens_of(user):
    return user.api_tokens.prefetch_related("servers")
