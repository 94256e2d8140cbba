"""The walls around a virtual server, tried from inside as its hostile owner would.

An attacker shell (`docker exec <server> controlpanel-shell`, what the
terminal and SSH run) tries each attack of ATTACKS in the default (rootless)
isolation and in `capabilities`, the opt-in mode for trusted tenants (this VM
refuses --privileged, of which `capabilities` is all but one capability).
What each mode lets through is written in EXPECTED and in SECURITY.md's table.

These run on shared machines: no attack here changes the host. Kernel files
are opened for writing and closed unwritten; capabilities are read, not
used; block devices are looked for, not mounted; addresses are tried only
inside the server's own network namespace, with an address from TEST-NET-3.
"""

import io
import os
import tarfile

import pytest
import requests

from hosting.backends import docker
from hosting.services import domains
from hosting.worker import monitor
from hosting.models import ContainerSnapshot

from .conftest import TEST_APP_IMAGE, inner_daemon_answers, wait_until

pytestmark = [pytest.mark.django_db, pytest.mark.docker, pytest.mark.usefixtures("eager_tasks")]

CAP_SYS_MODULE, CAP_NET_ADMIN, CAP_NET_RAW = 16, 12, 13


def shell(container, script):
    """Run `script` in the owner's shell inside the server: (exit code, output)."""
    code, output = container.exec_run(["controlpanel-shell", "-c", script])
    return code, output.decode(errors="replace")


def tried(container, script):
    """Whether `script` succeeds from either place an owner can act in: their shell (in
    rootless mode, root in the daemon's namespaces) and the server's own first
    namespaces (the server's uid there), which their processes can reach too."""
    return shell(container, script)[0] == 0 or container.exec_run(["sh", "-c", script])[0] == 0


