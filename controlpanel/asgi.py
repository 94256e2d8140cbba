"""The gateway's ASGI application: WebSockets only (the pages are the WSGI web tier's).

Run by `manage.py gateway`, the one process besides the worker that holds the
Docker socket.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
django.setup()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - after django.setup()
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from hosting.gateway.routing import websocket_urlpatterns  # noqa: E402


async def health(scope, receive, send):
    """HTTP on the gateway: /healthz for load balancers and compose, nothing else."""
    ok = scope["path"] == "/healthz"
    await send({"type": "http.response.start", "status": 200 if ok else 404, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok\n" if ok else b"not here\n"})


application = ProtocolTypeRouter({
    "http": health,
    # The panel's own pages only: scheme, host and port, not the host alone.
    "websocket": OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), settings.PANEL_ORIGINS),
})
