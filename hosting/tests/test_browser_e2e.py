"""The whole journey in a real browser (Debian's Chromium driven by Playwright).

Real web server (Django's live server), real Docker and DinD, real Caddy; the
Celery tasks run in-process. Screenshots of the key pages go to artifacts/e2e/.
"""

import os

import pytest
from django.urls import reverse

from hosting.benchmarks import inside
from hosting.worker import monitor
from hosting.models import VirtualServer

from .conftest import SHOTS, TEST_APP_IMAGE, inner_daemon_answers, shot, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker, pytest.mark.usefixtures("eager_tasks")]
ADMIN_PASSWORD = "admin-Browser-pass-1"
USER_PASSWORD = "student-Browser-pass-1"


def test_admin_invites_a_student_who_hosts_a_site_until_disabled(browser, live_server, real_docker, caddy, django_user_model):
    django_user_model.objects.create_user(email="teacher@example.org", password=ADMIN_PASSWORD, is_admin=True)
    base = live_server.url

    # The admin logs in and generates a registration code.
    admin = browser.new_page(viewport={"width": 1280, "height": 900})
    admin.goto(base + "/")
    admin.fill("input[name=username]", "teacher@example.org")
    admin.fill("input[name=password]", ADMIN_PASSWORD)
    admin.click("button[type=submit]")
    admin.click("text=Generate a code")
    code = admin.inner_text("p.code").strip()
    assert len(code) == 8
    shot(admin, "01-admin-dashboard")

    # A new person signs up with it (typing it in lower case).
    student = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    student.goto(base + reverse("accounts:signup"))
    student.fill("input[name=code]", code.lower())
    student.fill("input[name=email]", "Student@Example.org")
    student.fill("input[name=password1]", USER_PASSWORD)
    student.fill("input[name=password2]", USER_PASSWORD)
    student.click("button[type=submit]")
    student.wait_for_url("**/servers/")
    shot(student, "02-student-servers")

    # ... creates a virtual server and sees it running.
    student.fill("input[name=name]", "My site")
    student.click("text=Create server")
    student.wait_for_selector(".big-state .state-running", timeout=60_000)
    shot(student, "03-server-running")
    server = VirtualServer.objects.get(name="My site")

    # A container starts inside it (test helper); after a poll the page lists it by itself.
    inner_daemon_answers(server)
    inside.image_copy_to_inner(TEST_APP_IMAGE, str(server.socket_dir))
    inside.inner_container_run(str(server.socket_dir), TEST_APP_IMAGE, ["httpd", "-f", "-p", "8080", "-h", "/www"],
                               name="website", ports={"8080/tcp": 80})
    monitor.run_cycle()
    student.wait_for_selector("table.containers >> text=website", timeout=20_000)
    shot(student, "04-container-listed")

    # ... adds a domain and the site answers through Caddy.
    student.fill("input[name=name]", "student-site.example.org")
    student.uncheck("input[name=ssl]")
    student.click("text=Add domain")
    student.wait_for_selector("text=student-site.example.org now points at this server")
    shot(student, "05-domain-added")
    response = wait_until(lambda: (r := caddy.get("student-site.example.org")).status_code == 200 and r, what="the site through Caddy")
    assert "hello from the test app" in response.text

    # The admin disables the student: the student's open session is gone.
    admin.goto(base + reverse("accounts:user_list"))
    admin.click("text=student@example.org")
    admin.uncheck("input[name=is_active]")
    admin.click("form >> text=Save")
    admin.wait_for_selector("text=Saved student@example.org")
    shot(admin, "06-admin-disabled-student")

    student.goto(base + reverse("hosting:server_list"))
    assert "/login/" in student.url
    assert student.is_visible("input[name=password]")
    shot(student, "07-student-logged-out")
    assert len(list(SHOTS.glob("*.png"))) >= 7
    assert os.path.getsize(SHOTS / "04-container-listed.png") > 10_000
