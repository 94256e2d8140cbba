"""The SSH gateway: `ssh -p 2222 server<id>@<panel host>` into a virtual server, keys only.

An asyncssh server in the gateway process. The login name names a server
(its hostname, `server42`), the key an account (an SshKey): the account must
be enabled and own the server, or be an admin; anyone else's server is
refused exactly like one that does not exist. A session is one of:

- a shell, with a pty: the browser terminal's own `controlpanel-shell`, as a
  Terminal (hosting.gateway.terminals) of kind ssh;
- a command (`ssh host 'docker ps'`): `controlpanel-shell -c`, its exit
  status returned;
- sftp, which scp uses too: the image's sftp-server, as the server's owner,
  so what is copied in belongs to the user the shell runs as; its writes,
  renames and removals are counted and logged once, when it ends;
- a direct TCP connection (`ssh -L 8080:localhost:80`): to a port of that
  server's own localhost, and nowhere else.

Passwords, remote forwarding and agent or X11 forwarding are refused.
Refused keys are counted per client (IPv6: its /64); past SSH_FAILURE_LIMIT
in THROTTLE_WINDOW its connections are closed before they try one. Logins
and failures go to the activity log with the key's fingerprint and the
address. Every session is a TerminalSession row, ended by the terminals'
sweeper like a browser's: a disabled user, a removed key or a deleted
server closes it within seconds.
"""

import asyncio
import logging
import struct
import time

import asyncssh
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from accounts import throttling
from accounts.models import SshKey
from accounts.services import activity_log, visitor_activity
from controlpanel.text import visible_controls

from ..activity import Action
from ..backends import docker
from ..models import TerminalSession, VirtualServer
from . import logs, terminals

log = logging.getLogger(__name__)
SSH = TerminalSession.Kind.SSH
LOCALHOST = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


# The host key ------------------------------------------------------------------------

def host_key():
    """The gateway's host key: made once (ed25519), kept in SSH_HOST_KEY, its public half beside it."""
    path = settings.SSH_HOST_KEY
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519", comment="controlpanel gateway")
        path.touch(mode=0o600)
        key.write_private_key(str(path))
        key.write_public_key(str(path.with_suffix(".pub")))
    return asyncssh.read_private_key(str(path))


# Logging in ----------------------------------------------------------------------------

@database_sync_to_async
def _authorize(login, fingerprint):
    """(key, server) if this key's account may use the server this login names, else None."""
    key = SshKey.objects.select_related("user").filter(fingerprint=fingerprint, user__is_active=True).first()
    if key is None or not login.startswith("server") or not login[6:].isdigit():
        return None
    server = VirtualServer.objects.for_user(key.user).select_related("node").filter(pk=int(login[6:])).first()
    return (key, server) if server else None


@database_sync_to_async
def _logged_in(key, server, address):
    SshKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    activity_log(action=Action.SSH_LOGIN, user=key.user, target=server.container_name, address=address,
                 message=f"SSH login to “{server.name}” with the key “{key.name}” ({key.fingerprint}) from {address}")


@database_sync_to_async
def _refused(login, fingerprint, client, address):
    throttling.hit("ssh", client, window=settings.THROTTLE_WINDOW)
    visitor_activity(action=Action.SSH_LOGIN_FAILED, address=address, typed=f"{login[:40]} {fingerprint}")


@database_sync_to_async
def _throttled(client):
    return throttling.count("ssh", client) >= settings.SSH_FAILURE_LIMIT


@database_sync_to_async
def _still_authorized(gateway):
    """Whether the connection's key, its account and its access to the server still hold:
    asked again for every channel, not only at login."""
    key = SshKey.objects.select_related("user").filter(pk=gateway.key.pk, user__is_active=True).first()
    return key is not None and VirtualServer.objects.for_user(key.user).filter(pk=gateway.server.pk).exists()


def _too_many_refused():
    return asyncssh.DisconnectError(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "Too many refused keys from your address: wait a few minutes.")


