"""Shared pytest fixtures (loaded as a plugin from pyproject.toml).

The cast: an admin, alice and bob (plain users), and a disabled user, all
made through the real model manager. Password hashing is cheap here; tests
about hashing switch the production hashers back on.
"""

import socket
import threading

import pytest
from django.test import Client

PASSWORD = "correct-Horse-42"
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True, scope="session")
def jinja2_templates_report_their_context():
    """The test client reads response.context from a signal that Django sends,
    under test, for its own template language only: pages here are Jinja2."""
    from django.template.backends.jinja2 import Template
    from django.test.signals import template_rendered

    render = Template.render

    def render_and_report(self, context=None, request=None):
        context = {} if context is None else context
        template_rendered.send(sender=self, template=self, context=context)
        return render(self, context, request)

    Template.render = render_and_report
    yield
    Template.render = render


@pytest.fixture(autouse=True)
def fast_password_hashing(settings, request):
    if "production_hashers" not in request.fixturenames:
        settings.PASSWORD_HASHERS = FAST_HASHERS + settings.PASSWORD_HASHERS


def run_in_threads(function, arguments, timeout):
    """Call function(argument) for every argument at once, each in a thread, and wait for all.

    Each thread closes its own database connection when done: one left open
    keeps the test database from being dropped at the end of the run.
    """
    from django.db import connection

    def run(argument):
        try:
            function(argument)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(argument,)) for argument in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)


@pytest.fixture(autouse=True)
def fresh_cache():
    """Throttle counters and locks from one test never leak into the next."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def no_stray_caddy(settings):
    """Unless a test starts its own Caddy, proxy changes go nowhere (never to a real one)."""
    settings.CADDY_ADMIN_URL = "http://127.0.0.1:9"  # the discard port: connection refused


@pytest.fixture
def production_hashers(settings):
    """The configured bcrypt hashers, for tests about hashing itself."""
    from controlpanel import settings as configured

    settings.PASSWORD_HASHERS = configured.PASSWORD_HASHERS


def _make_user(django_user_model, email, **fields):
    return django_user_model.objects.create_user(email=email, password=PASSWORD, **fields)


@pytest.fixture
def admin(django_user_model):
    return _make_user(django_user_model, "admin@example.com", is_admin=True)


@pytest.fixture
def alice(django_user_model):
    return _make_user(django_user_model, "alice@example.com")


@pytest.fixture
def bob(django_user_model):
    return _make_user(django_user_model, "bob@example.com")


@pytest.fixture
def disabled(django_user_model):
    return _make_user(django_user_model, "disabled@example.com", is_active=False)


def logged_in_client(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_admin(admin):
    return logged_in_client(admin)


@pytest.fixture
def as_alice(alice):
    return logged_in_client(alice)


@pytest.fixture
def as_bob(bob):
    return logged_in_client(bob)


@pytest.fixture
def eager_tasks():
    """Celery tasks run in-process, at once, when enqueued."""
    from controlpanel.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False


@pytest.fixture
def fake_docker(monkeypatch, eager_tasks):
    """hosting.backends.docker replaced by an in-memory fake (unit tests only)."""
    from hosting.tests.fake_docker import install

    return install(monkeypatch)


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """`with committed():` runs the on-commit work (enqueued tasks) at the block's end."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def refused_form(client, response, name):
    """The form `name` (its context name) as the page a refused POST went back to shows it
    (controlpanel.forms.refused): bound to what was sent, with its errors."""
    assert response.status_code == 302, response.status_code
    page = client.get(response.url)
    assert page.status_code == 200
    return page.context[name]


def was_refused(client, response):
    """Whether a POST was refused: a page with the form again, or a redirect with what the form
    was refused for kept for the page it goes back to (taken away here, for the next POST)."""
    session = client.session
    kept = session.pop("refused_form", None)
    session.save()
    return response.status_code != 302 or kept is not None


def free_port():
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
