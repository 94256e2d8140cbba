"""The gateway: the browser terminals' WebSockets (ASGI, served by uvicorn) and the
SSH gateway (asyncssh), in one process and one event loop.

    .venv/bin/python manage.py gateway --bind 127.0.0.1:8001 --ssh-bind 127.0.0.1:2222

Like the worker, it holds the Docker socket (the web tier never does). A
reverse proxy sends /ws/ to it (README: Deployment). On SIGTERM or Ctrl-C it
ends its terminals and stops; if it is killed, each terminal's guard ends the
shell in its server.
"""

import asyncio

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hosting.gateway import ssh, terminals


class HandshakeDeadline(HttpToolsProtocol):
    """uvicorn's HTTP protocol, with a deadline for the request itself (the WebSocket
    handshake): a connection that has not sent its headers within
    GATEWAY_HANDSHAKE_SECONDS is closed, so half-sent handshakes cannot pile up.
    (uvicorn's own keep-alive timeout starts only after a first response.)"""

    deadline = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self.deadline = self.loop.call_later(settings.GATEWAY_HANDSHAKE_SECONDS, transport.close)

    def on_headers_complete(self):
        self.deadline.cancel()
        super().on_headers_complete()

    def connection_lost(self, exc):
        if self.deadline is not None:
            self.deadline.cancel()
        super().connection_lost(exc)


def _address(bind):
    host, _, port = bind.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class Command(BaseCommand):
    help = "Run the gateway: WebSocket terminals into virtual servers."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=settings.GATEWAY_BIND, help="host:port for the WebSockets (default GATEWAY_BIND)")
        parser.add_argument("--ssh-bind", default=settings.SSH_BIND, help="host:port for SSH (default SSH_BIND; empty: none)")

    def handle(self, *args, bind, ssh_bind, **options):
        asyncio.run(self.serve(*_address(bind), _address(ssh_bind) if ssh_bind else None))

    async def serve(self, host, port, ssh_address):
        left = await terminals.close_leftovers()
        if left:
            self.stdout.write(f"{left} terminals of an earlier gateway marked closed")
        config = uvicorn.Config("controlpanel.asgi:application", host=host, port=port, lifespan="off", http=HandshakeDeadline,
                                ws_ping_interval=settings.GATEWAY_PING_SECONDS, ws_ping_timeout=settings.GATEWAY_PING_SECONDS,
                                ws_max_size=2**20, proxy_headers=False, log_level="info",
                                timeout_graceful_shutdown=5)  # then the terminals end, below
        sweeper = asyncio.create_task(terminals.sweep_forever())
        ssh_server = await ssh.serve(*ssh_address) if ssh_address else None
        if ssh_server:
            self.stdout.write(f"SSH on {ssh_address[0]}:{ssh_address[1]}, host key {ssh.host_key().get_fingerprint('sha256')}")
        try:
            await uvicorn.Server(config).serve()
        finally:
            sweeper.cancel()
            if ssh_server:
                ssh_server.close()
            for terminal in list(terminals.terminals.values()):
                await terminal.end(terminals.Ended.GATEWAY_STOPPED)
