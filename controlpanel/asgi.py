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
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from hosting.routing import websocket_urlpatterns  # noqa: E402


async def health(scope, receive, send):
    """HTTP on the gateway: /healthz for load balancers and compose, nothing else."""
    ok = scope["path"] == "/healthz"
    await send({"type": "http.response.start", "status": 200 if ok else 404, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok\n" if ok else b"not here\n"})


application = ProtocolTypeRouter({
    "http": health,
    "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
})
