"""Who an API request is: the user of the token in its Authorization header."""

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.throttling import SimpleRateThrottle

from accounts.services import client_ip

from . import services
from .models import ApiToken


class TokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer cpat_...`. A revoked or expired token, or a disabled user's, is refused at once."""

    def authenticate(self, request):
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != b"bearer":
            return None
        if len(words) != 2:
            raise AuthenticationFailed("Send the token as: Authorization: Bearer <token>.")
        token = services.token_find(words[1].decode("latin-1"))
        if token is None:
            raise AuthenticationFailed("This token is unknown, expired or revoked.")
        token.used_now(client_ip(request))
        request._request.api_token = token  # the activity log names the token (accounts.services.activity_log)
        return token.user, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'  # a 401 (not a 403) when no token came


class TokenScope(BasePermission):
    """A read token only reads; a deploy token reads and runs the views that deploy; a write token does what its user may."""

    message = "This token's scope does not allow that."

    def has_permission(self, request, view):
        token = request.auth
        if not isinstance(token, ApiToken):
            return False
        if request.method in SAFE_METHODS or token.scope == ApiToken.Scope.WRITE:
            return True
        return token.scope == ApiToken.Scope.DEPLOY and getattr(view, "deploys", False)


class AccountWideToken(BasePermission):
    """The account's own things (SSH keys, which open every server; the whole activity log) are not for a
    token limited to some servers: through them it could reach the rest."""

    message = "This token is limited to some servers; this is about your whole account."

    def has_permission(self, request, view):
        return isinstance(request.auth, ApiToken) and not request.auth.is_limited


class Administrator(BasePermission):
    message = "This is for administrators."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_admin)


class TokenRate(SimpleRateThrottle):
    """Requests per token (REST_FRAMEWORK's "token" rate): one busy script does not slow the panel for others."""

    scope = "token"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk} if isinstance(request.auth, ApiToken) else None


class ClientRate(SimpleRateThrottle):
    """Requests per client address (the "client" rate), whatever tokens it sends."""

    scope = "client"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request)}
