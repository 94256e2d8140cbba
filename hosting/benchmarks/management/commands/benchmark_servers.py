"""Create N real virtual servers per isolation mode and report what each costs.

    export DATA_DIR=/tmp/bench SERVER_CONTAINER_PREFIX=bench-dind- PANEL_INSTANCE=benchmark \
           SERVER_NETWORK=bench-servers SERVER_NETWORK_SUBNET=10.216.0.0/16
    .venv/bin/python manage.py migrate
    .venv/bin/python manage.py benchmark_servers --count 10 --modes rootless,capabilities

For each mode, side by side: seconds from request to running and to the
inner daemon answering, memory per idle server (and per process inside it,
proportional set size), and the time of an inner `docker run --rm` from the
owner's shell. Uses the configured database and Docker engine; the servers it
made are deleted at the end unless --keep is given.
"""

import statistics
import time
from collections import defaultdict

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from hosting.benchmarks import inside
from hosting.benchmarks.inside import TEST_APP_IMAGE
from hosting.backends import docker
from hosting.worker import reconcile
from hosting import services
from hosting.models import VirtualServer



class Command(BaseCommand):
    help = "Create N virtual servers per isolation mode; report creation time, idle memory and an inner docker run."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=10)
        parser.add_argument("--modes", default="rootless,capabilities", help="comma-separated isolation modes")
        parser.add_argument("--idle-seconds", type=float, default=10, help="wait before measuring memory")
        parser.add_argument("--keep", action="store_true", help="leave the servers running")

    def handle(self, *args, count, modes, idle_seconds, keep, **options):
        owner, _ = User.objects.get_or_create(email="benchmark@localhost")
        owner.server_quota = 100_000
        owner.save(update_fields=["server_quota"])
        results = {}
        try:
            for mode in modes.split(","):
                settings.SERVER_ISOLATION = mode
                results[mode] = self.measure(owner, mode, count, idle_seconds)
        finally:
            if not keep:
                for server in VirtualServer.objects.live().filter(owner=owner):
                    services.server_delete(actor=owner, server=server)
                    reconcile.server_reconcile(server_id=server.pk)
                self.stdout.write("benchmark servers deleted")
        self.report(results)

    def measure(self, owner, mode, count, idle_seconds):
        to_running, to_inner, servers = [], [], []
        for n in range(count):
            started = time.perf_counter()
            server = services.server_create(owner=owner, name=f"bench {mode} {n}")
            reconcile.server_reconcile(server_id=server.pk)  # what the worker does
            server.refresh_from_db()
            if server.state != VirtualServer.State.RUNNING:
                raise CommandError(f"{server.container_name} ({mode}): {server.state.label} {server.last_error}")
            to_running.append(time.perf_counter() - started)
            inside.inner_wait(str(server.socket_dir))
            to_inner.append(time.perf_counter() - started)
            servers.append(server)
            self.stdout.write(f"  {mode} {server.container_name}: running after {to_running[-1]:.2f}s, inner daemon after {to_inner[-1]:.2f}s")
        time.sleep(idle_seconds)
        memory = [inside.container_memory_usage(s.container_name) / 2**20 for s in servers]
        processes = defaultdict(list)
        for server in servers:
            for name, pss in inside.container_process_memory(server.container_name).items():
                processes[name].append(pss / 2**20)

        inside.image_copy_to_inner(TEST_APP_IMAGE, str(servers[0].socket_dir))
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            code, output = docker.container_exec(docker.Engine.of(servers[0].node), servers[0].container_name, ["controlpanel-shell", "-c", f"docker run --rm {TEST_APP_IMAGE} true"])
            if code != 0:
                raise CommandError(f"inner docker run failed ({mode}): {output[-500:]}")
            runs.append(time.perf_counter() - started)
        return {"running": to_running, "inner": to_inner, "memory": memory, "processes": processes, "run": runs}

    def report(self, results):
        modes = list(results)
        width = max(24, *(len(m) + 2 for m in modes))
        self.stdout.write("\n" + "".ljust(36) + "".join(m.rjust(width) for m in modes))

        def row(label, values):
            self.stdout.write(label.ljust(36) + "".join(v.rjust(width) for v in values))

        med = statistics.median
        row("request → running (median/max s)", [f"{med(r['running']):.2f} / {max(r['running']):.2f}" for r in results.values()])
        row("request → inner daemon (median/max s)", [f"{med(r['inner']):.2f} / {max(r['inner']):.2f}" for r in results.values()])
        row("idle memory (median/max MiB)", [f"{med(r['memory']):.1f} / {max(r['memory']):.1f}" for r in results.values()])
        row("inner docker run --rm (median s)", [f"{med(r['run']):.2f}" for r in results.values()])
        names = sorted({name for r in results.values() for name in r["processes"]})
        self.stdout.write("per process, proportional set size (median MiB):")
        for name in names:
            row(f"  {name}", [f"{med(r['processes'][name]):.1f}" if name in r["processes"] else "—" for r in results.values()])
