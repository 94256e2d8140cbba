"""The gateway's WebSockets (Django Channels): a terminal in a server, an admin watching
one, and a container's log.

The panel's session cookie authenticates them (Channels' AuthMiddlewareStack);
the Origin must be one of PANEL_ORIGINS, scheme and port included (a page of
any other site cannot open one);
someone else's server is refused exactly like one that does not exist.

Messages: binary frames are the terminal's bytes (typing one way, output the
other); text frames are JSON: {"type": "resize", "rows", "cols"} and
{"type": "ping"} from the browser; {"type": "hello", "terminal"},
{"type": "status", "watchers"}, {"type": "pong"} and {"type": "closed",
"reason"} from the gateway.
"""

import asyncio
import json
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts.models import User
from accounts.services import activity_log, forwarded_client_ip
from controlpanel.text import visible_controls

from .. import services
from ..activity import Action
from ..backends import docker
from ..models import TerminalSession, VirtualServer
from . import logs, terminals

CLOSED = 4000  # the close code of a terminal that ended (the reason comes first, as a message)
WATCH_BACKLOG = 64  # output messages a watcher may lag behind before it is let go


@database_sync_to_async
def _server_for(user, server_id):
    if not (user.is_authenticated and user.is_active):
        return None
    return VirtualServer.objects.for_user(user).select_related("node").filter(pk=server_id).first()


def _client_ip(scope):
    headers = dict(scope.get("headers", []))
    return forwarded_client_ip((scope.get("client") or ("",))[0], headers.get(b"x-forwarded-for", b"").decode("latin1"))


async def _say_and_close(consumer, message):
    """The last word to a page, then the close (CLOSED): the page shows the reason."""
    try:
        await consumer.send(text_data=json.dumps(message))
        await consumer.close(code=CLOSED)
    except Exception:  # noqa: BLE001 - the browser is already gone
        pass


class _Reader(AsyncWebsocketConsumer):
    async def send_output(self, data):
        await self.send(bytes_data=data)

    async def send_status(self, status):
        await self.send(text_data=json.dumps({"type": "status", **status}))

    async def close_with(self, reason, *, sessions_page=False):
        """The reason it ended; with sessions_page, the page shows a link to the user's Sessions page too."""
        await _say_and_close(self, {"type": "closed", "reason": reason, **({"sessions_page": True} if sessions_page else {})})


class TerminalConsumer(_Reader):
    """ws/servers/<id>/terminal/[?terminal=<id>&rows=&cols=]: a shell in the server, new or reattached."""

    terminal = None

    async def connect(self):
        user = self.scope["user"]
        server = await _server_for(user, self.scope["url_route"]["kwargs"]["server_id"])
        if server is None:
            await self.close()  # before accepting: the handshake is refused, the same for every reason
            return
        await self.accept()
        if server.state != VirtualServer.State.RUNNING:
            await self.close_with(f"The server is {server.state.label.lower()}: start it to open a terminal.")
            return
        query = {key: values[-1] for key, values in parse_qs(self.scope["query_string"].decode("latin1")).items()}
        self.terminal = terminals.find(query.get("terminal", ""), user=user)
        if self.terminal is None or self.terminal.server_id != server.pk:
            try:
                self.terminal = await terminals.open_terminal(
                    user=user, server=server, session_key=self.scope["session"].session_key, client_ip=_client_ip(self.scope),
                    rows=_number(query.get("rows"), 24), cols=_number(query.get("cols"), 80))
            except terminals.TerminalError as error:
                self.terminal = None
                await self.close_with(str(error), sessions_page=isinstance(error, terminals.TooManySessions))
                return
        await self.send(text_data=json.dumps({"type": "hello", "terminal": self.terminal.id}))
        await self.terminal.attach(self)

    async def receive(self, text_data=None, bytes_data=None):
        if self.terminal is None:
            return
        if bytes_data is not None:
            await self.terminal.write(bytes_data)
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == "resize":
            await self.terminal.resize(_number(message.get("rows"), 24), _number(message.get("cols"), 80))
        elif message.get("type") == "ping":
            await self.send(text_data=json.dumps({"type": "pong"}))

    async def disconnect(self, code):
        if self.terminal is not None:
            self.terminal.detach(self)


