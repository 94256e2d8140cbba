"""Virtual servers on the real Docker engine: real DinD containers, real inner daemons."""

import ipaddress

import pytest
from django.urls import reverse

from accounts.models import ActivityLog
from hosting import services
from hosting.activity import Action
from hosting.backends import docker
from hosting.benchmarks import inside
from hosting.models import Node, VirtualServer

from .conftest import TEST_APP_IMAGE, inner_client, inner_daemon_answers

pytestmark = [pytest.mark.django_db, pytest.mark.docker, pytest.mark.usefixtures("eager_tasks")]


def test_create_runs_a_limited_labelled_dind_with_a_working_inner_daemon(real_docker, as_alice, alice, committed, settings):
    with committed():
        as_alice.post(reverse("hosting:server_create"), {"name": "integration"})
    server = VirtualServer.objects.get()
    assert server.state == "running", server.last_error

    attrs = real_docker.api.inspect_container(f"cptest-dind-{server.pk}")
    assert attrs["Name"] == f"/cptest-dind-{server.pk}"
    assert attrs["Config"]["Hostname"] == f"server{server.pk}"
    assert attrs["State"]["Running"]
    host = attrs["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == 512 * 1024 * 1024
    assert host["NanoCpus"] == 1_000_000_000
    assert host["PidsLimit"] == 512
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert attrs["Config"]["Labels"]["controlpanel.server-id"] == str(server.pk)
    assert attrs["Config"]["Labels"]["controlpanel.owner-id"] == str(alice.pk)
    assert attrs["Config"]["Labels"]["controlpanel.instance"] == "controlpanel-test"
    assert "controlpanel-test-users" in attrs["NetworkSettings"]["Networks"]
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    # Rootless: the owner's home, with the inner daemon's data, is the server's own disk.
    assert mounts["/home/user"]["Type"] == "bind" and mounts["/home/user"]["Source"] == str(server.disk_dir)
    assert attrs["Config"]["User"] == f"{server.host_uid}:{server.host_uid}"
    assert host["CapDrop"] == ["ALL"] and not host["Privileged"]
    assert mounts["/controlpanel"]["Source"] == str(server.socket_dir)
    assert not host.get("PortBindings"), "no port of a virtual server is published on the host"
    # Its page lists what runs inside at once: the create waited for the inner daemon's first answer.
    assert server.inner_seen_at is not None and server.inner_failures == 0
    assert "Not listed yet" not in as_alice.get(reverse("hosting:server_detail", args=[server.pk])).content.decode()

    # The inner daemon answers over the socket and runs the test app image.
    inner_daemon_answers(server)
    inside.image_copy_to_inner(TEST_APP_IMAGE, str(server.socket_dir))
    inside.inner_container_run(str(server.socket_dir), TEST_APP_IMAGE, ["sleep", "300"], name="sleeper")
    inner = inner_client(server)
    assert [c.name for c in inner.containers.list()] == ["sleeper"]
    assert inner.info()["Driver"] == "overlay2"


def test_stop_start_restart_delete(real_docker, alice, committed):
    with committed():
        server = services.server_create(owner=alice, name="lifecycle")
    name = server.container_name

    with committed():
        services.server_stop(actor=alice, server=server)
    assert real_docker.containers.get(name).status == "exited"
    server.refresh_from_db()
    assert server.state == "exited"

    with committed():
        services.server_stop(actor=alice, server=server)  # already stopped: fine
    server.refresh_from_db()
    assert server.last_error == ""

    with committed():
        services.server_start(actor=alice, server=server)
    assert real_docker.containers.get(name).status == "running"

    started = real_docker.api.inspect_container(name)["State"]["StartedAt"]
    with committed():
        services.server_restart(actor=alice, server=server)
    assert real_docker.api.inspect_container(name)["State"]["StartedAt"] != started

    with committed():
        services.server_delete(actor=alice, server=server)
    server.refresh_from_db()
    assert server.deleted_at is not None
    assert not real_docker.containers.list(all=True, filters={"name": f"^/{name}$"})
    assert not real_docker.volumes.list(filters={"name": server.volume_name})
    assert not server.socket_dir.exists()

    with committed():
        newer = services.server_create(owner=alice, name="after")
    assert newer.pk > server.pk
    newer.refresh_from_db()
    assert newer.state == "running"


def test_delete_tolerates_a_container_already_gone(real_docker, alice, committed):
    with committed():
        server = services.server_create(owner=alice, name="gone")
    real_docker.containers.get(server.container_name).remove(force=True)
    with committed():
        services.server_delete(actor=alice, server=server)
    server.refresh_from_db()
    assert server.deleted_at and server.last_error == ""


def test_limits_changed_by_an_admin_reach_the_running_container(real_docker, admin, alice, committed):
    with committed():
        server = services.server_create(owner=alice, name="limits")
    with committed():
        services.server_set_limits(actor=admin, server=server, memory_mb=256, cpus=0.5, pids_limit=128)
    host = real_docker.api.inspect_container(server.container_name)["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["NanoCpus"], host["PidsLimit"]) == (
        256 * 1024 * 1024, 256 * 1024 * 1024, 500_000_000, 128)


def test_engine_unreachable_gives_a_readable_error_and_loses_nothing(real_docker, alice, admin, committed, settings):
    with committed():
        server = services.server_create(owner=alice, name="survivor")
    settings.DOCKER_HOST_URL = "unix:///nonexistent/docker.sock"

    with committed():
        services.server_stop(actor=alice, server=server)
    server.refresh_from_db()
    assert "Docker engine is not reachable" in server.last_error
    assert server.deleted_at is None and server.operation == ""

    with committed():
        failed = services.server_create(owner=alice, name="never")
    failed.refresh_from_db()
    assert failed.state == "failed" and "not reachable" in failed.last_error
    assert ActivityLog.objects.filter(action=Action.SERVER_FAILED).count() == 2

    with committed():
        services.server_set_limits(actor=admin, server=server, memory_mb=256, cpus=1, pids_limit=128)
    server.refresh_from_db()
    assert server.memory_mb == 256 and "not reachable" in server.last_error  # kept, and said

    # The engine comes back: the failed server is retried and runs; nothing was lost.
    settings.DOCKER_HOST_URL = "unix:///var/run/docker.sock"
    with committed():
        services.server_start(actor=alice, server=failed)
    failed.refresh_from_db()
    assert failed.state == "running", failed.last_error
    assert real_docker.containers.get(server.container_name).status == "running"


def test_failed_create_leaves_no_half_made_container(real_docker, alice, committed, settings):
    settings.SERVER_IMAGE = "controlpanel/no-such-image:missing"
    with committed():
        server = services.server_create(owner=alice, name="no image")
    server.refresh_from_db()
    assert server.state == "failed"
    assert "image" in server.last_error.lower()
    assert not real_docker.containers.list(all=True, filters={"name": f"^/{server.container_name}$"})
    assert not real_docker.volumes.list(filters={"name": server.volume_name})


def test_one_server_cannot_reach_anothers_inner_docker_api(real_docker, alice, bob, committed):
    with committed():
        a = services.server_create(owner=alice, name="a")
        b = services.server_create(owner=bob, name="b")
    inner_daemon_answers(a)
    inner_daemon_answers(b)
    b_ip = docker.container_info(docker.Engine.of(b.node), b.container_name).ip_address
    container_a = real_docker.containers.get(a.container_name)

    # Only A's own socket is mounted into A.
    exit_code, output = container_a.exec_run(["ls", "/controlpanel"])
    assert output.decode().split() == ["docker.sock"]
    exit_code, output = container_a.exec_run(["sh", "-c", f"ls {b.socket_dir} 2>&1"])
    assert exit_code != 0
    # B's daemon listens on no TCP port: nothing answers on 2375/2376.
    for port in (2375, 2376):
        exit_code, output = container_a.exec_run(["timeout", "5", "docker", "-H", f"tcp://{b_ip}:{port}", "version"])
        assert exit_code != 0
        assert b"Server:" not in output
    # A's own daemon answers over its socket, and sees only A's containers.
    exit_code, output = container_a.exec_run(["docker", "-H", "unix:///controlpanel/docker.sock", "info", "--format", "{{.Name}}"])
    assert exit_code == 0 and output.decode().strip() == f"server{a.pk}"


def test_a_foreign_container_with_the_same_name_is_never_adopted(real_docker, alice, committed, settings):
    with committed():
        server = services.server_create(owner=alice, name="mine")
    server.refresh_from_db()
    next_name = f"{settings.SERVER_CONTAINER_PREFIX}{server.pk + 1}"
    real_docker.containers.create(TEST_APP_IMAGE, ["sleep", "60"], name=next_name,
                                  labels={"controlpanel.instance": "controlpanel-test", "controlpanel.server-id": "someone else"})
    with committed():
        clash = services.server_create(owner=alice, name="clash")
    clash.refresh_from_db()
    assert clash.container_name == next_name
    assert clash.state != "running" and "does not belong to this server" in clash.last_error
    assert real_docker.containers.get(next_name).labels["controlpanel.server-id"] == "someone else"


def test_fifty_create_delete_cycles_leave_nothing_behind(real_docker, alice, committed, settings):
    def ours():
        label = "controlpanel.instance=controlpanel-test"
        return (
            len(real_docker.containers.list(all=True, filters={"label": label})),
            len(real_docker.volumes.list(filters={"label": label})),
            len(real_docker.networks.list(filters={"label": label})),
        )

    with committed():
        services.server_create(owner=alice, name="warm-up")  # makes the users' network once
    baseline = ours()
    for n in range(50):
        with committed():
            server = services.server_create(owner=alice, name=f"cycle {n}")
        server.refresh_from_db()
        assert server.state == "running", server.last_error
        with committed():
            services.server_delete(actor=alice, server=server)
    assert ours() == baseline
    warm_up = VirtualServer.objects.get(name="warm-up")
    assert sorted(p.name for p in settings.SERVER_SOCKET_ROOT.iterdir()) == [str(warm_up.pk), warm_up.identity_dir.name]


def test_no_host_bind_mounts_but_the_servers_own_socket_and_identity_folders(real_docker, alice, committed, settings):
    with committed():
        server = services.server_create(owner=alice, name="mounts")
    server.refresh_from_db()
    attrs = real_docker.api.inspect_container(server.container_name)
    binds = {m["Source"]: m["RW"] for m in attrs["Mounts"] if m["Type"] == "bind"}
    identity = server.identity_dir
    assert binds == {str(server.socket_dir): True, str(server.disk_dir): True,
                     str(identity): False, str(identity / "subuid"): False, str(identity / "subgid"): False}
    host = attrs["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"] > 0
    assert not host["Privileged"]
    assert "/var/run/docker.sock" not in str(attrs["Mounts"])


def test_two_first_creates_at_once_both_get_the_servers_network(real_docker, settings):
    """The review's race: two users' first servers at the same moment, and one failed with
    "Pool overlaps" (the network made twice)."""
    from concurrent.futures import ThreadPoolExecutor

    for _ in range(3):
        for network in real_docker.networks.list(names=[settings.SERVER_NETWORK]):
            network.remove()
        with ThreadPoolExecutor(2) as pool:
            engine = docker.Engine.of(Node.local())
            subnets = list(pool.map(lambda _: docker.network_ensure(engine, settings.SERVER_NETWORK), range(2)))
        assert subnets == [ipaddress.ip_network(settings.SERVER_NETWORK_SUBNET)] * 2
        assert len(real_docker.networks.list(names=[settings.SERVER_NETWORK])) == 1
