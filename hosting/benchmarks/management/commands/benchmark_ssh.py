"""SSH into a server through the gateway, measured with Debian's OpenSSH client.

    export DATA_DIR=/tmp/bench SERVER_CONTAINER_PREFIX=bench-dind- PANEL_INSTANCE=benchmark \
           SERVER_NETWORK=bench-servers SERVER_NETWORK_SUBNET=10.216.0.0/16
    .venv/bin/python manage.py migrate
    .venv/bin/python manage.py benchmark_ssh --sessions 50 --megabytes 100

Starts a real virtual server and a gateway process with SSH on a free
loopback port, then reports: a one-shot `ssh server 'true'` (connect, key
exchange, log in, run, exit) beside `docker exec <server> controlpanel-shell
-c true`, which is what the gateway runs (median, p99); the gateway's memory
with N sessions open at once; and scp throughput of a random file in and out.
The server is deleted at the end.
"""

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts import services as account_services

from hosting.benchmarks.setup import benchmark_owner, delete_server, free_port, percentile, rss_kib, running_server, start, stop


class Command(BaseCommand):
    help = "Measure SSH through the gateway: one-shot command latency, memory per session, scp throughput."

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=30)
        parser.add_argument("--sessions", type=int, default=50)
        parser.add_argument("--megabytes", type=int, default=100)

    def handle(self, *args, runs, sessions, megabytes, **options):
        owner = benchmark_owner()
        server = running_server(owner, "ssh bench")
        folder = Path(tempfile.mkdtemp(prefix="benchmark-ssh-"))
        key = folder / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        owner.ssh_keys.all().delete()
        account_services.ssh_key_add(user=owner, name="benchmark", public_key=key.with_suffix(".pub").read_text())
        port, ssh_port = free_port(), free_port()
        gateway = start("gateway", port, ssh_port=ssh_port, TERMINALS_PER_USER=sessions + 5)
        self.server, self.folder = server, folder
        self.options = ["-p", str(ssh_port), "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                        "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={folder / 'known_hosts'}",
                        "-o", "LogLevel=ERROR"]
        self.target = f"{server.hostname}@127.0.0.1"
        try:
            self.latency(runs)
            self.many(gateway.pid, sessions)
            self.copy(megabytes)
        finally:
            stop(gateway)
            delete_server(owner, server)
            subprocess.run(["rm", "-rf", str(folder)])

    def _ssh(self, *command, **kwargs):
        return subprocess.run(["ssh", *self.options, self.target, *command], capture_output=True, timeout=120, **kwargs)

    @staticmethod
    def _timed(run, count):
        times = []
        for _ in range(count):
            started = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - started)
            if result.returncode != 0:
                raise CommandError(f"failed: {result.stderr.decode(errors='replace')}")
        return times

    def latency(self, runs):
        self._ssh("true")  # accept the host key once
        through_ssh = self._timed(lambda: self._ssh("true"), runs)
        direct = self._timed(lambda: subprocess.run(["docker", "exec", self.server.container_name, "controlpanel-shell", "-c", "true"],
                                                    capture_output=True, timeout=60), runs)
        for label, times in (("ssh server 'true', through the gateway:", through_ssh),
                             ("docker exec controlpanel-shell -c true:", direct)):
            self.stdout.write(f"{label:42} median {statistics.median(times) * 1000:.0f} ms, "
                              f"p99 {percentile(times, 0.99) * 1000:.0f} ms ({runs} runs)")

    def many(self, pid, count):
        idle = rss_kib(pid)
        clients = [subprocess.Popen(["ssh", *self.options, self.target, "echo open; exec sleep 600"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for _ in range(count)]
        try:
            for client in clients:
                if client.stdout.readline() != b"open\n":
                    raise CommandError("an ssh session did not open")
            opened = rss_kib(pid)
        finally:
            for client in clients:
                client.terminate()
                client.wait()
        self.stdout.write(f"{count} ssh sessions open: gateway memory {idle / 1024:.1f} → {opened / 1024:.1f} MiB "
                          f"({(opened - idle) / count:.0f} KiB per session)")

    def copy(self, megabytes):
        local = self.folder / "random.bin"
        with open(local, "wb") as file:
            for _ in range(megabytes):
                file.write(os.urandom(1_000_000))
        scp = ["scp", "-P", *self.options[1:]]
        into = self._timed(lambda: subprocess.run([*scp, str(local), f"{self.target}:random.bin"], capture_output=True), 1)[0]
        back = self._timed(lambda: subprocess.run([*scp, f"{self.target}:random.bin", str(self.folder / "back.bin")],
                                                  capture_output=True), 1)[0]
        same = (self.folder / "back.bin").read_bytes() == local.read_bytes()
        self._ssh("rm -f random.bin")
        self.stdout.write(f"scp {megabytes} MB in: {into:.1f} s ({megabytes / into:.1f} MB/s); "
                          f"out: {back:.1f} s ({megabytes / back:.1f} MB/s); identical after the round trip: {same}")