class WatchConsumer(_Reader, terminals.GatewaySession):
    """ws/terminals/<row id>/watch/: an admin watches a terminal, read-only; its owner is told.

    A session of the gateway's (hosting.gateway.terminals): counted, and ended by the
    sweeper when the watcher is no longer an admin (or logs out)."""

    terminal = None
    queue = None

    async def connect(self):
        user = self.scope["user"]
        if not (user.is_authenticated and user.is_active and user.is_admin):
            await self.close()
            return
        await self.accept()
        self.terminal = terminals.find_by_row(self.scope["url_route"]["kwargs"]["row_id"])
        if self.terminal is None:
            await self.close_with("This terminal has ended.")
            return
        try:
            self.enter(user_id=user.pk, server_id=self.terminal.server_id, session_key=self.scope["session"].session_key)
        except terminals.TerminalError as error:
            await self.close_with(str(error))
            return
        self.started = True
        self.queue = asyncio.Queue(WATCH_BACKLOG)
        self.sender = asyncio.create_task(self._send_queued())
        await self.send(text_data=json.dumps({"type": "hello", "terminal": self.terminal.id}))
        await _log_watch(user, self.terminal)
        await self.terminal.watch(self)

    def offer_output(self, data):
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.terminal.watchers.discard(self)
            # Kept: a task nothing refers to may be collected before it runs.
            self.letting_go = asyncio.create_task(self.close_with("You fell too far behind this terminal: watch it again."))

    async def _send_queued(self):
        while True:
            await self.send(bytes_data=await self.queue.get())

    async def receive(self, text_data=None, bytes_data=None):
        pass  # read-only

    async def end(self, reason, *, by_admin=False):
        """The sweeper's word: the watcher may no longer watch."""
        if not self.closed:
            await self.disconnect(None)
            await self.close_with(reason)

    async def disconnect(self, code):
        self.closed = True
        terminals.let_go(self)
        if self.queue is not None:
            self.sender.cancel()
        if self.terminal is not None:
            await self.terminal.unwatch(self)


def _number(value, default):
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # JSON's Infinity is a float int() refuses
        return default


@database_sync_to_async
def _log_watch(admin, terminal):
    row = TerminalSession.objects.select_related("user").get(pk=terminal.row_id)
    activity_log(action=Action.TERMINAL_WATCHED, user=admin, target=terminal.container,
                 message=f"Watched {row.user.email if row.user else 'someone'}'s terminal on “{terminal.server_name}”")


@database_sync_to_async
def _container_for(user, server_id, container_id):
    if not (user.is_authenticated and user.is_active):
        return None
    server = VirtualServer.objects.for_user(user).select_related("node").filter(pk=server_id).first()
    container = server and server.containers.filter(pk=container_id).first()
    if container:
        container.server = server  # with its node: where its log is read from
    return container


class LogConsumer(AsyncWebsocketConsumer, terminals.GatewaySession):
    """ws/servers/<id>/containers/<row>/logs/[?tail=N]: a container's last lines, then what it prints.

    Text frames: {"type": "lines", "lines": [[stream, time, text], ...], "skipped": n},
    then {"type": "ended", "reason"} when the log ends (the container stopped, or went).

    A session of the gateway's like a terminal (hosting.gateway.terminals): counted in the
    user's limit and checked by the sweeper, which ends it for the same reasons."""

    task = None

    async def connect(self):
        kwargs = self.scope["url_route"]["kwargs"]
        user = self.scope["user"]
        container = await _container_for(user, kwargs["server_id"], kwargs["container_id"])
        if container is None:
            await self.close()
            return
        await self.accept()
        try:
            self.enter(user_id=user.pk, server_id=container.server_id, session_key=self.scope["session"].session_key)
        except terminals.TerminalError as error:
            await self._ended(str(error))
            return
        self.started = True
        query = {key: values[-1] for key, values in parse_qs(self.scope["query_string"].decode("latin1")).items()}
        tail = max(0, min(_number(query.get("tail"), 500), 5000))
        self.task = asyncio.create_task(self._follow(container, tail))

    async def _follow(self, container, tail):
        reason = "The log has ended: the container stopped."
        try:
            await logs.follow(container.server, container.docker_id, tail=tail,
                              send=lambda batch: self.send(text_data=json.dumps({"type": "lines", **batch})))
        except docker.DockerError as error:
            reason = str(error)
        terminals.let_go(self)
        await self._ended(reason)

    async def _ended(self, reason):
        await _say_and_close(self, {"type": "ended", "reason": reason})

    async def end(self, reason, *, by_admin=False):
        """The sweeper's word (or the gateway stopping): the stream ends, and the page is told why."""
        if self.closed:
            return
        self.closed = True
        terminals.let_go(self)
        if self.task is not None:
            self.task.cancel()
        await self._ended(reason)

    async def receive(self, text_data=None, bytes_data=None):
        pass

    async def disconnect(self, code):
        self.closed = True
        terminals.let_go(self)
        if self.task is not None:
            self.task.cancel()


