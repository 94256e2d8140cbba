"""The panel's own privileged hands, turned against it from inside a server.

Its owner is root in there and may change anything they can reach: files in
their home (links raced into place), rootlesskit's pid file, compose plugins,
the compose files themselves. Each attack here is one the review ran; none
may make the panel, the worker or the host's engine act as root on what the
tenant controls, or make one tenant's work hold up another's.

Shared machines: targets are files of the test's own server, never the host's.
"""

import io
import os
import tarfile
import time

import docker as docker_sdk
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from hosting.benchmarks import inside
from hosting.worker import monitor
from hosting import services
from hosting.models import App

from .conftest import TEST_APP_IMAGE, inner_daemon_answers, wait_until

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



# 11. Disk: every byte a tenant can write counts against its server's quota -------------------

def df_mb(container, path):
    code, output = owner_shell(container, f"df -m --output=size,used {path} | tail -n 1")
    assert code == 0, output
    return tuple(int(number) for number in output.split())


def test_a_disk_filled_to_its_quota_says_no_space_and_its_neighbour_and_the_panel_carry_on(
        make_server, real_docker, settings, bob, as_alice):
    settings.SERVER_DEFAULT_DISK_MB = 300
    filler, neighbour = make_server(name="filler"), make_server(name="neighbour", owner=bob)
    for server in (filler, neighbour):
        inner_daemon_answers(server)
    inside.image_copy_to_inner(TEST_APP_IMAGE, str(filler.socket_dir))
    container = real_docker.containers.get(filler.container_name)
    size, _ = df_mb(container, "~")
    assert 250 <= size <= 300, size  # df inside tells the quota, not the node's disk

    # The home, and an inner container's volume (the inner daemon's data is on the same disk).
    code, output = owner_shell(container, "dd if=/dev/zero of=~/fill bs=1M count=1000 2>&1")
    assert code != 0 and b"No space left on device" in output, output
    code, output = owner_shell(container, f"docker run --rm -v scratch:/data {TEST_APP_IMAGE} "
                                          "sh -c 'cat /dev/zero > /data/more' 2>&1")
    assert code != 0 and b"No space left on device" in output, output
    # The socket folder (a tmpfs of 1 MiB), written from the server's first namespaces.
    code, output = container.exec_run(["sh", "-c", "dd if=/dev/zero of=/controlpanel/fill bs=1M count=10 2>&1"])
    assert code != 0 and b"No space left on device" in output, output
    # The node's disk holds no more of it than the quota: its image file is sparse and capped.
    assert os.stat(filler.disk_image).st_blocks * 512 <= 300 * 1024 * 1024

    # The neighbour writes as before; the panel reads the disk at once and says it is full.
    assert owner_shell(real_docker.containers.get(neighbour.container_name), "echo fine > ~/note && cat ~/note").output == b"fine\n"
    started = time.monotonic()
    monitor.run_cycle()
    filler.refresh_from_db()
    assert filler.disk_full and filler.disk_used_mb >= 250, (filler.disk_used_mb, df_mb(container, "~"), time.monotonic() - started)
    page = as_alice.get(reverse("hosting:server_detail", args=[filler.pk])).content.decode()
    assert "disk is full" in page and "No space left on device" in page

    # Freed inside, it is no longer full at the next cycle.
    owner_shell(container, "rm -f ~/fill && docker volume rm -f scratch")
    monitor.run_cycle()
    filler.refresh_from_db()
    assert not filler.disk_full


def test_an_admin_grows_a_disk_within_the_users_total_and_a_restart_applies_it(make_server, real_docker, settings, admin, alice):
    settings.SERVER_DEFAULT_DISK_MB = 300
    alice.disk_quota_mb = 800
    alice.save()
    server = make_server()
    inner_daemon_answers(server)
    container = real_docker.containers.get(server.container_name)
    assert owner_shell(container, "echo kept > ~/file").exit_code == 0
    with pytest.raises(ValidationError, match="800 MB of disk in all"):
        services.server_create(owner=alice, name="second")  # 300 + 300 fits; ...
        services.server_create(owner=alice, name="third")  # ... 900 does not
    limits = {"memory_mb": server.memory_mb, "cpus": server.cpus, "pids_limit": server.pids_limit}
    with pytest.raises(ValidationError, match="800 MB of disk in all"):
        services.server_set_limits(actor=admin, server=server, disk_mb=600, **limits)
    services.server_set_limits(actor=admin, server=server, disk_mb=500, **limits)
    services.server_restart(actor=admin, server=server)
    server.refresh_from_db()
    assert server.state == "running", server.last_error
    inner_daemon_answers(server)
    container = real_docker.containers.get(server.container_name)
    assert 450 <= df_mb(container, "~")[0] <= 500
    assert owner_shell(container, "cat ~/file").output == b"kept\n"
