"""Time one full monitor cycle over N real virtual servers with K containers each.

    export DATA_DIR=/tmp/bench SERVER_CONTAINER_PREFIX=bench-dind- PANEL_INSTANCE=benchmark \
           SERVER_NETWORK=bench-servers SERVER_NETWORK_SUBNET=10.216.0.0/16
    .venv/bin/python manage.py migrate
    .venv/bin/python manage.py benchmark_monitor --servers 20 --containers 3

Reports the cycle's wall time, time per daemon, database queries per cycle
(first and unchanged), and the ratio of the cycle's wall time to the sum of
the raw `GET /containers/json?all=1` times of the same daemons read one by one.
The servers are deleted at the end unless --keep is given.

    DATABASE_URL=postgres:///controlpanel_bench .venv/bin/python manage.py benchmark_monitor --synthetic 1000,5000

    .venv/bin/python manage.py benchmark_monitor --nodes 3 --containers 50   # as root

Several nodes: that many extra nodes (hosting/benchmarks/nodes.py: engines in
network namespaces, reached over mutual TLS), the cycle's reads of all their
engines at once against the same reads one by one.

No Docker: for each count, that many server rows with --containers (default
20 here) synthetic containers each, through the monitor's own parse and write
functions: parse (the reader threads' work, summed), the first pass, an
unchanged pass, 10 % of the rows changed (spread over every daemon) and 10 %
of the daemons changed; for each, the time, queries, and the rows PostgreSQL
saw inserted, updated and deleted and the dead tuples left
(pg_stat_user_tables). The synthetic rows are deleted at the end.
"""

import statistics
import tempfile
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from hosting.benchmarks import inside
from hosting.benchmarks.inside import TEST_APP_IMAGE
from hosting.benchmarks.nodes import ExtraNode
from hosting.backends import certificates, docker
from hosting.worker import monitor, reconcile
from hosting import services
from hosting.models import ContainerSnapshot, Node, VirtualServer

TABLES = ("hosting_containersnapshot", "hosting_virtualserver")