class GatewayServer(asyncssh.SSHServer, terminals.GatewaySession):
    """One SSH connection. Once logged in it is a session of its own for the terminals'
    sweeper (hosting.gateway.terminals): what ends the account's or the key's sessions closes
    the connection too, so a held connection (ControlMaster) cannot open new ones."""

    key = server = None

    def connection_made(self, conn):
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("",)
        self.address = peer[0]
        self.client = throttling.client_key(self.address) if self.address else "unknown"

    def connection_lost(self, exc):
        self.closed = True
        terminals.let_go(self)

    async def begin_auth(self, username):
        if await _throttled(self.client):
            raise _too_many_refused()
        return True

    def password_auth_supported(self):
        return False

    def kbdint_auth_supported(self):
        return False

    def public_key_auth_supported(self):
        return True

    async def validate_public_key(self, username, key):
        if await _throttled(self.client):  # every key tried counts, not only each connection
            raise _too_many_refused()
        fingerprint = key.get_fingerprint("sha256")
        found = await _authorize(username, fingerprint)
        if found is None:
            await _refused(username, fingerprint, self.client, self.address)
            return False
        self.key, self.server = found
        self.engine = docker.Engine.of(self.server.node)  # where its shells and commands run
        return True

    async def auth_completed(self):
        try:
            self.enter(user_id=self.key.user_id, server_id=self.server.pk, key_id=self.key.pk)
        except terminals.TerminalError as error:
            self.conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, str(error))
            return
        self.started = True
        await _logged_in(self.key, self.server, self.address)

    async def end(self, reason, *, by_admin=False):
        """The sweeper's word: the whole connection goes, with every channel on it."""
        if not self.closed:
            self.closed = True
            terminals.let_go(self)
            self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, reason)

    def session_requested(self):
        return _Process(handle_process, None, 0, False)

    def server_requested(self, listen_host, listen_port):
        return False  # no remote forwarding

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        if dest_host.lower() not in LOCALHOST | {self.server.hostname}:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                            "Only ports of this server's own localhost can be reached.")
        return lambda reader, writer: _forward(self, dest_port, reader, writer)


# Sessions ---------------------------------------------------------------------------------

class Session(terminals.GatewaySession):
    """A command, sftp or a forwarded connection: a session of the gateway's, ended with its channel."""

    idles = True

    def __init__(self, gateway, what):
        self.gateway, self.what = gateway, what
        self.user_email, self.server_name, self.container = gateway.key.user.email, gateway.server.name, gateway.server.container_name
        self.client_ip, self.kind = gateway.address, SSH
        self.bytes_in = self.bytes_out = 0
        self.on_end = None  # what ends its channel, when something else ends it

    @property
    def description(self):
        return f"an SSH {self.what} session"

    async def start(self):
        """Counted in (TerminalError past the user's limit), then recorded."""
        self.enter(user_id=self.gateway.key.user_id, server_id=self.gateway.server.pk, key_id=self.gateway.key.pk)
        try:
            self.row_id = await terminals.record_opened(self)
        except BaseException:
            terminals.let_go(self)
            raise
        self.started = True

    async def end(self, reason, *, by_admin=False):
        if self.closed:
            return
        self.closed = True
        terminals.let_go(self)
        if self.on_end and reason != terminals.Ended.FINISHED:
            self.on_end(reason)
        await terminals.record_closed(self, reason, by_admin)

    def traffic(self, size, *, inbound):
        self.last_input = time.monotonic()
        if inbound:
            self.bytes_in += size
        else:
            self.bytes_out += size


async def _relay(session, reader, writer, process_in, out, err=None):
    """Between an SSH channel and a non-TTY exec: the channel's input to the exec's stdin
    (its end is the exec's stdin's end), the exec's frames to the channel's output."""

    async def upstream():
        while data := await process_in.read(65536):
            session.traffic(len(data), inbound=True)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    sending = asyncio.create_task(upstream())
    try:
        async for stream, data in logs.frames(reader, tty=False):
            session.traffic(len(data), inbound=False)
            target = err if stream == "err" and err is not None else out
            if target is not None:
                target.write(data)
                await target.drain()
    finally:
        sending.cancel()
        writer.close()


async def _exec(gateway, command, process):
    exec_id = await asyncio.to_thread(docker.exec_create, gateway.engine, gateway.server.container_name, command, tty=False)
    reader, writer = await docker.exec_stream(gateway.engine, exec_id, tty=False)
    return exec_id, reader, writer


async def _command(gateway, process):
    session = Session(gateway, "command")
    await session.start()
    session.on_end = lambda reason: process.close()
    try:
        exec_id, reader, writer = await _exec(gateway, ["controlpanel-shell", "-c", process.command], process)
        await _relay(session, reader, writer, process.stdin, process.stdout, process.stderr)
        _, code = await asyncio.to_thread(docker.exec_inspect, gateway.engine, exec_id)
        process.exit(code if isinstance(code, int) else 1)
    finally:
        await session.end(terminals.Ended.FINISHED)


