"""Pages at a phone's width, and the panel's own error pages, in a real browser (Debian's Chromium)."""

import pytest
from django.urls import reverse

from hosting.models import Node, VirtualServer

from .conftest import browser_log_in, shot

pytestmark = pytest.mark.django_db(transaction=True)
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}


def test_every_page_fits_a_phone_and_errors_are_the_panels_own(browser, live_server, admin, alice):
    node = Node.local()
    server = VirtualServer.objects.create(owner=admin, node=node, name="web", memory_mb=1024, cpus=1, pids_limit=512, disk_mb=10240)
    page = browser_log_in(browser, live_server.url, admin, **PHONE)
    for name, path in [("servers", reverse("hosting:server_list")), ("server", reverse("hosting:server_detail", args=[server.pk])),
                       ("dashboard", reverse("hosting:admin_dashboard")), ("nodes", reverse("hosting:admin_node_list")),
                       ("users", reverse("accounts:user_list")), ("activity", reverse("accounts:activity_list")),
                       ("account", reverse("accounts:account")), ("missing", "/no/such/page/"), ("post-only", reverse("accounts:logout"))]:
        page.goto(live_server.url + path)
        shot(page, f"phone-{name}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, f"{name} is wider than the phone"
        assert page.is_visible("text=Log out"), f"{name}: Log out is off screen"
    page.goto(live_server.url + "/no/such/page/")
    assert page.is_visible("text=Page not found") and page.is_visible("text=Back to the panel")
    page.goto(live_server.url + reverse("accounts:logout"))
    assert page.is_visible("text=Not from here")


@pytest.mark.parametrize("screen", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_refused_form_says_why_in_view_and_a_reload_shows_the_page(browser, live_server, alice, screen):
    """The domain form sits below the terminal: refused, the page comes back at the error, what was typed kept,
    at the server's own address (a reload is that page, not a POST-only address's 405)."""
    server = VirtualServer.objects.create(owner=alice, node=Node.local(), name="web", memory_mb=1024, cpus=1, pids_limit=512)
    page = browser_log_in(browser, live_server.url, alice, **screen)
    address = live_server.url + reverse("hosting:server_detail", args=[server.pk])
    page.goto(address)
    page.fill("#domains input[name=name]", "x..com")
    page.click("#domains >> text=Add domain")
    error = page.wait_for_selector("#domains .errorlist")
    shot(page, f"refused-domain-{screen['viewport']['width']}")
    assert page.url == address
    box, height = error.bounding_box(), screen["viewport"]["height"]
    assert 0 <= box["y"] and box["y"] + box["height"] <= height, f"the error is out of view ({box}, {height} px high)"
    assert page.input_value("#domains input[name=name]") == "x..com"
    assert page.evaluate("document.activeElement.name") == "name"
    page.reload()
    assert page.is_visible("#domains >> text=Add domain") and not page.is_visible("#domains .errorlist")  # said once
