"""A container's log inside a server, as the gateway streams it to the page.

The server's daemon says what its containers printed (`GET
/containers/<id>/logs?follow=1&timestamps=1` on its socket, or `docker logs`
in the server for one on another node): stdout and stderr in Docker's frames
(a TTY container through its socket: one plain stream). Everything in it is the
tenant's: lines are cut to LINE_LIMIT characters, and at most
LINES_PER_SECOND go to the browser; the rest is counted, not kept, so a
container printing ten thousand lines a second neither fills memory here
nor freezes the page.
"""

import asyncio
import secrets
import struct
import time

from controlpanel.text import visible_controls

from ..backends import docker

LINE_LIMIT = 4096
LINES_PER_SECOND = 2000
BATCH_SECONDS = 0.1
STREAMS = {1: "out", 2: "err"}


class LineSplitter:
    """Bytes of one stream to whole lines (a line too long is cut, the rest of it dropped)."""

    def __init__(self):
        self.pending = bytearray()
        self.cutting = False

    def feed(self, data):
        lines = []
        for piece in data.splitlines(keepends=True):
            if self.cutting:
                if piece.endswith((b"\n", b"\r")):
                    self.cutting = False
                continue
            self.pending += piece
            if piece.endswith((b"\n", b"\r")):
                lines.append(bytes(self.pending).rstrip(b"\r\n"))
                self.pending.clear()
            elif len(self.pending) > LINE_LIMIT * 4:
                lines.append(bytes(self.pending))
                self.pending.clear()
                self.cutting = True
        return lines


def parse_line(raw):
    """A log line with Docker's timestamp in front: (timestamp, text)."""
    text = raw.decode("utf-8", "replace")
    stamp, space, rest = text.partition(" ")
    if space and len(stamp) >= 20 and stamp[4] == "-" and stamp[10] == "T":
        return stamp[:19].replace("T", " "), visible_controls(rest[:LINE_LIMIT])
    return "", visible_controls(text[:LINE_LIMIT])


async def frames(reader, tty):
    """(stream name, bytes) pieces of a log body: Docker's 8-byte frame headers, or one plain stream."""
    if tty:
        while data := await reader.read(65536):
            yield "out", data
        return
    while True:
        try:
            header = await reader.readexactly(8)
        except asyncio.IncompleteReadError:
            return
        stream, size = header[0], struct.unpack(">I", header[4:])[0]
        remaining = size
        while remaining:  # a frame's payload, in pieces, never all at once (it may be huge)
            data = await reader.read(min(remaining, 65536))
            if not data:
                return
            remaining -= len(data)
            yield STREAMS.get(stream, "out"), data


async def _from_socket(server, docker_id, tail):
    """A server on this process's node: its daemon's own socket, which answers in Docker's log body."""
    socket_dir = str(server.socket_dir)
    tty = await asyncio.to_thread(docker.inner_container_tty, socket_dir, docker_id)
    status, reader, writer = await docker.inner_stream(
        socket_dir, f"/containers/{docker_id}/logs?follow=1&stdout=1&stderr=1&timestamps=1&tail={int(tail)}")
    if status != 200:
        writer.close()
        raise docker.DockerError("The server's daemon has no log for that container.")
    return tty, reader, writer, _nothing


async def _nothing():
    pass


async def _through_engine(server, docker_id, tail):
    """A server on another node (its daemon's socket is on that machine): `docker logs` run in it
    as its owner, over the node's engine; its stdout and stderr come in the exec's frames. Its
    name carries a token, for the gateway to end it when the page goes."""
    engine, container, token = docker.Engine.of(server.node), server.container_name, secrets.token_hex(8)
    command = f"exec -a controlpanel-logs-{token} docker logs --follow --timestamps --tail {int(tail)} {docker_id}"
    exec_id = await asyncio.to_thread(docker.exec_create, engine, container, ["controlpanel-shell", "-c", command], tty=False)
    reader, writer = await docker.exec_stream(engine, exec_id, tty=False)

    async def stop():
        try:
            await asyncio.to_thread(docker.container_exec, engine, container,
                                    # [c]: a pattern that does not match this command's own shell
                                    ["controlpanel-shell", "-c", f"pkill -f '[c]ontrolpanel-logs-{token}'"], timeout=15)
        except docker.DockerError:
            pass  # the server stopped: so did the log

    return False, reader, writer, stop


async def follow(server, docker_id, *, tail, send):
    """Stream a container's log to `send(batch)` until it ends or the caller stops listening.

    A batch is {"lines": [[stream, time, text], ...], "skipped": n}, sent every
    BATCH_SECONDS while there is something to say. `send` may wait (a slow
    browser): lines go on being read meanwhile, but no more than
    LINES_PER_SECOND are ever waiting; the rest are counted as skipped."""
    if not docker.CONTAINER_ID.fullmatch(docker_id or ""):
        raise docker.DockerError("That is not a container id.")
    tty, reader, writer, stop = await (_from_socket if server.node.is_here else _through_engine)(server, docker_id, tail)
    waiting = {"lines": [], "skipped": 0, "ended": False}

    async def read():
        splitters = {"out": LineSplitter(), "err": LineSplitter()}
        second, this_second = time.monotonic(), 0
        async for stream, data in frames(reader, tty):
            if time.monotonic() - second >= 1:
                second, this_second = time.monotonic(), 0
            for raw in splitters[stream].feed(data):
                if this_second < LINES_PER_SECOND and len(waiting["lines"]) < LINES_PER_SECOND:
                    waiting["lines"].append([stream, *parse_line(raw)])
                    this_second += 1
                else:
                    waiting["skipped"] += 1
        waiting["ended"] = True

    reading = asyncio.create_task(read())
    try:
        while True:
            await asyncio.sleep(BATCH_SECONDS)
            ended = waiting["ended"] or reading.done()
            if waiting["lines"] or waiting["skipped"]:
                batch = {"lines": waiting["lines"], "skipped": waiting["skipped"]}
                waiting["lines"], waiting["skipped"] = [], 0
                await send(batch)
            if ended:
                return
    finally:
        reading.cancel()
        writer.close()
        await stop()