SFTP_CHANGES = {3: "wrote", 9: "changed", 13: "removed", 14: "made folder", 15: "removed folder", 18: "renamed", 20: "linked"}
SFTP_EXTENDED_CHANGES = {"posix-rename@openssh.com": "renamed", "hardlink@openssh.com": "linked"}
SSH_FXP_OPEN, SSH_FXP_EXTENDED, SSH_FXF_WRITE = 3, 200, 0x02


class SftpCounter:
    """Reads the client's side of an sftp session (never changing it) to count what it changes."""

    def __init__(self):
        self.buffer, self.skip = bytearray(), 0
        self.counts, self.paths = {}, []

    def feed(self, data):
        if self.skip:
            used = min(self.skip, len(data))
            self.skip -= used
            data = data[used:]
        self.buffer += data
        while len(self.buffer) >= 9:
            length, kind = struct.unpack(">IB", self.buffer[:5])
            head = min(length + 4, 4096 + 9)  # enough for the paths; big WRITE packets are skipped over
            if len(self.buffer) < head:
                return
            self._count(kind, bytes(self.buffer[9:head]))  # after length, type and request id
            packet = length + 4
            if packet <= len(self.buffer):
                del self.buffer[:packet]
            else:
                self.skip = packet - len(self.buffer)
                self.buffer.clear()

    def _count(self, kind, body):
        path, rest = _sftp_string(body)
        if kind == SSH_FXP_EXTENDED:
            change = SFTP_EXTENDED_CHANGES.get(path)
            path, _ = _sftp_string(rest)
        elif kind == SSH_FXP_OPEN:
            change = "wrote" if len(rest) >= 4 and struct.unpack(">I", rest[:4])[0] & SSH_FXF_WRITE else None
        else:
            change = SFTP_CHANGES.get(kind)
        if change is None:
            return
        self.counts[change] = self.counts.get(change, 0) + 1
        if len(self.paths) < 10:
            self.paths.append(visible_controls(path[:120]))

    def summary(self):
        if not self.counts:
            return "nothing changed"
        done = ", ".join(f"{name} {count}" for name, count in self.counts.items())
        return f"{done} ({', '.join(self.paths)}{', …' if sum(self.counts.values()) > len(self.paths) else ''})"


def _sftp_string(body):
    """An sftp string field and what follows it."""
    if len(body) < 4:
        return "", b""
    end = 4 + struct.unpack(">I", body[:4])[0]
    return body[4:min(end, 4 + 4096)].decode("utf-8", "replace"), body[end:]


class _CountingReader:
    def __init__(self, reader, counter):
        self.reader, self.counter = reader, counter

    async def read(self, size):
        data = await self.reader.read(size)
        self.counter.feed(data)
        return data


async def _sftp(gateway, process):
    session = Session(gateway, "sftp")
    await session.start()
    session.on_end = lambda reason: process.close()
    counter = SftpCounter()
    try:
        _, reader, writer = await _exec(gateway, ["controlpanel-shell", "-c", f"exec {SFTP_SERVER}"], process)
        # sftp-server's stderr goes to the client's stderr, never into the sftp stream itself.
        await _relay(session, reader, writer, _CountingReader(process.stdin, counter), process.stdout, process.stderr)
        process.exit(0)
    finally:
        await session.end(terminals.Ended.FINISHED)
        await _log_sftp(gateway, counter)


@database_sync_to_async
def _log_sftp(gateway, counter):
    activity_log(action=Action.SSH_SESSION, user=gateway.key.user, target=gateway.server.container_name, address=gateway.address,
                 message=f"SFTP session on “{gateway.server.name}”: {counter.summary()}")


class _SshOwner:
    """A Terminal's reader on an SSH channel with a pty."""

    def __init__(self, terminal, process):
        self.terminal, self.process = terminal, process

    async def send_output(self, data):
        self.process.stdout.write(data)
        await self.process.stdout.drain()

    async def send_status(self, status):
        pass  # an SSH client has no place for it

    async def close_with(self, reason):
        if self.process.is_closing():
            return
        if reason != terminals.Ended.SHELL_ENDED:
            self.process.stdout.write(f"\r\n[{reason}]\r\n".encode())
        _, code = await asyncio.to_thread(docker.exec_inspect, self.terminal.engine, self.terminal.exec_id)
        self.process.exit(code if isinstance(code, int) else 0)


