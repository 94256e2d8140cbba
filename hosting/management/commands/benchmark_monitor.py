"""Time one full monitor cycle over N real virtual servers with K containers each.

    export DATA_DIR=/tmp/bench SERVER_CONTAINER_PREFIX=bench-dind- PANEL_INSTANCE=benchmark \
           SERVER_NETWORK=bench-servers SERVER_NETWORK_SUBNET=10.216.0.0/16
    .venv/bin/python manage.py migrate
    .venv/bin/python manage.py benchmark_monitor --servers 20 --containers 3

Reports the cycle's wall time, time per daemon, database queries per cycle
(first and unchanged), and the ratio of the cycle's wall time to the sum of
the raw `GET /containers/json?all=1` times of the same daemons read one by one.
The servers are deleted at the end unless --keep is given.
"""

import statistics
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from hosting import docker, monitor, reconcile, services

TEST_APP_IMAGE = "controlpanel/testapp:local"


class Command(BaseCommand):
    help = "Create N servers with K containers each and time one monitor cycle."

    def add_arguments(self, parser):
        parser.add_argument("--servers", type=int, default=20)
        parser.add_argument("--containers", type=int, default=3)
        parser.add_argument("--cycles", type=int, default=5, help="unchanged cycles to time after the first")
        parser.add_argument("--keep", action="store_true")

    def handle(self, *args, servers, containers, cycles, keep, **options):
        owner, _ = User.objects.get_or_create(email="benchmark@localhost")
        owner.server_quota = 100_000
        owner.save(update_fields=["server_quota"])
        made = []
        try:
            self._servers(made, owner, servers, containers)
            self._measure(made, cycles)
        finally:
            if not keep:
                for server in made:
                    services.server_delete(actor=owner, server=server)
                    reconcile.server_reconcile(server_id=server.pk)
                self.stdout.write("benchmark servers deleted")

    def _servers(self, made, owner, count, containers):
        self.stdout.write(f"creating {count} servers with {containers} containers each ...")
        for n in range(count):
            server = services.server_create(owner=owner, name=f"monitor bench {n}")
            reconcile.server_reconcile(server_id=server.pk)
            server.refresh_from_db()
            made.append(server)
            socket_dir = str(server.socket_dir)
            docker.inner_wait(socket_dir)
            docker.image_copy_to_inner(TEST_APP_IMAGE, socket_dir)
            for k in range(containers):
                docker.inner_container_run(socket_dir, TEST_APP_IMAGE, ["sleep", "3600"], name=f"app{k}")

    def _measure(self, servers, cycles):
        with CaptureQueriesContext(connection) as first_queries:
            first = monitor.run_cycle()
        walls, queries = [], []
        for _ in range(cycles):
            with CaptureQueriesContext(connection) as context:
                started = time.perf_counter()
                run = monitor.run_cycle()
                walls.append(time.perf_counter() - started)
            queries.append(len(context.captured_queries))
        writes = sum(1 for q in context.captured_queries if q["sql"].split()[0].upper() in ("INSERT", "UPDATE", "DELETE"))

        raw = [self._raw_seconds(lambda: docker.host_containers_json(timeout=5))]
        raw += [self._raw_seconds(lambda s=s: docker.inner_containers_json(
            str(s.socket_dir), timeout=5, max_bytes=settings.MONITOR_MAX_BODY_BYTES)) for s in servers]

        daemons = run.daemons_polled
        wall = statistics.median(walls)
        self.stdout.write(f"\ndaemons per cycle:                 {daemons} ({run.daemons_failed} failed), containers seen {run.containers_seen}")
        self.stdout.write(f"first cycle:                       {first.duration_ms} ms, {len(first_queries.captured_queries)} queries, {first.rows_written} rows written")
        self.stdout.write(f"unchanged cycle wall time:         median {wall * 1000:.0f} ms, max {max(walls) * 1000:.0f} ms over {cycles}")
        self.stdout.write(f"time per daemon (in the cycle):    mean {run.total_read_ms / daemons:.1f} ms, slowest {run.slowest_read_ms} ms")
        self.stdout.write(f"queries per unchanged cycle:       {statistics.median(queries):.0f} ({writes} writes) = {statistics.median(queries) / daemons:.2f} per daemon")
        self.stdout.write(f"raw containers/json, one by one:   sum {sum(raw) * 1000:.0f} ms, median {statistics.median(raw) * 1000:.2f} ms")
        self.stdout.write(f"cycle wall / sum of raw calls:     {wall / sum(raw):.2f}")

    def _raw_seconds(self, read):
        read()  # warm the client
        started = time.perf_counter()
        read()
        return time.perf_counter() - started
