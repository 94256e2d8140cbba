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
                       ("account", reverse("accounts:account")), ("tokens", reverse("api:token_list")), ("missing", "/no/such/page/"), ("post-only", reverse("accounts:logout"))]:
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


@pytest.mark.parametrize("screen", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_an_api_token_is_made_shown_once_works_and_is_revoked_from_the_browser(browser, live_server, alice, screen):
    from django.test import Client

    VirtualServer.objects.create(owner=alice, node=Node.local(), name="web", memory_mb=1024, cpus=1, pids_limit=512)
    page = browser_log_in(browser, live_server.url, alice, **screen)
    page.goto(live_server.url + reverse("accounts:account"))
    page.click("text=API tokens")
    page.fill("input[name=name]", "CI deploys")
    page.check("text=Write: all you may do")
    page.click("text=Make token")
    secret = page.inner_text("#new-token").strip()
    shot(page, f"api-token-made-{screen['viewport']['width']}")
    assert page.evaluate("document.documentElement.scrollWidth") <= screen["viewport"]["width"]
    api = Client(headers={"Authorization": f"Bearer {secret}"})
    assert api.get(reverse("api:server-list")).json()["count"] == 1
    page.reload()
    assert not page.is_visible("#new-token") and page.is_visible("text=CI deploys")  # shown once
    page.click("button:has-text('Revoke')")
    assert page.wait_for_selector(".badge-off").inner_text() == "revoked"
    assert api.get(reverse("api:server-list")).status_code == 401


@pytest.mark.parametrize("screen", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_api_docs_show_every_route_from_the_panels_own_schema(browser, live_server, alice, screen):
    page = browser_log_in(browser, live_server.url, alice, **screen)
    refused = []
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None)
    page.goto(live_server.url + reverse("api:docs"))
    page.wait_for_selector(".opblock-summary-path")
    paths = set(page.locator(".opblock-summary-path").all_inner_texts())
    assert {"/api/v1/servers/", "/api/v1/apps/{id}/deploy/", "/api/v1/admin/users/"} <= {p.replace("\u200b", "") for p in paths}
    shot(page, f"api-docs-{screen['viewport']['width']}")
    assert not refused, refused
    assert page.evaluate("document.documentElement.scrollWidth") <= screen["viewport"]["width"]
