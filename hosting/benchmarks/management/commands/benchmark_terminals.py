"""Terminals through the gateway, measured.

    export DATA_DIR=/tmp/bench SERVER_CONTAINER_PREFIX=bench-dind- PANEL_INSTANCE=benchmark \
           SERVER_NETWORK=bench-servers SERVER_NETWORK_SUBNET=10.216.0.0/16
    .venv/bin/python manage.py migrate
    .venv/bin/python manage.py benchmark_terminals --terminals 50

Starts a real virtual server and a gateway process (manage.py gateway, on a
free loopback port), then reports: the keystroke echo round trip through
the gateway beside a `docker exec` TTY straight to the engine (median, p99);
the gateway's memory and CPU with N terminals open and each typing; and the
throughput of 50 MB of output. The server is deleted at the end.
"""

import asyncio
import json
import os
import statistics
import time

from django.core.management.base import BaseCommand
from django.test import Client
from websockets.sync.client import connect

from hosting.backends import docker

from hosting.benchmarks.setup import benchmark_owner, delete_server, free_port, percentile, rss_kib, running_server, start, stop


def _cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Command(BaseCommand):
    help = "Measure terminals through the gateway: echo latency, memory per terminal, throughput."

    def add_arguments(self, parser):
        parser.add_argument("--terminals", type=int, default=50)
        parser.add_argument("--echoes", type=int, default=300)
        parser.add_argument("--megabytes", type=int, default=50)

    def handle(self, *args, terminals, echoes, megabytes, **options):
        owner = benchmark_owner()
        server = running_server(owner, "terminal bench")
        client = Client()
        client.force_login(owner)
        self.cookie = client.cookies["sessionid"].value
        port = free_port()
        gateway = start("gateway", port, TERMINALS_PER_USER=terminals + 5)
        self.url = f"ws://127.0.0.1:{port}/ws/servers/{server.pk}/terminal/"
        try:
            self.echo(server, echoes)
            self.many(gateway.pid, terminals)
            self.throughput(megabytes)
        finally:
            stop(gateway)
            delete_server(owner, server)

    def _open(self):
        ws = connect(self.url, additional_headers={"Cookie": f"sessionid={self.cookie}", "Origin": "http://127.0.0.1"},
                     max_size=None, ping_interval=None).__enter__()
        json.loads(ws.recv(timeout=30))  # hello
        self._until(ws, b"# ")
        return ws

    @staticmethod
    def _until(ws, marker, timeout=30):
        seen, deadline = b"", time.monotonic() + timeout
        while marker not in seen:
            message = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            seen += message if isinstance(message, bytes) else b""
        return seen

    def echo(self, server, count):
        ws = self._open()
        ws.send(b"stty -echoctl; cat >/dev/null\r")  # the terminal echoes each key; cat swallows the line
        time.sleep(0.5)
        while True:  # drain the prompt's echo
            try:
                ws.recv(timeout=0.3)
            except TimeoutError:
                break
        through_gateway = []
        for _ in range(count):
            started = time.perf_counter()
            ws.send(b"x")
            self._until(ws, b"x")
            through_gateway.append(time.perf_counter() - started)
        ws.send(b"\x03")
        ws.close()

        direct = asyncio.run(self._direct_echo(docker.Engine.of(server.node), server, count))
        ms = lambda values, share: percentile(values, share) * 1000  # noqa: E731
        self.stdout.write(f"keystroke echo, through the gateway:   median {statistics.median(through_gateway) * 1000:.2f} ms, p99 {ms(through_gateway, 0.99):.2f} ms ({count} keys)")
        self.stdout.write(f"keystroke echo, docker exec directly:  median {statistics.median(direct) * 1000:.2f} ms, p99 {ms(direct, 0.99):.2f} ms")

    async def _direct_echo(self, engine, server, count):
        exec_id = docker.exec_create(engine, server.container_name, ["sh", "-c", "stty -echoctl; cat >/dev/null"], tty=True)
        reader, writer = await docker.exec_stream(engine, exec_id, tty=True)
        await asyncio.sleep(0.5)
        times = []
        for _ in range(count):
            started = time.perf_counter()
            writer.write(b"x")
            await writer.drain()
            while b"x" not in await reader.read(4096):
                pass
            times.append(time.perf_counter() - started)
        writer.write(b"\x03")
        writer.close()
        return times

    def many(self, pid, count):
        idle = rss_kib(pid)
        sockets = [self._open() for _ in range(count)]
        opened = rss_kib(pid)
        cpu_before, started = _cpu_seconds(pid), time.monotonic()
        for round_ in range(10):
            for ws in sockets:
                ws.send(f"echo r{round_}\r".encode())
            for ws in sockets:
                self._until(ws, f"\rr{round_}\r\n".encode())
        cpu = (_cpu_seconds(pid) - cpu_before) / (time.monotonic() - started)
        busy = rss_kib(pid)
        for ws in sockets:
            ws.close()
        self.stdout.write(f"{count} terminals open: gateway memory {idle / 1024:.1f} → {opened / 1024:.1f} MiB "
                          f"({(opened - idle) / count:.0f} KiB per terminal); after all typed 10 lines each {busy / 1024:.1f} MiB, "
                          f"gateway CPU {cpu * 100:.0f} % of one core while they typed")

    def throughput(self, megabytes):
        ws = self._open()
        size = megabytes * 1_000_000
        ws.send(f"head -c {size} /dev/zero | tr '\\0' 'x' | fold -w 200; echo; echo END-$((1+1))\r".encode())
        started, received = time.perf_counter(), 0
        tail = b""
        while b"END-2" not in tail:
            message = ws.recv(timeout=60)
            if isinstance(message, bytes):
                received += len(message)
                tail = (tail + message)[-64:]
        seconds = time.perf_counter() - started
        ws.close()
        self.stdout.write(f"{megabytes} MB of output: {seconds:.1f} s, {received / seconds / 1e6:.1f} MB/s through the gateway")
