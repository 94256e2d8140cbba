"""Terminals inside virtual servers: the gateway's shells, and who reads them.

A Terminal is one shell (`controlpanel-shell` under `docker exec` with a
TTY) with its guard (a second exec, `controlpanel-guard`, whose stdin is
this process: when the gateway lets go of it, or dies, the guard ends the
shell). Its owner's browser may come and go: the shell waits
TERMINAL_REATTACH_SECONDS for it to come back, keeping its last
TERMINAL_SCROLLBACK_BYTES of output to show again. Output is read only while
the owner's side takes it, so a flood waits in the server, not in this
process; admins may watch read-only, and the owner is told.

Every few seconds `sweep()` checks each terminal against the database and
ends those whose user was disabled or logged out, whose server went, that an
admin ended, that sat idle too long or that nobody came back to. Each open
and close is a TerminalSession row and an activity entry.

One gateway process per panel: the terminals live in its memory.
"""

import asyncio
import enum
import logging
import secrets
import time

from channels.db import database_sync_to_async
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from accounts.models import SshKey, User, UserSession
from accounts.services import activity_log

from ..activity import Action
from ..backends import docker
from ..models import TerminalSession, VirtualServer

log = logging.getLogger(__name__)
READ_CHUNK = 64 * 1024
MAX_INPUT = 64 * 1024  # one message of typing or pasting

terminals = {}  # session id -> every open session of this gateway (GatewaySession): shells, SSH, log streams, watchers


class Ended(enum.StrEnum):
    """Why a session ended, as its user is told (and its row keeps)."""

    DISABLED = "Your account was disabled."
    LOGGED_OUT = "You logged out."
    KEY_REMOVED = "The SSH key it was opened with was removed."
    SERVER_DELETED = "The server was deleted."
    NO_ACCESS = "You no longer have access to this server."
    SERVER_STOPPED = "The server is not running."
    BY_ADMIN = "An administrator ended this terminal."
    BY_USER = "You ended this on the Sessions page."
    ABANDONED = "Nobody came back to this terminal."
    SHELL_ENDED = "The shell has ended."
    SSH_CLOSED = "The SSH connection closed."
    FINISHED = "Finished."  # a command, sftp or forward that ran to its end
    GATEWAY_STOPPED = "The gateway stopped."
    GATEWAY_RESTARTED = "The gateway restarted."


class TerminalError(Exception):
    """A terminal cannot be opened or reached; str() is fit for people."""


class TooManySessions(TerminalError):
    """The user has the most sessions open: the Sessions page lists them, to end one."""


class GatewaySession:
    """What every session of the gateway is to the one place that counts and checks
    them (admit, the sweeper): whose it is, on which server, by which browser login
    or SSH key, and how to end it. Terminals, SSH connections and sessions, log
    streams and watchers are all one of these."""

    idles = False  # ends after TERMINAL_IDLE_SECONDS without input
    detaches = False  # its reader may go and come back (a Terminal): ends when nobody came back
    id = row_id = key_id = session_key = None
    started = closed = False

    def enter(self, *, user_id, server_id, session_key=None, key_id=None):
        """Counted in as the user's (TerminalError past their limit); checked by the sweeper once `started`."""
        self.id = secrets.token_hex(16)
        self.user_id, self.server_id, self.session_key, self.key_id = user_id, server_id, session_key, key_id
        self.last_input = self.detached_at = time.monotonic()
        admit(self)

    async def end(self, reason, *, by_admin=False):
        raise NotImplementedError


