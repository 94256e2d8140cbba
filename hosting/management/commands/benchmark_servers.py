"""Create N real virtual servers and report how long each took and what an idle one costs.

    export DATA_DIR=/tmp/bench SERVER_CONTAINER_PREFIX=bench-dind- PANEL_INSTANCE=benchmark
    .venv/bin/python manage.py migrate
    .venv/bin/python manage.py benchmark_servers --count 10

Uses the configured database and Docker engine; the servers it made are
deleted at the end unless --keep is given.
"""

import statistics
import time

from django.core.management.base import BaseCommand

from accounts.models import User
from hosting import docker, reconcile, services
from hosting.models import VirtualServer


class Command(BaseCommand):
    help = "Create N virtual servers; report seconds from request to running and memory per idle server."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=10)
        parser.add_argument("--idle-seconds", type=float, default=10, help="wait before measuring memory")
        parser.add_argument("--keep", action="store_true", help="leave the servers running")

    def handle(self, *args, count, idle_seconds, keep, **options):
        owner, _ = User.objects.get_or_create(email="benchmark@localhost", defaults={"server_quota": 100_000})
        owner.server_quota = 100_000
        owner.save(update_fields=["server_quota"])

        to_running, to_inner = [], []
        servers = []
        for n in range(count):
            started = time.perf_counter()
            server = services.server_create(owner=owner, name=f"bench {n}")
            reconcile.server_reconcile(server_id=server.pk)  # what the worker does
            server.refresh_from_db()
            if server.state != "running":
                self.stderr.write(f"{server.container_name}: {server.state} {server.last_error}")
                continue
            to_running.append(time.perf_counter() - started)
            docker.inner_wait(str(server.socket_dir))
            to_inner.append(time.perf_counter() - started)
            servers.append(server)
            self.stdout.write(f"  {server.container_name}: running after {to_running[-1]:.2f}s, inner daemon after {to_inner[-1]:.2f}s")

        time.sleep(idle_seconds)
        memory = [docker.container_memory_usage(s.container_name) / 2**20 for s in servers]

        self.stdout.write(f"\n{len(servers)} of {count} servers running")
        if servers:
            self.stdout.write(f"request → container running:     median {statistics.median(to_running):.2f}s, max {max(to_running):.2f}s")
            self.stdout.write(f"request → inner daemon answers:  median {statistics.median(to_inner):.2f}s, max {max(to_inner):.2f}s")
            self.stdout.write(f"memory per idle server:          median {statistics.median(memory):.1f} MiB, max {max(memory):.1f} MiB")
        if not keep:
            for server in VirtualServer.objects.live().filter(owner=owner):
                services.server_delete(actor=owner, server=server)
                reconcile.server_reconcile(server_id=server.pk)
            self.stdout.write("benchmark servers deleted")
