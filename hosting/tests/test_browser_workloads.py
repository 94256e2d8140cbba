"""Logs and apps in a real browser: a container flooding its log must leave the page
responsive and its memory bounded (measured here); the app and server pages as users see them."""

import pytest
from django.urls import reverse

from hosting.benchmarks import inside
from hosting.worker import monitor
from hosting import services
from hosting.models import App

from .conftest import TEST_APP_IMAGE, browser_log_in, shot, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker, pytest.mark.usefixtures("eager_tasks")]
FLOOD = 'i=0; while :; do i=$((i+1)); echo "flood line $i: the quick brown fox jumps over the lazy dog"; done'

# Injected into the page (with the CSP bypassed for the measurement only): the longest gap
# between two animation frames, i.e. how long the page was unable to respond.
WATCH_FRAMES = """() => { window.__gaps = []; let last = performance.now();
  const tick = (now) => { window.__gaps.push(now - last); last = now; requestAnimationFrame(tick); };
  requestAnimationFrame(tick); }"""


def test_a_log_flood_leaves_the_page_responsive_and_bounded(browser, live_server, page_gateway, running_server, alice):
    server = running_server
    inside.inner_container_run(str(server.socket_dir), TEST_APP_IMAGE, ["sh", "-c", FLOOD], name="flood")
    monitor.refresh_server(server)
    container = server.containers.get(name="flood")
    page = browser_log_in(browser, live_server.url, alice, bypass_csp=True)
    page.goto(live_server.url + reverse("hosting:container_logs", args=[container.pk]))
    page.wait_for_selector(".log-line", timeout=20_000)
    heap_before = page.evaluate("() => performance.memory.usedJSHeapSize")
    page.evaluate(WATCH_FRAMES)
    page.wait_for_timeout(8000)
    gaps = page.evaluate("() => window.__gaps")
    lines = page.evaluate("() => document.querySelectorAll('.log-line').length")
    heap_after = page.evaluate("() => performance.memory.usedJSHeapSize")
    page.click("text=Times")  # the page still takes clicks
    assert page.is_hidden(".log-time >> nth=0")
    status = page.inner_text("[data-logs-status]")
    shot(page, "w1-log-flood")
    print(f"log flood: {len(gaps)} frames in 8 s, longest gap {max(gaps):.0f} ms, {lines} lines kept, "
          f"JS heap {heap_before / 2**20:.1f} → {heap_after / 2**20:.1f} MiB; {status}")
    assert max(gaps) < 1000, f"the page froze for {max(gaps):.0f} ms"
    assert lines <= 5000 + 100  # at most the lines kept, and the 'skipped' notes of the last frame
    assert heap_after - heap_before < 100 * 2**20
    assert "skipped" in status, "a flood is more than the page shows: the rest is counted"


COMPOSE = inside.TWO_SERVICE_APP


def test_an_app_deployed_from_the_page(browser, live_server, running_server, alice):
    server = running_server
    page = browser_log_in(browser, live_server.url, alice)
    page.goto(live_server.url + reverse("hosting:server_detail", args=[server.pk]))
    page.click("text=New app")
    page.fill("input[name=name]", "shop")
    page.fill("textarea[name=compose_file]", COMPOSE)
    page.click("button >> text=Deploy")
    page.wait_for_selector("#app-live >> text=Running (2 of 2)", timeout=120_000)  # its containers say so
    output = page.inner_text("#app-live pre.output")
    assert "Started" in output or "Running" in output
    shot(page, "w2-app-deployed")
    page.goto(live_server.url + reverse("hosting:server_detail", args=[server.pk]))
    page.wait_for_selector("table.containers >> text=App", timeout=20_000)
    page.wait_for_selector("table.containers >> text=shop-web-1")
    shot(page, "w3-server-with-app")
    assert App.objects.get(name="shop").status == "running"
    assert services.app_latest_file(App.objects.get(name="shop")).strip() == COMPOSE.strip()
    wait_until(lambda: server.containers.filter(name__startswith="shop-").count() == 2, what="both services listed")