def host_view(real_docker, container):
    """(uid, effective capabilities, in the host's user namespace?) of every process of the server, read on the host."""
    host_userns = os.readlink("/proc/self/ns/user")
    rows = []
    for (pid,) in real_docker.api.top(container.id, ps_args="-eo pid")["Processes"]:
        try:
            status = dict(line.split(":\t", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":\t" in line)
            userns = os.readlink(f"/proc/{pid}/ns/user")
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone between the listing and the read
        rows.append((int(status["Uid"].split()[1]), int(status["CapEff"], 16), userns == host_userns))
    assert rows, "no process of the server could be read"
    return rows


def holds_on_host(real_docker, container, capability):
    return any(on_host and caps & (1 << capability) for _, caps, on_host in host_view(real_docker, container))


def _host_daemon_id(real_docker):
    return real_docker.info()["ID"]


ATTACKS = {
    "open the kernel's core_pattern for writing": lambda c, d: tried(c, "exec 3>>/proc/sys/kernel/core_pattern"),
    "open sysrq-trigger for writing": lambda c, d: tried(c, "[ -e /proc/sysrq-trigger ] && exec 3>>/proc/sysrq-trigger"),
    "load a kernel module (CAP_SYS_MODULE on the host)": lambda c, d: holds_on_host(d, c, CAP_SYS_MODULE),
    "run as root on the host": lambda c, d: any(uid == 0 for uid, _, on_host in host_view(d, c) if on_host),
    "hold any capability on the host": lambda c, d: any(caps for _, caps, on_host in host_view(d, c) if on_host),
    "find a block device to mount": lambda c, d: tried(c, "find /dev -type b | grep -q ."),
    "see the host's processes": lambda c, d: tried(c, "ps -eo args | grep -q '[p]ytest'"),
    "reach the host's Docker API": lambda c, d: shell(
        c, "for s in $(find / -xdev -type s 2>/dev/null); do curl -s --max-time 2 --unix-socket $s http://d/info; done"
    )[1].count(_host_daemon_id(d)) > 0,
    "change its address": lambda c, d: tried(c, "ip addr add 203.0.113.7/32 dev eth0"),
    "spoof a neighbour (CAP_NET_RAW or CAP_NET_ADMIN in its network)": lambda c, d: (
        holds_on_host(d, c, CAP_NET_RAW) or holds_on_host(d, c, CAP_NET_ADMIN)),
    "use a setuid program but newuidmap/newgidmap": lambda c, d: tried(
        c, "find / -xdev -type f -perm /6000 ! -path /usr/bin/newuidmap ! -path /usr/bin/newgidmap | grep -q ."),
}

# What gets through (True) in each mode; SECURITY.md has the same table.
EXPECTED = {
    "rootless": dict.fromkeys(ATTACKS, False),
    "capabilities": {
        **dict.fromkeys(ATTACKS, False),
        "open the kernel's core_pattern for writing": True,
        "load a kernel module (CAP_SYS_MODULE on the host)": True,
        "run as root on the host": True,
        "hold any capability on the host": True,
        "change its address": True,
        "spoof a neighbour (CAP_NET_RAW or CAP_NET_ADMIN in its network)": True,
    },
}


@pytest.mark.parametrize("mode", ["rootless", "capabilities"])
def test_attack_table(mode, make_server, real_docker, settings):
    settings.SERVER_ISOLATION = mode
    server = make_server(name=f"attacker ({mode})")
    assert server.state == "running", server.last_error
    inner_daemon_answers(server)
    container = real_docker.containers.get(server.container_name)
    got_through = {attack: bool(probe(container, real_docker)) for attack, probe in ATTACKS.items()}
    assert got_through == EXPECTED[mode]


def test_rootless_root_inside_is_an_unprivileged_uid_of_its_own(make_server, real_docker, bob):
    a = make_server(name="a")
    b = make_server(name="b", owner=bob)
    for server in (a, b):
        inner_daemon_answers(server)
        container = real_docker.containers.get(server.container_name)
        code, output = shell(container, "id -u; docker info --format '{{.SecurityOptions}}'")
        assert code == 0 and output.split()[0] == "0" and "rootless" in output  # root inside...
        host_uids = {uid for uid, _, _ in host_view(real_docker, container)}
        # ...an unprivileged uid on the host, from the server's own range
        assert host_uids and all(server.host_uid <= uid < server.host_uid + 65536 for uid in host_uids), host_uids
    assert a.host_uid != b.host_uid


def _replace_socket_with_link(container, target):
    code, output = shell(container, f"rm -f /controlpanel/docker.sock && ln -s {target} /controlpanel/docker.sock && ls -l /controlpanel")
    assert code == 0, output


@pytest.mark.parametrize("target", ["host", "neighbour"])
def test_a_swapped_socket_never_points_the_panel_elsewhere(target, make_server, real_docker, bob):
    victim = make_server(name="victim", owner=bob)
    attacker = make_server(name="attacker")
    for server in (victim, attacker):
        inner_daemon_answers(server)
    path = "/var/run/docker.sock" if target == "host" else docker.inner_socket_path(victim.socket_dir)
    _replace_socket_with_link(real_docker.containers.get(attacker.container_name), path)

    with pytest.raises(docker.DockerError, match="not a socket"):
        docker.inner_containers_json(str(attacker.socket_dir), timeout=5, max_bytes=2**20)
    run = monitor.run_cycle()
    assert any(f"server {attacker.pk}" == failure["daemon"] for failure in run.failures)
    assert not ContainerSnapshot.objects.filter(server=attacker).exists()  # nothing of the host's or bob's as its own


def _tar(files, uid):
    """Files as their owner would copy them in: theirs, in folders of theirs."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for folder in sorted({name.rsplit("/", 1)[0] for name in files}):
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, uid, uid
            archive.addfile(info)
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(text.encode()), 0o644, uid, uid
            archive.addfile(info, io.BytesIO(text.encode()))
    return buffer.getvalue()


def test_inside_the_owner_can_run_build_and_compose_and_publish_a_port_caddy_serves(running_server, real_docker, caddy, alice):
    server = running_server
    container = real_docker.containers.get(server.container_name)
    assert container.put_archive("/home/user", _tar({
        "build/Dockerfile": f"FROM {TEST_APP_IMAGE}\nRUN echo built-inside > /www/index.html\n",
        "app/compose.yaml": f"services:\n  web:\n    image: {TEST_APP_IMAGE}\n    command: httpd -f -p 8080 -h /www\n    ports: ['8081:8080']\n",
    }, server.host_uid))
    code, output = shell(container, "docker build -q -t built ~/build && docker run -d --name site -p 80:8080 built httpd -f -p 8080 -h /www")
    assert code == 0, output
    code, output = shell(container, "cd ~/app && docker compose up -d 2>&1")
    assert code == 0, output

    wait_until(lambda: _answers(f"http://{server.ip_address}:8081/"), what="the compose app's published port")
    domains.domain_add(actor=alice, server=server, name="inside.example.org", ssl=False)
    response = wait_until(lambda: _served(caddy, "inside.example.org"), what="the site through Caddy")
    assert "built-inside" in response.text


def _answers(url):
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def _served(caddy, host):
    response = caddy.get(host)
    return response if response.ok else None