class ImageLoadConsumer(AsyncWebsocketConsumer, terminals.GatewaySession):
    """ws/servers/<id>/images/load/: a `docker save` archive from the page, into `docker load` run in
    the server as its owner (over its node's engine, like a terminal: on every node).

    The page sends the archive in binary messages, each acknowledged with {"type": "received", "bytes"}
    (it sends the next when one is: the archive streams, never held here), then {"type": "end"}.
    The gateway says {"type": "output", "text"} as `docker load` prints, then {"type": "done", "ok",
    "reason"}. Past IMAGE_LOAD_MAX_MB the load is cut off. A session like a log stream: counted in the
    user's limit, ended by the sweeper for the same reasons."""

    idles = True  # a page that stopped sending is let go after TERMINAL_IDLE_SECONDS
    server = writer = task = None
    received = 0

    async def connect(self):
        user = self.scope["user"]
        server = await _server_for(user, self.scope["url_route"]["kwargs"]["server_id"])
        if server is None:
            await self.close()
            return
        await self.accept()
        if server.observed_state != VirtualServer.ObservedState.RUNNING:
            await self._done(False, "The server is not running: start it to load an image.")
            return
        try:
            self.enter(user_id=user.pk, server_id=server.pk, session_key=self.scope["session"].session_key)
        except terminals.TerminalError as error:
            await self._done(False, str(error))
            return
        self.started, self.server, engine = True, server, docker.Engine.of(server.node)
        try:
            exec_id = await asyncio.to_thread(docker.exec_create, engine, server.container_name, ["controlpanel-shell", "-c", "docker load"],
                                              tty=False)
            reader, self.writer = await docker.exec_stream(engine, exec_id, tty=False)
        except docker.DockerError as error:
            terminals.let_go(self)
            await self._done(False, str(error))
            return
        self.task = asyncio.create_task(self._load(engine, exec_id, reader))

    async def receive(self, text_data=None, bytes_data=None):
        if self.writer is None or self.closed:
            return
        self.last_input = time.monotonic()
        if bytes_data:
            self.received += len(bytes_data)
            if self.received > settings.IMAGE_LOAD_MAX_MB * 2**20:
                self.writer.close()  # docker load reads a cut archive, and says so
                await self.end(f"The archive is larger than {settings.IMAGE_LOAD_MAX_MB} MB, the most a server takes from the browser.")
                return
            self.writer.write(bytes_data)
            await self.writer.drain()
            await self.send(text_data=json.dumps({"type": "received", "bytes": self.received}))
        elif text_data and _message_type(text_data) == "end":
            self.writer.write_eof()
            await self.writer.drain()

    async def _load(self, engine, exec_id, reader):
        said = bytearray()
        async for _, data in logs.frames(reader, tty=False):
            said += data
            await self.send(text_data=json.dumps({"type": "output", "text": visible_controls(data.decode("utf-8", "replace"))}))
        _, code = await asyncio.to_thread(docker.exec_inspect, engine, exec_id)
        loaded = [line.split(":", 1)[1].strip() for line in said.decode("utf-8", "replace").splitlines() if line.startswith("Loaded image")]
        terminals.let_go(self)
        if code == 0:
            await _image_loaded(self.server, self.user_id, loaded, self.received)
        await self._done(code == 0, f"Loaded {', '.join(loaded[:10]) or 'nothing'}." if code == 0 else "Docker could not load it: see its words above.")

    async def _done(self, ok, reason):
        self.closed = True
        await _say_and_close(self, {"type": "done", "ok": ok, "reason": reason})

    async def end(self, reason, *, by_admin=False):
        """The sweeper's word, the limit, or the gateway stopping: the load is cut off, and the page told why."""
        if self.closed:
            return
        terminals.let_go(self)
        if self.task is not None:
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()
        await self._done(False, reason)

    async def disconnect(self, code):
        self.closed = True
        terminals.let_go(self)
        if self.task is not None:
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()


def _message_type(text):
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return message.get("type") if isinstance(message, dict) else None


@database_sync_to_async
def _image_loaded(server, user_id, loaded, size):
    user = User.objects.named(user_id)
    activity_log(action=Action.IMAGE_LOADED, user=user, target=server.container_name,
                 message=f"Loaded {', '.join(loaded[:10]) or 'an archive'} ({size // 2**20} MB) into “{server.name}”")
    services.images_refresh_now(server)
