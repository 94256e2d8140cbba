"""Every benchmark command, run at a tiny size, so that a change that breaks one fails
here (benchmark_pages once crashed on main unnoticed). The figures at full size are
in the issue notes; here only that each runs to its end and reports."""

import io

import pytest
from django.core.management import call_command

from .conftest import panel_env

pytestmark = pytest.mark.django_db(transaction=True)


def run(name, *args):
    output = io.StringIO()
    call_command(name, *args, stdout=output)
    return output.getvalue()


def test_benchmark_pages():
    output = run("benchmark_pages", "--servers", "20", "--runs", "2", "--wrk-seconds", "0")
    assert "admin server list" in output and "server detail (live)" in output


@pytest.fixture
def benchmark_env(real_docker, settings, monkeypatch):
    """The processes a benchmark starts (a gateway, a web server) share this test's
    database, Redis and Docker settings, as a worker of the test's would."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # benchmark_apps drives a browser from this thread
    for key, value in panel_env(settings).items():
        monkeypatch.setenv(key, value)


@pytest.mark.docker
def test_benchmark_servers(benchmark_env):
    output = run("benchmark_servers", "--count", "1", "--modes", "rootless", "--idle-seconds", "0")
    assert "request → running" in output


@pytest.mark.docker
def test_benchmark_monitor(benchmark_env):
    assert "cycle" in run("benchmark_monitor", "--servers", "1", "--containers", "1", "--cycles", "1")
    assert "unchanged" in run("benchmark_monitor", "--synthetic", "5")
    assert "at once" in run("benchmark_monitor", "--nodes", "1", "--containers", "1", "--cycles", "1")


@pytest.mark.docker
def test_benchmark_terminals(benchmark_env):
    assert "echo" in run("benchmark_terminals", "--terminals", "1", "--echoes", "5", "--megabytes", "1")


@pytest.mark.docker
def test_benchmark_ssh(benchmark_env):
    assert "scp" in run("benchmark_ssh", "--runs", "2", "--sessions", "2", "--megabytes", "1")


@pytest.mark.docker
def test_benchmark_apps(benchmark_env):
    assert "deploy" in run("benchmark_apps", "--deploys", "1", "--seconds", "2")
