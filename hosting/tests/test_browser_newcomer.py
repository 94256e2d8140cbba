"""A newcomer's first hour, in a real browser at a desktop's and a phone's size (issue 27's path):
sign up with a code, a server, a terminal, a container and its log, a compose app, a domain (a refused
one first), the server stopped and started (its app comes back by itself), and the server deleted.
On every page: no wider than the screen, never a bare framework page. Screenshots: artifacts/e2e/newcomer-*."""

import pytest
from django.urls import reverse

from accounts import services as account_services
from hosting.benchmarks import inside
from hosting.models import App, VirtualServer

from .conftest import TEST_APP_IMAGE, inner_daemon_answers, shot, wait_until
from .test_browser_terminal import type_line, wait_for_screen
from .test_workloads import TWO_SERVICES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker, pytest.mark.usefixtures("eager_tasks")]
PASSWORD = "newcomer-Browser-pass-1"
SCREENS = {"desktop": {"viewport": {"width": 1280, "height": 800}},
           "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}}


class Visit:
    """The newcomer's browser tab: every page it lands on is checked and photographed."""

    def __init__(self, page, screen):
        self.page, self.screen, self.width = page, screen, SCREENS[screen]["viewport"]["width"]
        self.shots = 0

    def check(self, name):
        page = self.page
        page.wait_for_load_state()
        text = page.inner_text("body")
        assert "Control panel" in page.title() or page.is_visible(".brand"), f"{name}: not one of the panel's pages"
        for bare in ("Server Error (500)", "Page not found at", "Method Not Allowed", "Traceback"):
            assert bare not in text, f"{name}: {bare!r}"
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= self.width, f"{name} is {width} px wide on a {self.width} px screen"
        self.shots += 1
        shot(page, f"newcomer-{self.screen}-{self.shots:02d}-{name}")

    def in_view(self, selector):
        box, height = self.page.locator(selector).first.bounding_box(), SCREENS[self.screen]["viewport"]["height"]
        return box and 0 <= box["y"] and box["y"] + box["height"] <= height


@pytest.mark.parametrize("screen", SCREENS)
def test_a_newcomers_first_hour(screen, browser, live_server, page_gateway, real_docker, caddy, admin, settings):
    settings.DOMAIN_OWNERSHIP = "allowed"  # a closed installation: names need no proof here
    code = account_services.registration_code_generate(admin=admin).code
    base = live_server.url
    visit = Visit(browser.new_context(**SCREENS[screen]).new_page(), screen)
    page = visit.page

    # Signing up with a code from the login page.
    page.goto(base + "/")
    visit.check("login")
    page.click("text=Forgot your password?")
    visit.check("password-forgot")
    page.goto(base + "/")
    page.click("text=Sign up with a registration code")
    page.fill("input[name=code]", code)
    page.fill("input[name=email]", f"newcomer-{screen}@example.org")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/servers/")
    visit.check("servers")

    # A server, running in seconds.
    page.fill("input[name=name]", "My site")
    page.click("text=Create server")
    page.wait_for_selector(".big-state .state-running", timeout=90_000)
    visit.check("server-running")
    server = VirtualServer.objects.get(name="My site")
    inner_daemon_answers(server)
    inside.image_copy_to_inner(TEST_APP_IMAGE, str(server.socket_dir))  # no registry in reach here

    # A terminal: `docker run`, and the container is listed by itself with an age that counts.
    page.click("text=Open a terminal")
    wait_for_screen(page, "root@server")
    type_line(page, f"docker run -d --name hello {TEST_APP_IMAGE} sh -c 'echo hello-from-the-log; sleep 600'")
    page.wait_for_selector("table.containers >> text=hello", timeout=30_000)
    assert page.is_visible("table.containers time.age")
    visit.check("terminal-and-container")

    # The images it has (what its containers start from).
    page.click("text=Images")
    page.wait_for_selector(f"#images-live >> text={TEST_APP_IMAGE}", timeout=30_000)
    visit.check("images")
    page.go_back()

    # Its log.
    page.click("table.containers tr:has-text('hello') >> text=Logs")
    page.wait_for_selector("text=hello-from-the-log", timeout=30_000)
    visit.check("container-log")

    # A compose app, from the server's page.
    page.goto(base + reverse("hosting:server_detail", args=[server.pk]))
    page.click("text=New app")
    page.fill("input[name=name]", "blog")
    page.fill("textarea[name=compose_file]", TWO_SERVICES)
    page.click("button:has-text('Deploy')")
    page.wait_for_selector("#app-live >> text=Running (2 of 2)", timeout=120_000)
    visit.check("app-running")
    app = App.objects.get(name="blog")

    # A domain: a refused name says why where the form is, then one that is served.
    page.goto(base + reverse("hosting:server_detail", args=[server.pk]))
    page.fill("#domains input[name=name]", "blog..example.org")
    page.click("#domains >> text=Add domain")
    page.wait_for_selector("#domains .errorlist")
    page.wait_for_load_state()
    assert visit.in_view("#domains .errorlist"), "the domain's error is out of view"
    visit.check("domain-refused")
    page.fill("#domains input[name=name]", "blog.example.org")
    page.fill("#domains input[name=port]", "8081")
    page.uncheck("#domains input[name=ssl]")
    page.click("#domains >> text=Add domain")
    page.wait_for_selector("text=blog.example.org now points at this server")
    assert wait_until(lambda: "version one" in caddy.get("blog.example.org").text, what="the app through Caddy")
    visit.check("domain-added")

    # Stopped and started: the app comes back by itself, and its site with it.
    page.click(".page-head >> text=Stop")
    page.wait_for_selector(".big-state .state-exited", timeout=60_000)
    visit.check("server-stopped")
    page.click(".page-head >> text=Start")
    page.wait_for_selector(".big-state .state-running", timeout=90_000)
    page.goto(base + reverse("hosting:app_detail", args=[app.pk]))
    page.wait_for_selector("#app-live >> text=Running (2 of 2)", timeout=120_000)
    visit.check("app-running-again")
    assert wait_until(lambda: "version one" in caddy.get("blog.example.org").text, what="the app through Caddy again")

    # Its sessions, then the server deleted.
    page.goto(base + reverse("hosting:session_list"))
    visit.check("sessions")
    page.goto(base + reverse("hosting:server_detail", args=[server.pk]))
    page.click(".page-head >> text=Delete…")
    visit.check("server-delete")
    page.click("button:has-text('Delete')")
    page.wait_for_url("**/servers/")
    visit.check("server-deleted")
    wait_until(lambda: VirtualServer.objects.get(pk=server.pk).deleted_at, timeout=60, what="the server's removal")