async def _shell(gateway, process, command=None):
    """A shell (or, for `ssh -t host cmd`, a command) with a pty: a Terminal whose reader is the channel."""
    cols, rows, _, _ = process.get_terminal_size()
    try:
        terminal = await terminals.open_terminal(user=gateway.key.user, server=gateway.server, session_key=None, client_ip=gateway.address,
                                                 rows=rows or 24, cols=cols or 80, kind=SSH, key_id=gateway.key.pk, command=command)
    except terminals.TerminalError as error:
        process.stderr.write(f"{error}\r\n".encode())
        process.exit(1)
        return
    await terminal.attach(_SshOwner(terminal, process))
    try:
        while not terminal.closed:
            try:
                data = await process.stdin.read(65536)
            except asyncssh.TerminalSizeChanged as change:
                await terminal.resize(change.height, change.width)
                continue
            if not data:  # the client's input ended (`ssh -tt host < script`): the shell runs on until it exits
                closed = asyncio.ensure_future(process.wait_closed())
                await asyncio.wait([terminal.pump, closed], return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                break
            await terminal.write(data)
    except (asyncssh.BreakReceived, asyncssh.SignalReceived):
        pass
    finally:
        await terminal.end(terminals.Ended.SSH_CLOSED)


class _Process(asyncssh.SSHServerProcess):
    """asyncssh serves sftp with its own server or not at all; here it is the image's
    sftp-server inside the virtual server, so an sftp subsystem is a process like a command.

    asyncssh has no public way to do this: the constructor's arguments and _start_process
    are its own (pyproject pins the minor version the tests ran; test_ssh's sftp tests
    fail at once if they change)."""

    def subsystem_requested(self, subsystem):
        return subsystem == "sftp"

    def session_started(self):
        if self.channel.get_subsystem() != "sftp":
            return super().session_started()
        stdin = asyncssh.SSHReader(self, self.channel)
        stdout = asyncssh.SSHWriter(self, self.channel)
        stderr = asyncssh.SSHWriter(self, self.channel, asyncssh.EXTENDED_DATA_STDERR)
        self.channel.get_connection().create_task(self._start_process(stdin, stdout, stderr), stdin.logger)


async def handle_process(process):
    gateway = process.get_extra_info("connection").get_owner()
    try:
        if not await _still_authorized(gateway):
            process.stderr.write(b"This key may no longer use this server.\r\n")
            process.exit(1)
        elif process.subsystem == "sftp":
            await _sftp(gateway, process)
        elif process.subsystem:
            process.stderr.write(f"No subsystem {process.subsystem!r} here.\r\n".encode())
            process.exit(1)
        elif process.command is not None and process.get_terminal_type() is None:
            await _command(gateway, process)
        else:
            await _shell(gateway, process, ["controlpanel-shell", "-c", process.command] if process.command is not None else None)
    except (docker.DockerError, terminals.TerminalError) as error:
        process.stderr.write(f"{error}\r\n".encode())
        process.exit(1)


async def _forward(gateway, port, reader, writer):
    """A direct TCP connection to a port of the server's localhost: socat inside the server."""
    session = Session(gateway, f"port {port}")
    try:
        if not await _still_authorized(gateway):
            raise terminals.TerminalError("This key may no longer use this server.")
        await session.start()
    except terminals.TerminalError as error:
        log.info("forward to port %s of %s refused: %s", port, gateway.server.container_name, error)
        writer.close()
        return
    session.on_end = lambda reason: writer.close()
    try:
        _, exec_reader, exec_writer = await _exec(gateway, ["socat", "-", f"TCP:127.0.0.1:{int(port)}"], None)
        await _relay(session, exec_reader, exec_writer, reader, writer)
    except docker.DockerError as error:
        log.info("forward to port %s of %s failed: %s", port, gateway.server.container_name, error)
    finally:
        writer.close()
        await session.end(terminals.Ended.FINISHED)


async def serve(host, port):
    return await asyncssh.create_server(
        GatewayServer, host, port, server_host_keys=[host_key()], encoding=None,
        line_editor=False, agent_forwarding=False, x11_forwarding=False, allow_scp=False, login_timeout=30, keepalive_interval=30,
        server_version="controlpanel")
