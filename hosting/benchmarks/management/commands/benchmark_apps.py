"""Apps and logs inside a server, measured.

    export DATA_DIR=/tmp/bench SERVER_CONTAINER_PREFIX=bench-dind- PANEL_INSTANCE=benchmark \
           SERVER_NETWORK=bench-servers SERVER_NETWORK_SUBNET=10.216.0.0/16
    .venv/bin/python manage.py migrate
    .venv/bin/python manage.py benchmark_apps

In a real virtual server: seconds from "deploy" to both services of a
two-service compose app running (the worker's code, run here); the lines per
second a flooding container's log reaches a browser through the gateway,
and how many it counts as skipped; and, when Playwright and Chromium are
installed (the test extras), the browser's JS heap and longest frame while
the log page follows the flood. The server is deleted at the end.
"""

import json
import statistics
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.test import Client
from websockets.sync.client import connect

from hosting.benchmarks import inside
from hosting.benchmarks.inside import TEST_APP_IMAGE
from hosting.backends import docker
from hosting.worker import monitor, workloads
from hosting import services
from hosting.models import App

from hosting.benchmarks.setup import benchmark_owner, delete_server, free_port, running_server, start, stop

FLOOD = 'i=0; while :; do i=$((i+1)); echo "flood line $i: the quick brown fox jumps over the lazy dog"; done'
CHROMIUM = "/usr/bin/chromium"


class Command(BaseCommand):
    help = "Measure compose deploys, log streaming through the gateway, and a browser following a log flood."

    def add_arguments(self, parser):
        parser.add_argument("--deploys", type=int, default=3)
        parser.add_argument("--seconds", type=int, default=10, help="how long to follow the flood")

    def handle(self, *args, deploys, seconds, **options):
        self.owner = benchmark_owner()
        server = running_server(self.owner, "apps bench")
        try:
            inside.inner_wait(str(server.socket_dir))
            inside.image_copy_to_inner(TEST_APP_IMAGE, str(server.socket_dir))
            self.deploys(server, deploys)
            inside.inner_container_run(str(server.socket_dir), TEST_APP_IMAGE, ["sh", "-c", FLOOD], name="flood")
            monitor.refresh_server(server)
            flood = server.containers.get(name="flood")
            client = Client()
            client.force_login(self.owner)
            self.cookie = client.cookies["sessionid"].value
            gateway_port, web_port = free_port(), free_port()
            gateway = start("gateway", gateway_port, PANEL_ORIGINS=f"http://127.0.0.1,http://127.0.0.1:{web_port}")
            web = start("web", web_port, GATEWAY_URL=f"ws://127.0.0.1:{gateway_port}")
            try:
                self.log_throughput(gateway_port, flood, seconds)
                self.browser(web_port, flood, seconds)
            finally:
                stop(web)
                stop(gateway)
        finally:
            delete_server(self.owner, server)

    def deploys(self, server, count):
        times = []
        for n in range(count):
            started = time.perf_counter()
            app = services.app_create(actor=self.owner, server=server, name=f"bench{n}", compose_file=inside.TWO_SERVICE_APP)
            workloads.app_run(deployment_id=app.deployments.get().pk)  # what the worker does
            while True:
                running = [c for c in docker.inner_containers_json(str(server.socket_dir), timeout=5, max_bytes=2**22)
                           if c.get("Labels", {}).get("com.docker.compose.project") == app.name and c.get("State") == "running"]
                if len(running) == 2:
                    break
                if time.perf_counter() - started > 120:
                    raise CommandError(f"the app did not come up: {app.deployments.get().output[-500:]}")
                time.sleep(0.05)
            times.append(time.perf_counter() - started)
            app.refresh_from_db()
            services.app_remove(actor=self.owner, app=app)
            workloads.app_run(deployment_id=app.deployments.first().pk)
        self.stdout.write(f"deploy → both services running: median {statistics.median(times):.2f} s, max {max(times):.2f} s ({count} deploys)")
        if App.objects.filter(server=server).exists():
            raise CommandError("an app was not removed")

    def log_throughput(self, port, flood, seconds):
        ws = connect(f"ws://127.0.0.1:{port}/ws/servers/{flood.server_id}/containers/{flood.pk}/logs/?tail=0",
                     additional_headers={"Cookie": f"sessionid={self.cookie}", "Origin": "http://127.0.0.1"}, ping_interval=None).__enter__()
        lines = skipped = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            message = json.loads(ws.recv(timeout=10))
            lines += len(message.get("lines", []))
            skipped += message.get("skipped", 0)
        ws.close()
        elapsed = time.perf_counter() - started
        self.stdout.write(f"log flood through the gateway: {lines / elapsed:.0f} lines/s to the browser, "
                          f"{skipped / elapsed:.0f} lines/s counted as skipped (the container printed {(lines + skipped) / elapsed:.0f}/s)")

    def browser(self, port, flood, seconds):
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            self.stdout.write("browser: skipped (Playwright is not installed: pip install -e '.[test]')")
            return
        if not Path(CHROMIUM).exists():
            self.stdout.write("browser: skipped (no Chromium at /usr/bin/chromium)")
            return
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
            context = chromium.new_context(bypass_csp=True)  # to read the page's memory and frames
            context.add_cookies([{"name": "sessionid", "value": self.cookie, "url": f"http://127.0.0.1:{port}"}])
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/containers/{flood.pk}/logs/")
            page.wait_for_selector(".log-line", timeout=20_000)
            page.evaluate("""() => { window.__gaps = []; let last = performance.now();
              const tick = (now) => { window.__gaps.push(now - last); last = now; requestAnimationFrame(tick); };
              requestAnimationFrame(tick); }""")
            heap = []
            for _ in range(seconds):
                page.wait_for_timeout(1000)
                heap.append(page.evaluate("() => performance.memory.usedJSHeapSize") / 2**20)
            gaps = page.evaluate("() => window.__gaps")
            kept = page.evaluate("() => document.querySelectorAll('.log-line').length")
            chromium.close()
        self.stdout.write(f"browser following the flood for {seconds} s: JS heap {min(heap):.1f}–{max(heap):.1f} MiB, "
                          f"{kept} lines kept, {len(gaps) / seconds:.0f} frames/s, longest frame {max(gaps):.0f} ms")
