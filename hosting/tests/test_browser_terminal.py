"""The terminal in a real browser: Chromium types into xterm.js on the server page,
through the real gateway, into a real virtual server."""

import pytest
from django.urls import reverse

from .conftest import TEST_APP_IMAGE, browser_log_in, shot, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker, pytest.mark.usefixtures("eager_tasks")]


def screen_text(page):
    return page.inner_text(".terminal-box:not([hidden]) .xterm-rows")


def wait_for_screen(page, text, timeout=20):
    """Until the visible terminal shows `text` (read from the page's DOM: the CSP forbids eval)."""
    try:
        wait_until(lambda: page.query_selector(".terminal-box:not([hidden]) .xterm-rows") and text in screen_text(page),
                   timeout=timeout, what=f"{text!r} in the terminal")
    except AssertionError as error:
        raise AssertionError(f"{error}; it shows {screen_text(page)!r}") from None


def type_line(page, text):
    page.click(".terminal-box:not([hidden]) .terminal-screen")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_the_owner_works_in_a_terminal_reloads_it_and_an_admin_watches(browser, live_server, page_gateway, running_server, alice, admin):
    server = running_server
    base = live_server.url
    owner = browser_log_in(browser, base, alice)
    owner.goto(base + reverse("hosting:server_detail", args=[server.pk]))
    owner.click("text=Open a terminal")
    wait_for_screen(owner, "root@server")
    rows = len(owner.query_selector_all(".xterm-rows > div"))
    assert rows >= 5, "the terminal never collapses to zero rows"

    # The container the owner starts in the terminal appears on the page by itself, within seconds.
    type_line(owner, f"docker run -d --name web {TEST_APP_IMAGE} httpd -f -p 8080 -h /www && export PET=cat")
    owner.wait_for_selector("table.containers >> text=web", timeout=20_000)
    shot(owner, "t1-terminal-docker-run")

    # A reload comes back to the same shell, with what it showed.
    owner.reload()
    owner.wait_for_selector("text=Reattached to the same shell", timeout=20_000)
    assert "docker run -d --name web" in screen_text(owner)
    type_line(owner, "echo pet=$PET")
    wait_for_screen(owner, "pet=cat")

    # An admin watches it, read-only; the owner is told.
    watcher = browser_log_in(browser, base, admin)
    watcher.goto(base + reverse("hosting:admin_terminals"))
    shot(watcher, "t2-admin-terminals")
    watcher.click("a.btn >> text=Watch")
    wait_for_screen(watcher, "pet=cat")
    owner.wait_for_selector("text=An administrator is watching this terminal", timeout=20_000)
    type_line(watcher, "echo from-the-watcher")
    type_line(owner, "echo seen-live")
    wait_for_screen(watcher, "seen-live")
    assert "from-the-watcher" not in screen_text(owner)
    shot(watcher, "t3-admin-watching")
    shot(owner, "t4-owner-told")

    # The gateway stops: the page says so.
    page_gateway.stop()
    owner.wait_for_selector("text=The connection to the terminal gateway was lost", timeout=20_000)
    shot(owner, "t5-gateway-gone")


def test_a_paste_larger_than_a_message_arrives_whole(browser, live_server, page_gateway, running_server, alice):
    """The gateway takes 64 KiB a message: the page sends a larger paste in pieces, none lost."""
    page = browser_log_in(browser, live_server.url, alice)
    page.goto(live_server.url + reverse("hosting:server_detail", args=[running_server.pk]))
    page.click("text=Open a terminal")
    wait_for_screen(page, "root@server")
    # Raw mode, so no line limit applies; head stops after exactly that many bytes.
    type_line(page, "stty -echo -icanon; head -c 200000 > /tmp/paste; stty sane; echo size=$(wc -c < /tmp/paste)")
    page.click(".terminal-box:not([hidden]) .terminal-screen")
    page.keyboard.insert_text("x" * 200_000)  # as a paste
    wait_for_screen(page, "size=200000", timeout=60)