class Command(BaseCommand):
    help = "Create N servers with K containers each and time one monitor cycle."

    def add_arguments(self, parser):
        parser.add_argument("--servers", type=int, default=20)
        parser.add_argument("--containers", type=int, help="per server (default 3; 20 with --synthetic)")
        parser.add_argument("--cycles", type=int, default=5, help="unchanged cycles to time after the first")
        parser.add_argument("--keep", action="store_true")
        parser.add_argument("--synthetic", help="daemon counts, e.g. 1000,5000: time the write pass on synthetic answers")
        parser.add_argument("--nodes", type=int, help="time the reads of this many real extra nodes' engines (root: network namespaces)")

    def handle(self, *args, servers, containers, cycles, keep, synthetic, nodes, **options):
        if nodes:
            return self._nodes(nodes, 3 if containers is None else containers, cycles)
        if synthetic:
            if connection.vendor != "postgresql":
                raise CommandError("--synthetic measures PostgreSQL: set DATABASE_URL=postgres:///...")
            for count in map(int, synthetic.split(",")):
                self._synthetic(count, containers or 20)
            return
        containers = 3 if containers is None else containers
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
            inside.inner_wait(socket_dir)
            inside.image_copy_to_inner(TEST_APP_IMAGE, socket_dir)
            for k in range(containers):
                inside.inner_container_run(socket_dir, TEST_APP_IMAGE, ["sleep", "3600"], name=f"app{k}")

    def _measure(self, servers, cycles):
        with CaptureQueriesContext(connection) as first_queries:
            first = monitor.run_cycle()
        walls, queries, db = [], [], []
        for _ in range(cycles):
            with CaptureQueriesContext(connection) as context:
                started = time.perf_counter()
                run = monitor.run_cycle()
                walls.append(time.perf_counter() - started)
            queries.append(len(context.captured_queries))
            db.append(run.db_ms)
        writes = sum(1 for q in context.captured_queries if q["sql"].split()[0].upper() in ("INSERT", "UPDATE", "DELETE"))

        raw = [self._raw_seconds(lambda: docker.host_containers_json(docker.Engine.of(Node.local()), timeout=5))]
        raw += [self._raw_seconds(lambda s=s: docker.inner_containers_json(
            str(s.socket_dir), timeout=5, max_bytes=settings.MONITOR_MAX_BODY_BYTES)) for s in servers]

        daemons = run.daemons_polled
        wall = statistics.median(walls)
        self.stdout.write(f"\ndaemons per cycle:                 {daemons} ({run.daemons_failed} failed), containers seen {run.containers_seen}")
        self.stdout.write(f"first cycle:                       {first.duration_ms} ms, {len(first_queries.captured_queries)} queries, {first.rows_written} rows written")
        self.stdout.write(f"unchanged cycle wall time:         median {wall * 1000:.0f} ms, max {max(walls) * 1000:.0f} ms over {cycles}")
        self.stdout.write(f"database time per unchanged cycle: median {statistics.median(db):.0f} ms")
        self.stdout.write(f"time per daemon (in the cycle):    mean {run.total_read_ms / daemons:.1f} ms, slowest {run.slowest_read_ms} ms")
        self.stdout.write(f"queries per unchanged cycle:       {statistics.median(queries):.0f} ({writes} writes) = {statistics.median(queries) / daemons:.2f} per daemon")
        self.stdout.write(f"raw containers/json, one by one:   sum {sum(raw) * 1000:.0f} ms, median {statistics.median(raw) * 1000:.2f} ms")
        self.stdout.write(f"cycle wall / sum of raw calls:     {wall / sum(raw):.2f}")

    def _raw_seconds(self, read):
        read()  # warm the client
        started = time.perf_counter()
        read()
        return time.perf_counter() - started

    # Several nodes: their engines' reads overlap --------------------------------------

    def _nodes(self, count, containers, cycles):
        """Start `count` extra nodes (engines in network namespaces, mutual TLS), `containers`
        containers on each, and time the cycle's reads of them all against the same reads one by one."""
        self.stdout.write(f"starting {count} nodes with {containers} containers each ...")
        with tempfile.TemporaryDirectory(prefix="cpb-credentials-") as credentials, override_settings(NODE_CREDENTIALS_DIR=credentials):
            machines = [ExtraNode(index) for index in range(1, count + 1)]
            try:
                for machine in machines:
                    machine.make_network()
                    name = f"bench-node{machine.index}"
                    machine.install(certificates.node_ca_ensure(name), certificates.node_sign(name, machine.csr, address=machine.address))
                    machine.start()
                rows = [Node(pk=-m.index, name=f"bench-node{m.index}", docker_url=m.url) for m in machines]  # never saved: reads only
                image = b"".join(inside.host_engine().images.get(TEST_APP_IMAGE).save(named=True))
                for machine, node in zip(machines, rows):
                    machine.wait(docker.Engine.of(node))
                    client = machine.local_client()
                    client.images.load(image)
                    for k in range(containers):
                        client.containers.run(TEST_APP_IMAGE, ["sleep", "3600"], name=f"app{k}", detach=True)
                monitor.read_engines(rows)  # clients made, connections open
                together, one_by_one, slowest = [], [], []
                for _ in range(max(cycles, 1)):
                    started = time.perf_counter()
                    reads = monitor.read_engines(rows)
                    together.append(time.perf_counter() - started)
                    failed = [read.error for read, _ in reads.values() if read.error]
                    if failed:
                        raise CommandError(f"a node's engine did not answer: {failed[0]}")
                    each = [self._raw_seconds(lambda n=n: (docker.host_containers_json(docker.Engine.of(n), timeout=5),
                                                           docker.engine_facts(docker.Engine.of(n)))) for n in rows]
                    one_by_one.append(sum(each))
                    slowest.append(max(each))
            finally:
                for machine in machines:
                    machine.remove()
        ms = lambda values: statistics.median(values) * 1000  # noqa: E731
        self.stdout.write(f"\n{count} nodes' engines (list + facts, over mutual TLS), median of {len(together)}:")
        self.stdout.write(f"  read in one cycle, at once:  {ms(together):.1f} ms")
        self.stdout.write(f"  the same, one by one:        {ms(one_by_one):.1f} ms (slowest node {ms(slowest):.1f} ms)")
        self.stdout.write(f"  at once / slowest node:      {statistics.median(together) / statistics.median(slowest):.2f}")

    # Synthetic daemons: the write pass alone ----------------------------------------

    def _synthetic(self, count, per_daemon):
        owner, _ = User.objects.get_or_create(email="benchmark-synthetic@localhost")
        node = Node.local()
        started_pk = (VirtualServer.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
        VirtualServer.objects.bulk_create([
            VirtualServer(pk=started_pk + n, owner=owner, node=node, name=f"synthetic {n}", observed_state="running",
                          memory_mb=64, cpus=1, pids_limit=32) for n in range(count)], batch_size=2000)
        servers = list(VirtualServer.objects.filter(owner=owner).only(*monitor.POLLED_FIELDS))
        try:
            self.stdout.write(f"\n{count:,} daemons × {per_daemon} containers = {count * per_daemon:,} rows (PostgreSQL)")
            answers = {server.pk: [self._entry(server.pk, k) for k in range(per_daemon)] for server in servers}
            parse_started = time.perf_counter()
            reads = [monitor.digested(pk, answer, time.perf_counter()) for pk, answer in answers.items()]
            host = monitor.digested(None, [self._host_entry(server) for server in servers], time.perf_counter())
            self.stdout.write(f"  parse and digest (reader threads' work, summed): {time.perf_counter() - parse_started:.2f} s")
            self._pass("first pass", host, reads, servers, node)
            self._pass("unchanged pass", host, reads, servers, node)
            for pk in answers:  # 10 % of the rows: 2 of every 20, in every daemon
                for k in range(0, per_daemon, 10):
                    answers[pk][k]["Status"] = "Up 2 minutes"
            reads = [monitor.digested(pk, answer, 0) for pk, answer in answers.items()]
            self._pass("10 % of rows changed", host, reads, servers, node)
            for pk in list(answers)[::10]:  # 10 % of the daemons, all their rows
                for entry in answers[pk]:
                    entry["Status"] = "Up 3 minutes"
            reads = [monitor.digested(pk, answer, 0) for pk, answer in answers.items()]
            self._pass("10 % of daemons changed", host, reads, servers, node)
        finally:
            ContainerSnapshot.objects.filter(server__isnull=True, docker_id__in=[e["Id"] for e in map(self._host_entry, servers)]).delete()
            VirtualServer.objects.filter(owner=owner).delete()  # their snapshots go with them
            Node.objects.filter(pk=node.pk).update(host_digest="")

    def _pass(self, label, host, reads, servers, node):
        servers = list(VirtualServer.objects.filter(pk__in=[s.pk for s in servers]).only(*monitor.POLLED_FIELDS))
        node.refresh_from_db()
        before = self._table_stats()
        with CaptureQueriesContext(connection) as context:
            started = time.perf_counter()
            states = monitor.server_states_from_host(host, servers)
            written, _, _ = monitor.record_reads(host, reads, servers, states, node, timezone.now())
            seconds = time.perf_counter() - started
        after = self._table_stats()
        deltas = {table: [a - b for a, b in zip(after[table], before[table])] for table in TABLES}
        snapshots, rows = deltas["hosting_containersnapshot"], deltas["hosting_virtualserver"]
        self.stdout.write(f"  {label + ':':26} {seconds:6.2f} s, {len(context.captured_queries)} queries, {written:,} rows written; "
                          f"snapshots ins/upd/del {snapshots[0]:,}/{snapshots[1]:,}/{snapshots[2]:,}, dead tuples +{snapshots[3]:,}; "
                          f"server rows updated {rows[1]:,}, dead tuples +{rows[3]:,}")

    @staticmethod
    def _table_stats():
        """(inserted, updated, deleted, dead) per table, once PostgreSQL has counted this session's work."""
        time.sleep(1.2)  # backends report their counts at most once a second
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, n_dead_tup FROM pg_stat_user_tables WHERE relname = ANY(%s)",
                           [list(TABLES)])
            return {name: counts for name, *counts in cursor.fetchall()}

    @staticmethod
    def _entry(server_id, k):
        return {"Id": f"{server_id:032x}{k:032x}", "Names": [f"/app{k}"], "Image": "busybox:latest", "Command": "httpd -f",
                "Created": 1_700_000_000 + k, "State": "running", "Status": "Up 1 minute",
                "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8000 + k, "Type": "tcp"}],
                "Labels": {"com.docker.compose.project": "site", "com.docker.compose.service": f"app{k}"},
                "NetworkSettings": {"Networks": {"site_default": {"IPAddress": f"172.18.0.{k + 2}"}}},
                "Mounts": [{"Name": f"site_data{k}", "Destination": "/data"}]}

    @staticmethod
    def _host_entry(server):
        return {"Id": f"{server.pk:064x}", "Names": [f"/{server.container_name}"], "Image": settings.SERVER_IMAGE,
                "State": "running", "Status": "Up 1 hour", "Created": 1_700_000_000,
                "NetworkSettings": {"Networks": {settings.SERVER_NETWORK: {"IPAddress": "10.213.0.2"}}}}