class Terminal(GatewaySession):
    idles = detaches = True

    def __init__(self, *, user, server, client_ip, kind=TerminalSession.Kind.BROWSER, command=None):
        self.user_email, self.server_name, self.container = user.email, server.name, server.container_name
        self.engine = docker.Engine.of(server.node)
        self.client_ip, self.kind = client_ip, kind
        self.command = command or ["controlpanel-shell"]
        self.scrollback = bytearray()
        self.owner = None  # what the shell's output goes to: an object with `async send_output(bytes)` and `async close_with(reason)`
        self.watchers = set()
        self.bytes_in = self.bytes_out = 0
        self.attached = asyncio.Event()  # output is read only while someone takes it
        self.exec_id = self.reader = self.writer = self.guard = self.pump = None

    @property
    def description(self):
        return "an SSH shell" if self.kind == TerminalSession.Kind.SSH else "a browser terminal"

    # Opening and ending -----------------------------------------------------

    async def start(self, rows=24, cols=80):
        env = {"TERM": "xterm-256color", "CONTROLPANEL_TERMINAL": self.id}
        self.exec_id = await asyncio.to_thread(docker.exec_create, self.engine, self.container, self.command, tty=True, env=env)
        self.reader, self.writer = await docker.exec_stream(self.engine, self.exec_id, tty=True)
        guard_id = await asyncio.to_thread(docker.exec_create, self.engine, self.container, ["controlpanel-guard", self.id], tty=False)
        _, self.guard = await docker.exec_stream(self.engine, guard_id, tty=False)
        await self.resize(rows, cols)
        self.row_id = await record_opened(self)
        self.started = True
        self.pump = asyncio.create_task(self._pump(), name=f"terminal {self.id}")

    async def end(self, reason, *, by_admin=False):
        if self.closed:
            return
        self.closed = True
        let_go(self)
        for reader in [self.owner, *self.watchers]:
            if reader is not None:
                await reader.close_with(reason)
        self.owner, self.watchers = None, set()
        for stream in (self.guard, self.writer):  # the guard first: its end ends the shell
            if stream is not None:
                stream.close()
        if self.pump and self.pump is not asyncio.current_task():
            self.pump.cancel()
        await record_closed(self, reason, by_admin)

    # Readers ---------------------------------------------------------------

    async def attach(self, owner):
        """The owner's side (again): it gets the recent output, then what follows."""
        previous, self.owner = self.owner, owner
        if previous is not None:
            await previous.close_with("This terminal was opened again elsewhere.")
        if self.scrollback:
            await owner.send_output(bytes(self.scrollback))
        await self._tell_watchers()
        self.attached.set()

    def detach(self, owner):
        if self.owner is owner:
            self.owner = None
            self.attached.clear()
            self.detached_at = time.monotonic()

    async def watch(self, watcher):
        self.watchers.add(watcher)
        if self.scrollback:
            await watcher.send_output(bytes(self.scrollback))
        await self._tell_watchers()

    async def unwatch(self, watcher):
        self.watchers.discard(watcher)
        await self._tell_watchers()

    async def _tell_watchers(self):
        if self.owner is not None:
            await self.owner.send_status({"watchers": len(self.watchers)})

    # Traffic ---------------------------------------------------------------

    async def write(self, data):
        if self.closed or not data:
            return
        data = data[:MAX_INPUT]
        self.writer.write(data)
        await self.writer.drain()
        self.bytes_in += len(data)
        self.last_input = time.monotonic()

    async def resize(self, rows, cols):
        rows, cols = max(2, min(int(rows), 500)), max(10, min(int(cols), 1000))
        try:
            await asyncio.to_thread(docker.exec_resize, self.engine, self.exec_id, rows=rows, cols=cols)
        except docker.DockerError:
            pass  # the shell has just ended; the pump says so

    async def _send_to_owner(self, owner, data):
        try:
            await owner.send_output(data)  # waits while the browser is slow: the shell waits too
        except OSError:  # the page went while this was on its way (uvicorn's ClientDisconnected): the scrollback keeps it for its return
            self.detach(owner)

    async def _pump(self):
        try:
            while True:
                await self.attached.wait()
                data = await self.reader.read(READ_CHUNK)
                if not data:
                    break
                self.bytes_out += len(data)
                self.scrollback += data
                del self.scrollback[: max(0, len(self.scrollback) - settings.TERMINAL_SCROLLBACK_BYTES)]
                for watcher in list(self.watchers):
                    watcher.offer_output(data)  # never waits: a slow watcher is dropped
                owner = self.owner
                if owner is not None:
                    await self._send_to_owner(owner, data)
        except (OSError, asyncio.IncompleteReadError):
            pass
        # The shell ends by itself (exit), or because its server went: say which.
        reason, by_admin = (await _reasons_to_end([self])).get(self.id, (Ended.SHELL_ENDED, False))
        await self.end(reason, by_admin=by_admin)


def _sessions_page():
    return reverse("hosting:session_list")


def admit(session):
    """Count `session` in, or TerminalError: at most TERMINALS_PER_USER shells and
    SESSIONS_PER_USER of everything (shells, SSH commands, sftp, forwards, log
    streams, SSH connections) per user. Checked and taken in one step, with no
    wait between: many opens at once cannot all pass the same count."""
    mine = [s for s in terminals.values() if s.user_id == session.user_id and not s.closed]
    if isinstance(session, Terminal):
        shells = sum(isinstance(s, Terminal) for s in mine)
        if shells >= settings.TERMINALS_PER_USER:
            raise TooManySessions(f"You have {shells} terminals open, the most allowed: end one on your Sessions page ({_sessions_page()}).")
    if len(mine) >= settings.SESSIONS_PER_USER:
        raise TooManySessions(f"You have {len(mine)} terminals, SSH sessions and log views open, the most allowed: "
                              f"end one on your Sessions page ({_sessions_page()}).")
    terminals[session.id] = session


def let_go(session):
    terminals.pop(session.id, None)


async def open_terminal(*, user, server, session_key, client_ip, rows=24, cols=80, kind=TerminalSession.Kind.BROWSER,
                        key_id=None, command=None):
    terminal = Terminal(user=user, server=server, client_ip=client_ip, kind=kind, command=command)
    terminal.enter(user_id=user.pk, server_id=server.pk, session_key=session_key, key_id=key_id)
    try:
        await terminal.start(rows, cols)
    except docker.DockerError as error:
        let_go(terminal)
        for stream in (terminal.guard, terminal.writer):
            if stream is not None:
                stream.close()
        raise TerminalError(f"The terminal could not be opened: {error}") from None
    except BaseException:
        let_go(terminal)
        raise
    return terminal


