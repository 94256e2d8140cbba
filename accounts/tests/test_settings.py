"""Settings fail loudly on missing or malformed production values."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_PRODUCTION = {
    "PRODUCTION": "true",
    "SECRET_KEY": "x7Gq2-LmP9vR4tWz8KbN3cYhJ6sD1fQe5uA0oXiT_gVrM2nBwE4kZ",
    "ALLOWED_HOSTS": "panel.example.org",
    "DATABASE_URL": "postgres://panel@db/panel",
    "REDIS_URL": "redis://redis:6379/0",
}


def load_settings(tmp_path, **environment):
    env = {k: v for k, v in os.environ.items() if k not in GOOD_PRODUCTION and k not in ("DEBUG", "DATA_DIR")}
    env.update(DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="controlpanel.settings", **environment)
    code = "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['ENGINE'], settings.DEBUG)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)


def test_no_environment_runs_locally_with_sqlite_and_a_kept_secret(tmp_path):
    result = load_settings(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "False"]
    secret = (tmp_path / "secret_key").read_text()
    assert len(secret) >= 50
    assert oct((tmp_path / "secret_key").stat().st_mode)[-3:] == "600"
    load_settings(tmp_path)
    assert (tmp_path / "secret_key").read_text() == secret


def test_good_production_settings_load(tmp_path):
    result = load_settings(tmp_path, **GOOD_PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "django.db.backends.postgresql"


@pytest.mark.parametrize("name", ["SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL"])
def test_missing_production_value_fails_loudly(tmp_path, name):
    result = load_settings(tmp_path, **{**GOOD_PRODUCTION, name: ""})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and name in result.stderr


@pytest.mark.parametrize("override, complaint", [
    ({"DEBUG": "maybe"}, "DEBUG must be true or false"),
    ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 50"),
    ({"REGISTRATION_CODE_TTL_MINUTES": "thirty"}, "REGISTRATION_CODE_TTL_MINUTES must be a whole number"),
    ({"DEBUG": "true"}, "DEBUG must be off"),
])
def test_malformed_values_fail_loudly(tmp_path, override, complaint):
    result = load_settings(tmp_path, **{**GOOD_PRODUCTION, **override})
    assert result.returncode != 0
    assert complaint in result.stderr


def test_deploy_check_is_clean_with_production_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DATA_DIR")}
    env.update(GOOD_PRODUCTION, DATA_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_production_images_collectstatic_takes_every_static_file(tmp_path):
    """The manifest storage refuses a file that names one it cannot find (xterm.js names its source map)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DATA_DIR")}
    env.update(GOOD_PRODUCTION, DATA_DIR=str(tmp_path), STATIC_ROOT=str(tmp_path / "static"))
    result = subprocess.run([sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = (tmp_path / "static" / "staticfiles.json").read_text()
    assert "vendor/xterm/xterm.js" in manifest and "js/terminal.js" in manifest


def test_compose_file_is_valid_and_keeps_docker_away_from_the_web_tier(tmp_path):
    """`docker-compose config` (Debian's package) accepts the file with .env.example's values."""
    import shutil
    import yaml

    if not shutil.which("docker-compose"):
        pytest.fail("docker-compose is not installed: .ci/test installs it")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")  # what an operator does first
    result = subprocess.run(["docker-compose", "config"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) >= {"web", "worker", "tenant-worker", "gateway", "beat", "redis", "db", "caddy", "migrate"}
    mounts = lambda name: " ".join(str(v) for v in services[name].get("volumes", []))
    holders = ("worker", "tenant-worker", "gateway")
    assert all("docker.sock" in mounts(name) for name in holders)
    assert all("docker.sock" not in mounts(name) for name in services if name not in holders)
    assert all("2019" not in str(services[name].get("ports", "")) for name in services)
    for name in ("web", "worker", "tenant-worker", "gateway", "db", "redis", "caddy"):
        assert "healthcheck" in services[name], name
        assert services[name]["restart"] == "unless-stopped", name


def test_production_headers_and_cookies(tmp_path):
    """What `check --deploy` does not check: the exact values we promise."""
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DATA_DIR")}
    env.update(GOOD_PRODUCTION, DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="controlpanel.settings")
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; print(json.dumps({"
        "'hsts': s.SECURE_HSTS_SECONDS, 'proxy': s.SECURE_PROXY_SSL_HEADER, 'secure': [s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE],"
        "'httponly': s.SESSION_COOKIE_HTTPONLY, 'samesite': [s.SESSION_COOKIE_SAMESITE, s.CSRF_COOKIE_SAMESITE],"
        "'nosniff': s.SECURE_CONTENT_TYPE_NOSNIFF, 'referrer': s.SECURE_REFERRER_POLICY, 'csp': {k: list(v) for k, v in s.SECURE_CSP.items()}}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    import json

    facts = json.loads(result.stdout)
    assert facts["hsts"] >= 365 * 24 * 3600
    assert facts["proxy"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert facts["secure"] == [True, True] and facts["httponly"] is True and facts["samesite"] == ["Lax", "Lax"]
    assert facts["nosniff"] is True and facts["referrer"] == "same-origin"
    assert facts["csp"]["default-src"] == ["'self'"] and facts["csp"]["script-src"] == ["'self'"]
    assert facts["csp"]["frame-ancestors"] == ["'none'"]


@pytest.mark.services
def test_the_cache_is_the_real_redis(settings):
    from django.core.cache import caches

    if not settings.REDIS_URL:
        pytest.fail("This test needs REDIS_URL: run it with .ci/test")
    cache = caches.create_connection("default")
    cache.set("cache-test", {"a": 1})
    assert cache.get("cache-test") == {"a": 1}
    assert cache.add("cache-test", 2) is False and cache.delete("cache-test") is True
