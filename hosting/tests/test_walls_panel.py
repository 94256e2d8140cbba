"""The panel's own privileged hands, turned against it from inside a server.

Its owner is root in there and may change anything they can reach: files in
their home (links raced into place), rootlesskit's pid file, compose plugins,
the compose files themselves. Each attack here is one the review ran; none
may make the panel, the worker or the host's engine act as root on what the
tenant controls, or make one tenant's work hold up another's.

Shared machines: targets are files of the test's own server, never the host's.
"""

import io
import tarfile
import time

import docker as docker_sdk
import pytest
from django.conf import settings

from hosting import services, workloads
from hosting.models import App

from .conftest import TEST_APP_IMAGE, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker, pytest.mark.usefixtures("eager_tasks")]

APP = f"services:\n  web:\n    image: {TEST_APP_IMAGE}\n    command: [\"sleep\", \"3600\"]\n"


def owner_shell(container, script, **options):
    """The owner's shell (root in their daemon's namespaces), as the terminal and SSH run it."""
    return container.exec_run(["controlpanel-shell", "-c", script], **options)


def root_file(container, path):
    """A file of the server's root filesystem, read by the host's engine."""
    stream, _ = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        return archive.extractfile(archive.next()).read()


def finished(app):
    app.refresh_from_db()
    return not app.is_busy


# 1. Files go in as the tenant, never as root ------------------------------------------

DEPLOYS = 12


def test_a_deploy_never_writes_through_a_link_the_owner_races_into_place(running_server, alice, real_docker):
    """The review's attack: a loop that keeps putting a link where the deploy writes
    its file, pointing at a root-owned file of the server's root filesystem. The
    engine's root extraction followed it within three deploys; here DEPLOYS deploys
    run against the loop and the file is untouched."""
    container = real_docker.containers.get(running_server.container_name)
    target = "/etc/debian_version"
    before = root_file(container, target)
    # Two tight loops (perl is in every Debian), each renaming a fresh link into place, bounded in time.
    racer = ("mkdir -p ~/apps/race && cd ~/apps/race && exec perl -e '$end = time + 90; "
             f"while (time < $end && ! -e \"$ENV{{HOME}}/stop-racing\") {{ symlink(\"{target}\", \".l$$\"); "
             "rename(\".l$$\", \"compose.next.yaml\") }'")
    for _ in range(2):
        owner_shell(container, racer, detach=True)
    app = services.app_create(actor=alice, server=running_server, name="race", compose_file=APP)
    for round in range(DEPLOYS):
        wait_until(lambda: finished(app), timeout=60, what=f"deploy {round + 1}")
        assert root_file(container, target) == before, f"deploy {round + 1} wrote through the link"
        if round < DEPLOYS - 1:
            services.app_deploy(actor=alice, app=app, compose_file=APP + f"# deploy {round + 2}\n")

    owner_shell(container, "touch ~/stop-racing && sleep 0.5 && rm -f ~/apps/race/compose.next.yaml ~/apps/race/compose.yaml")
    services.app_deploy(actor=alice, app=app, compose_file=APP)
    wait_until(lambda: finished(app), timeout=60, what="the deploy after the loop")
    assert app.status == App.Status.RUNNING, app.deployments.first().output
    # What the deploy wrote belongs to the server's own uid on the host: its root inside, nobody outside.
    code, output = container.exec_run(["stat", "-c", "%u", "/home/user/apps/race/compose.yaml"])
    assert code == 0 and int(output) == running_server.host_uid


# 2. The namespaces a shell enters come from what the tenant cannot change ------------

@pytest.mark.parametrize("forged", ["999999", "1"])
def test_a_forged_pid_file_never_puts_a_shell_outside_the_servers_user_namespace(forged, running_server, real_docker):
    """rootlesskit's child_pid is the tenant's file: pointed at a dead pid (the old
    shell then ran in the outer namespaces) or at PID 1 (the outer namespaces
    themselves), the next shell must still be root in the daemon's user namespace."""
    container = real_docker.containers.get(running_server.container_name)
    pid_file = "$XDG_RUNTIME_DIR/dockerd-rootless/child_pid"
    code, output = container.exec_run(["sh", "-c", f'chmod u+w "$(dirname {pid_file})" && rm -f {pid_file} && echo {forged} > {pid_file} && cat {pid_file}'])
    assert code == 0 and output.decode().strip() == forged, output
    outer = container.exec_run(["readlink", "/proc/1/ns/user"]).output.decode().strip()
    code, output = owner_shell(container, "id -u; readlink /proc/self/ns/user; docker info --format '{{.SecurityOptions}}'")
    uid, userns, options = output.decode().splitlines()[:3]
    assert code == 0 and uid == "0" and userns != outer and "rootless" in options, output


# 3. Defence in depth: a read-only root, read-only accounts ----------------------------

def test_the_root_filesystem_and_the_accounts_are_read_only_even_to_the_engines_root(running_server, real_docker):
    """Should another slip let root write somewhere in a server, nothing that a setuid
    program or the image's scripts trust can change: the engine refuses to extract
    into the root filesystem, and root in the container cannot write it either."""
    container = real_docker.containers.get(running_server.container_name)
    assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("ld.so.preload")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"/x\n\n"))
    with pytest.raises(docker_sdk.errors.APIError, match="read-only"):
        container.put_archive("/etc", archive.getvalue())
    for path in ("/etc/ld.so.preload", "/etc/subuid", "/etc/controlpanel/passwd", "/usr/bin/newuidmap"):
        code, output = container.exec_run(["sh", "-c", f"echo x >> {path}"], user="0")
        assert code != 0 and b"Read-only file system" in output, (path, output)
    subuid = root_file(container, "/etc/subuid").decode()
    assert subuid == f"user:{running_server.host_uid + 1}:65535\n"
    # What stays writable is memory, bounded, and the volume (the home).
    code, output = container.exec_run(["df", "--output=target,size", "-k", "/tmp", "/run"])
    sizes = dict(line.split() for line in output.decode().splitlines()[1:])
    assert sizes == {"/tmp": str(256 * 1024), "/run": str(16 * 1024)}, output