def find(terminal_id, *, user):
    """The user's open terminal of that id, or None."""
    terminal = terminals.get(terminal_id)
    return terminal if terminal and not terminal.closed and terminal.user_id == user.pk else None


def find_by_row(row_id):
    return next((t for t in terminals.values() if t.row_id == row_id and not t.closed), None)


# The sweeper ------------------------------------------------------------------

async def sweep():
    """End every session that may no longer live (see the module's docstring)."""
    now = time.monotonic()
    reasons = await _reasons_to_end([s for s in terminals.values() if s.started])
    for session in list(terminals.values()):
        reason, by_admin = reasons.get(session.id, (None, False))
        if reason is None and session.idles and now - session.last_input > settings.TERMINAL_IDLE_SECONDS:
            reason = f"Closed after {settings.TERMINAL_IDLE_SECONDS // 60} minutes without typing."
        if reason is None and session.detaches and session.owner is None and now - session.detached_at > settings.TERMINAL_REATTACH_SECONDS:
            reason = Ended.ABANDONED
        if reason:
            await session.end(reason, by_admin=by_admin)


async def sweep_forever():
    while True:
        await asyncio.sleep(settings.TERMINAL_CHECK_SECONDS)
        try:
            await sweep()
        except Exception:  # a database hiccup must not stop the sweeping
            log.exception("terminal sweep failed")


@database_sync_to_async
def _reasons_to_end(open_sessions):
    """session id -> (why it must end, whether an admin asked), from one look at the database.

    Everything that let a session in is asked again: the account enabled, the
    browser's login still there, the SSH key still there, the server still
    there and running, and the user still its owner or an administrator."""
    if not open_sessions:
        return {}
    users = User.objects.in_bulk({s.user_id for s in open_sessions})
    servers = VirtualServer.objects.in_bulk({s.server_id for s in open_sessions})
    logins = set(UserSession.objects.filter(session_key__in=[s.session_key for s in open_sessions if s.session_key])
                 .values_list("session_key", flat=True))
    keys = set(SshKey.objects.filter(pk__in=[s.key_id for s in open_sessions if s.key_id]).values_list("pk", "user_id"))
    ended = dict(TerminalSession.objects.filter(pk__in=[s.row_id for s in open_sessions if s.row_id], end_requested_at__isnull=False)
                 .values_list("pk", "end_requested_by"))
    reasons = {}
    for session in open_sessions:
        user, server = users.get(session.user_id), servers.get(session.server_id)
        if user is None or not user.is_active:
            reasons[session.id] = (Ended.DISABLED, False)
        elif session.session_key and session.session_key not in logins:
            reasons[session.id] = (Ended.LOGGED_OUT, False)
        elif session.key_id and (session.key_id, session.user_id) not in keys:
            reasons[session.id] = (Ended.KEY_REMOVED, False)
        elif server is None or server.is_going:
            reasons[session.id] = (Ended.SERVER_DELETED, False)
        elif not server.is_visible_to(user):
            reasons[session.id] = (Ended.NO_ACCESS, False)
        elif server.observed_state != VirtualServer.ObservedState.RUNNING:
            reasons[session.id] = (Ended.SERVER_STOPPED, False)
        elif session.row_id in ended:
            by_user = ended[session.row_id] == session.user_id
            reasons[session.id] = (Ended.BY_USER, False) if by_user else (Ended.BY_ADMIN, True)
    return reasons


# The database's part --------------------------------------------------------------

@database_sync_to_async
def record_opened(terminal):
    row = TerminalSession.objects.create(user_id=terminal.user_id, server_id=terminal.server_id, kind=terminal.kind,
                                         what=terminal.description[:64], client_ip=terminal.client_ip)
    activity_log(action=Action.TERMINAL_OPENED, user=row.user, target=terminal.container, address=terminal.client_ip,
                 message=f"Opened {terminal.description} on “{terminal.server_name}”")
    return row.pk


@database_sync_to_async
def record_closed(terminal, reason, by_admin):
    if terminal.row_id is None:
        return
    row = TerminalSession.objects.select_related("user").get(pk=terminal.row_id)
    row.closed_at, row.close_reason = timezone.now(), reason[:255]
    row.bytes_in, row.bytes_out = terminal.bytes_in, terminal.bytes_out
    row.save(update_fields=["closed_at", "close_reason", "bytes_in", "bytes_out"])
    minutes = (row.closed_at - row.opened_at).total_seconds() / 60
    activity_log(action=Action.TERMINAL_ENDED if by_admin else Action.TERMINAL_CLOSED, user=row.user, target=terminal.container,
                 address=terminal.client_ip, message=f"Terminal on “{terminal.server_name}” closed after {minutes:.1f} min, "
                         f"{terminal.bytes_in} bytes in, {terminal.bytes_out} bytes out: {reason}")


@database_sync_to_async
def close_leftovers():
    """At start-up: the rows of terminals a previous gateway left open end (their guards ended the shells)."""
    return TerminalSession.objects.filter(closed_at__isnull=True).update(
        closed_at=timezone.now(), close_reason=Ended.GATEWAY_RESTARTED)
