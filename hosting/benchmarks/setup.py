"""Panel processes for benchmarks to measure against: the gateway and the web server,
on free loopback ports, sharing this process's database and settings; and what
the benchmarks measure them with."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from accounts.models import User
from hosting.worker import reconcile
from hosting import services

ROOT = Path(__file__).resolve().parents[2]


def benchmark_owner(quota=100):
    owner, _ = User.objects.get_or_create(email="benchmark@localhost")
    owner.server_quota = quota
    owner.save(update_fields=["server_quota"])
    return owner


def running_server(owner, name):
    """A real virtual server of `owner`'s, made and started as the worker does."""
    server = services.server_create(owner=owner, name=name)
    reconcile.server_reconcile(server_id=server.pk)
    server.refresh_from_db()
    if server.state != server.State.RUNNING:
        raise CommandError(f"the server did not start: {server.last_error}")
    return server


def delete_server(owner, server):
    services.server_delete(actor=owner, server=server)
    reconcile.server_reconcile(server_id=server.pk)


def rss_kib(pid):
    return int(next(line.split()[1] for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:")))


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind, port, *, ssh_port=None, **env):
    """`kind` is "gateway" (with SSH on `ssh_port`, if given) or "web"; returns the process once its port answers."""
    command = {
        "gateway": [sys.executable, "manage.py", "gateway", "--bind", f"127.0.0.1:{port}",
                    "--ssh-bind", f"127.0.0.1:{ssh_port}" if ssh_port else ""],
        "web": [sys.executable, "-m", "gunicorn", "controlpanel.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
    }[kind]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={
        **os.environ, "ALLOWED_HOSTS": "127.0.0.1,localhost", "PANEL_ORIGINS": "http://127.0.0.1", "SECRET_KEY": settings.SECRET_KEY, **{k: str(v) for k, v in env.items()}})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise CommandError(f"the {kind} process did not start")


def stop(process):
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
