"""Page speed at scale: seed a large panel, time the main pages, load the admin server list.

    createdb cp_bench   # a throwaway PostgreSQL database
    export DATABASE_URL=postgres:///cp_bench DATA_DIR=/tmp/cp-bench
    .venv/bin/python manage.py migrate
    .venv/bin/python manage.py benchmark_pages          # seeds once, then measures
    .venv-pgo/bin/python manage.py benchmark_pages      # the same on an optimised interpreter (.ci/optimised-python)

Seeds 1,000 virtual servers over 200 users, 20 container snapshots each,
1,000 domains and 5,000 activity rows; reports median/p90 server time and
SQL queries of each main page (in-process, through the whole middleware
stack), then requests/s of the admin server list under gunicorn with 2
workers (wrk), with the CPU each worker used.
"""

import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import ActivityLog, User
from hosting.models import ContainerSnapshot, Domain, Node, VirtualServer

SEED_EMAIL = "bench-admin@example.org"
PASSWORD = "bench-Password-1"


class Command(BaseCommand):
    help = "Seed a large panel and measure page times, query counts and requests/s."

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=100)
        parser.add_argument("--wrk-seconds", type=int, default=10, help="0: no load test")
        parser.add_argument("--servers", type=int, default=1000, help="what to seed: this many servers, and the rest in proportion")

    def handle(self, *args, runs, wrk_seconds, servers, **options):
        if not User.objects.filter(email=SEED_EMAIL).exists():
            self.seed(servers)
        admin = User.objects.get(email=SEED_EMAIL)
        user = User.objects.filter(email__startswith="user", servers__isnull=False).first()
        server = user.servers.first()
        pages = [
            ("admin dashboard", admin, reverse("hosting:admin_dashboard")),
            ("admin server list", admin, reverse("hosting:admin_server_list")),
            ("admin users", admin, reverse("accounts:user_list")),
            ("activity", admin, reverse("accounts:activity_list")),
            ("admin domains", admin, reverse("hosting:admin_domain_list")),
            ("user server list", user, reverse("hosting:server_list")),
            ("server detail", user, reverse("hosting:server_detail", args=[server.pk])),
            ("server detail (live)", user, reverse("hosting:server_live", args=[server.pk])),
            ("account", user, reverse("accounts:account")),
            # The API, its token checked on every request (a Client of its own: api_client).
            ("api: admin servers", ("token", admin), reverse("api:admin-server-list")),
            ("api: user servers", ("token", user), reverse("api:server-list")),
            ("api: server detail", ("token", user), reverse("api:server-detail", args=[server.pk])),
        ]
        self.stdout.write(f"Python {platform.python_version()} ({sys.executable}): {_interpreter_build()}")
        self.measure(pages, runs)
        if wrk_seconds:
            self.load_test(admin, wrk_seconds)

    def seed(self, count):
        """`count` servers (1,000 by default) over count / 5 users, 20 snapshots each,
        a domain each and five activity rows each."""
        started = time.perf_counter()
        now = timezone.now()
        node = Node.local()
        User.objects.create_user(email=SEED_EMAIL, password=PASSWORD, is_admin=True)
        users = User.objects.bulk_create(User(email=f"user{n:03}@example.org", password="!") for n in range(max(count // 5, 1)))
        servers = VirtualServer.objects.bulk_create(
            VirtualServer(owner=users[n % len(users)], node=node, name=f"server {n}", observed_state="running" if n % 4 else "exited",
                          observed_at=now, inner_seen_at=now, memory_mb=1024, cpus=1, pids_limit=1024, disk_mb=10240,
                          disk_used_mb=n % 10240, ip_address=f"10.1.{n // 250}.{n % 250 + 1}", container_count=20)
            for n in range(count)
        )
        ContainerSnapshot.objects.bulk_create(
            (ContainerSnapshot(server=s, docker_id=f"{s.pk:032x}{k:032x}", name=f"app{k}", image="busybox", state="running",
                               status="Up 2 hours", ports=["0.0.0.0:80→8080/tcp"], labels={"k": "v"}, digest="x")
             for s in servers for k in range(20)),
            batch_size=2000,
        )
        Domain.objects.bulk_create(Domain(name=f"site{n}.example.org", server=servers[n]) for n in range(count))
        ActivityLog.objects.bulk_create(
            (ActivityLog(user=users[n % len(users)], email=users[n % len(users)].email, action="login", message=f"Logged in #{n}",
                         created_at=now - timedelta(minutes=n)) for n in range(count * 5)),
            batch_size=2000,
        )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")  # fresh planner statistics, as autovacuum would give a real panel
        self.stdout.write(f"seeded in {time.perf_counter() - started:.1f}s")

    def measure(self, pages, runs):
        """Every page once per round, round after round: a slow spell of a
        noisy machine then slows all pages alike instead of one. Queries are
        counted on a request of their own: capturing them slows the ones timed.
        CPU is this process's own time: the rest is waiting, mostly on PostgreSQL."""
        clients, queries = {}, {}
        for label, user, url in pages:
            if user not in clients:  # one sign-in (or token) each: every sign-in adds to their activity
                clients[user] = api_client(user[1]) if isinstance(user, tuple) else Client(HTTP_HOST="127.0.0.1")
                if not isinstance(user, tuple):
                    clients[user].force_login(user)
            clients[user].get(url)  # warm caches and connections
            with CaptureQueriesContext(connection) as context:
                clients[user].get(url)
            queries[label] = len(context.captured_queries)
        times = {label: [] for label, _, _ in pages}
        cpu = {label: [] for label, _, _ in pages}
        for _ in range(runs):
            for label, user, url in pages:
                started, started_cpu = time.perf_counter(), time.process_time()
                response = clients[user].get(url)
                times[label].append((time.perf_counter() - started) * 1000)
                cpu[label].append((time.process_time() - started_cpu) * 1000)
                if response.status_code != 200:
                    raise CommandError(f"{url} answered {response.status_code}")
        self.stdout.write(f"\n{'page':<24} {'median ms':>10} {'p90 ms':>8} {'CPU ms':>8} {'queries':>8}")
        for label, _, _ in pages:
            ordered = sorted(times[label])
            p90 = ordered[int(len(ordered) * 0.9) - 1]
            self.stdout.write(
                f"{label:<24} {statistics.median(ordered):>10.1f} {p90:>8.1f} {statistics.median(cpu[label]):>8.1f} {queries[label]:>8}"
            )

    def load_test(self, admin, seconds):
        if not shutil.which("wrk"):
            self.stdout.write("wrk is not installed (apt-get install wrk): skipping the load test")
            return
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(admin)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        port = 18765
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "controlpanel.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        try:
            time.sleep(3)
            workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(web.pid)], capture_output=True, text=True).stdout.split()]
            before = {pid: _cpu_seconds(pid) for pid in workers}
            url = f"http://127.0.0.1:{port}{reverse('hosting:admin_server_list')}"
            result = subprocess.run(
                ["wrk", "-t", "2", "-c", "8", "-d", f"{seconds}s", "-H", f"Cookie: {settings.SESSION_COOKIE_NAME}={cookie}", url],
                capture_output=True, text=True,
            )
            used = {pid: _cpu_seconds(pid) - before[pid] for pid in workers}
        finally:
            os.killpg(web.pid, signal.SIGTERM)
            web.wait(10)
        rate = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
        latency = re.search(r"Latency\s+(\S+)", result.stdout)
        self.stdout.write(f"\nwrk, admin server list, gunicorn 2 workers, 8 connections, {seconds}s:")
        self.stdout.write(f"  requests/s {rate.group(1) if rate else '?'}, mean latency {latency.group(1) if latency else '?'}, non-2xx {non_2xx.group(1) if non_2xx else 0}")
        self.stdout.write("  CPU per worker: " + ", ".join(f"{cpu / seconds * 100:.0f}%" for cpu in used.values()))


def api_client(user):
    """A client sending a new write token of `user`'s (the API's login), with room in its rate limit for every run."""
    from api.authentication import ClientRate, TokenRate
    from api.services import token_create

    TokenRate.THROTTLE_RATES = ClientRate.THROTTLE_RATES = {"token": "100000/min", "client": "100000/min"}
    secret = token_create(user=user, name="benchmark", scope="write", days=7)[1]
    return Client(HTTP_HOST="127.0.0.1", headers={"Authorization": f"Bearer {secret}"})


def _interpreter_build():
    """Pages run ~15 % faster on a profile-guided (PGO) build, as python:3.13-slim is (.ci/optimised-python)."""
    flags = sysconfig.get_config_var("CONFIG_ARGS") or ""
    return ", ".join(name for flag, name in (("--enable-optimizations", "PGO"), ("--with-lto", "LTO")) if flag in flags) \
        or "configured without --enable-optimizations (no PGO)"


def _cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
