"""Three real nodes (benchmarks.nodes: Docker engines in network namespaces this module makes),
reached over mutual TLS with the certificates the panel makes for them."""

import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import docker as docker_sdk
import pytest
import redis
import requests
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from accounts import services as account_services
from hosting import services, tasks
from hosting.backends import certificates, docker
from hosting.benchmarks import inside
from hosting.benchmarks.inside import TEST_APP_IMAGE
from hosting.benchmarks.nodes import ExtraNode
from hosting.models import UIDS_PER_SERVER, App, ContainerSnapshot, Node, VirtualServer
from hosting.worker import monitor, moves
from hosting.worker import nodes as node_worker_side

from .conftest import ROOT, panel_env, unmount_all_below, wait_until
from .test_ssh import Ssh
from .test_terminal import shell_for
from .test_workloads import TICKER, TWO_SERVICES, deployed, log_stream, logged_in, read_lines

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def machines(docker_engine, tmp_path_factory):
    """Three machines that have joined: each node's CA and the panel's certificate made
    (certificates, as the worker makes them), each engine started with its signed certificate."""
    with override_settings(NODE_CREDENTIALS_DIR=tmp_path_factory.mktemp("node-credentials")):
        nodes = [ExtraNode(index) for index in (1, 2, 3)]
        try:
            for node in nodes:
                node.make_network()
                ca = certificates.node_ca_ensure(f"node{node.index}")
                node.install(ca, certificates.node_sign(f"node{node.index}", node.csr, address=node.address))
                node.start()
            for node in nodes:
                node.wait(docker.Engine(url=node.url, subnet="10.0.0.0/24", uid_base=0, tls=certificates.credentials(f"node{node.index}")))
            image = b"".join(docker_sdk.from_env().images.get(TEST_APP_IMAGE).save(named=True))
            nodes[1].local_client().images.load(image)  # for a stand-in of a server's container
            yield nodes
        finally:
            for node in nodes:
                node.remove()


@pytest.fixture
def nodes(machines):
    Node.local()
    # Their workers (the next step of issue 26) report as they will: placement counts on them.
    return [Node.objects.create(name=f"node{m.index}", docker_url=m.url, certificate="signed", memory_mb=4096,
                                worker_seen_at=timezone.now()) for m in machines]


def test_only_the_panel_drives_a_nodes_engine_and_one_cycle_reads_them_all(machines, nodes):
    run = monitor.run_cycle()
    assert run.daemons_failed == 0, run.failures
    for node in Node.objects.exclude(docker_url=""):
        assert node.facts["docker_version"] and node.contacted_at and not node.is_offline
    # Nobody else: not in plain TCP, not over TLS without a certificate, not with another node's.
    address = machines[1].address
    plain = requests.get(f"http://{address}:2376/version", timeout=5)
    assert plain.status_code == 400 and "HTTPS" in plain.text and "ApiVersion" not in plain.text
    node2_ca = certificates.credentials("node2").ca
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{address}:2376/version", verify=node2_ca, timeout=5)
    node1 = certificates.credentials("node1")
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(f"https://{address}:2376/version", verify=node2_ca, cert=(node1.cert, node1.key), timeout=5)
    # The node's own certificate is for its address only: the panel checks it.
    context = ssl.create_default_context(cafile=node2_ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(socket.create_connection((address, 2376), timeout=5), server_hostname="10.249.250.250")


def test_a_stopped_engine_is_offline_within_two_cycles_and_everything_resumes(machines, nodes, alice, settings):
    machine, node2 = machines[1], nodes[1]
    server = VirtualServer.objects.create(owner=alice, node=node2, name="there", memory_mb=512, cpus=1, pids_limit=64, slot=1)
    # A stand-in for its container (its lifecycle on other nodes is the node worker's, next): the monitor reads its state.
    machine.local_client().containers.run(TEST_APP_IMAGE, ["sleep", "600"], name=server.container_name, detach=True,
                                          restart_policy={"Name": "unless-stopped"})  # as a server's container has
    monitor.run_cycle()
    server.refresh_from_db()
    assert server.state == "running"

    machine.stop()
    monitor.run_cycle()
    server.refresh_from_db()
    assert server.state == "running"  # one cycle is not enough
    Node.objects.filter(pk=node2.pk).update(contacted_at=timezone.now() - timedelta(seconds=settings.MONITOR_INTERVAL * 2))
    monitor.run_cycle()
    server.refresh_from_db()
    assert server.state == "node_offline" and Node.objects.get(pk=node2.pk).is_offline
    with pytest.raises(Exception, match="offline"):
        services.server_stop(actor=alice, server=server)
    with transaction.atomic():
        assert {services.nodes.node_place(memory_mb=512).name for _ in range(6)} <= {settings.NODE_NAME, "node1", "node3"}

    machine.start()
    machine.wait(docker.Engine.of(node2))
    monitor.run_cycle()
    server.refresh_from_db()
    assert server.state == "running" and not Node.objects.get(pk=node2.pk).is_offline


def test_a_removed_nodes_certificates_are_refused(machines, nodes, admin, eager_tasks, tmp_path):
    node3 = nodes[2]
    docker.engine_ping(docker.Engine.of(node3))
    folder = Path(certificates.credentials("node3").ca).parent
    kept = shutil.copytree(folder, tmp_path / "node3")  # what node3's engine trusts, for the tests after this one
    services.node_remove(actor=admin, node=node3)  # the worker forgets its certificates (eager here)
    with pytest.raises(docker.DockerError, match="no certificate"):
        docker.engine_ping(docker.Engine.of(Node(name="node3", docker_url=machines[2].url)))
    # Added again, it has a new CA: the machine's old certificate is no longer the one the panel trusts.
    certificates.node_ca_ensure("node3")
    with pytest.raises(docker.DockerError, match="could not prove who they are"):
        docker.engine_ping(docker.Engine.of(Node(name="node3", docker_url=machines[2].url)))
    shutil.rmtree(folder)
    shutil.copytree(kept, folder)


def _through(address, host):
    try:
        return requests.get(f"http://{address}/", headers={"Host": host}, timeout=5).text
    except requests.RequestException:
        return ""


@pytest.fixture
def node_workers(machines, nodes, real_docker, settings):
    """start(i): node i's own worker, as deploy/node runs it on that machine (its sign-ins made
    as the panel's worker makes them when the node joins, after real_docker: the settings it
    shares are the test's): its node's name, its engine's local socket, its own folders for
    the servers' disks and sockets, its Caddy, no certificate for any engine, a secret key of
    its own. The server image is on the node (install builds it)."""
    image = []
    started = []

    def start(index):
        machine, node = machines[index], nodes[index]
        access = node_worker_side.worker_access_make(node)
        Node.objects.filter(pk=node.pk).update(**access)
        image or image.append(b"".join(real_docker.images.get(settings.SERVER_IMAGE).save(named=True)))
        machine.local_client().images.load(image[0])
        folders = [tempfile.mkdtemp(prefix="cpn-sockets-"), tempfile.mkdtemp(prefix="cpn-disks-")]
        env = panel_env(settings, **access["worker_environment"], **machine.start_caddy(), SECRET_KEY=secrets.token_urlsafe(50),
                        DOCKER_HOST_URL=f"unix://{machine.socket}", SERVER_SOCKET_ROOT=folders[0], SERVER_DISK_ROOT=folders[1],
                        NODE_CREDENTIALS_DIR=folders[0] + "/none")
        redis.Redis.from_url(settings.REDIS_URL).delete(node.queue, node.tenant_queue)  # leftovers of earlier runs
        worker = subprocess.Popen([sys.executable, "manage.py", "node_worker", "--pool", "solo"], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        worker.socket_root, worker.disk_root = folders  # the servers' folders on "that machine" (this one, in the test)
        started.append((worker, folders, node, access["database_role"], machine))
        return worker

    yield start
    refused = []
    for worker, folders, node, role, machine in started:
        if worker.poll() is None:
            worker.terminate()
        output = worker.communicate(timeout=30)[0]
        print(output)  # shown when the test fails
        refused += [line for line in output.splitlines() if "raised unexpected" in line]
        # The servers the test left on that machine go with it (the next test's may take their slots and addresses).
        for container in machine.local_client().containers.list(all=True, filters={"name": settings.SERVER_CONTAINER_PREFIX}):
            container.remove(force=True)
        for folder in folders:
            unmount_all_below(folder)
            shutil.rmtree(folder, ignore_errors=True)
        node_worker_side.node_forget(name=f"{node.name}-none", database_role=role, broker_user=node.broker_user)
    assert not refused, refused  # its sign-ins let a node's worker do all of its work (a task that fails on a privilege shows here)


@pytest.fixture
def node_worker(node_workers):
    return node_workers(1)


def test_a_nodes_own_worker_runs_its_servers_and_the_panel_reaches_them_over_tls(machines, nodes, node_worker, alice, admin, settings,
                                                                                gateway):
    machine, node2 = machines[1], nodes[1]
    server = services.server_create(owner=alice, name="on node2", node=node2)  # commits: the work goes to node2's queue

    def settled():
        server.refresh_from_db()
        return not server.operation and server

    wait_until(settled, timeout=120, what="node2's worker to create the server")
    assert server.state == "running", server.last_error
    assert machine.local_client().containers.get(server.container_name).status == "running"
    assert not docker_sdk.from_env().containers.list(all=True, filters={"name": server.container_name})  # not on the panel's host
    # The panel reaches it the way terminals and ssh do: an exec over mutual TLS, as the server's owner.
    code, output = docker.container_exec(docker.Engine.of(node2), server.container_name, ["controlpanel-shell", "-c", "id -u; hostname"])
    assert code == 0 and output.split() == ["0", server.hostname]
    # A browser terminal through the gateway, which holds the panel's certificates too: the server's own daemon answers.
    started = gateway(NODE_CREDENTIALS_DIR=str(settings.NODE_CREDENTIALS_DIR))
    shell = shell_for(started, server, alice)
    shell.type("id -u; docker info --format 'daemon={{.Name}}'\r")
    shell.expect("daemon=" + server.hostname, timeout=60)
    shell.ws.close()
    # A container's log: `docker logs` in the server over the engine (its socket is on the node), stdout and stderr apart.
    socket_dir = f"{node_worker.socket_root}/{server.pk}"
    inside.image_copy_to_inner(TEST_APP_IMAGE, socket_dir)
    docker_id = inside.inner_container_run(socket_dir, TEST_APP_IMAGE, ["sh", "-c", TICKER], name="ticker")
    container = ContainerSnapshot.objects.create(server=server, docker_id=docker_id, name="ticker", state="running", digest="x")
    ws = log_stream(started, container, logged_in(alice).cookies["sessionid"].value)
    lines, _ = read_lines(ws, "tick-5", timeout=60)
    assert {text: stream for stream, _, text in lines if text in ("first-line", "on-stderr")} == {"first-line": "out", "on-stderr": "err"}
    ws.close()
    # An app, deployed by node2's worker (its tenants' queue), and a domain on it, served by node2's own Caddy at
    # node2's address (its worker gives it the configuration).
    app = services.app_create(actor=alice, server=server, name="site", compose_file=TWO_SERVICES)
    wait_until(lambda: deployed(app), timeout=120, what="node2's worker to deploy the app")
    assert (app.status, app.deployments.first().result) == ("running", "succeeded"), app.deployments.first().output
    services.domain_add(actor=admin, server=server, name="site.node2.test", port=8081, ssl=False)  # commits: node2's worker applies it
    wait_until(lambda: "version one" in _through(machine.address, "site.node2.test"), timeout=60, what="node2's Caddy to serve the domain")
    assert "No site is configured" in _through(machine.address, "elsewhere.test")
    services.app_remove(actor=alice, app=app)
    wait_until(lambda: not App.objects.filter(pk=app.pk).exists(), timeout=120, what="node2's worker to remove the app, with its history")
    engine = docker.Engine.of(node2)
    wait_until(lambda: not docker.container_exec(engine, server.container_name, ["controlpanel-shell", "-c", "pgrep -f '[c]ontrolpanel-logs-' || true"])[1].strip(),
               what="the page's `docker logs` to end with the page")
    # The node's worker runs its node's monitor cycle, and says it is there.
    seen = Node.objects.get(pk=node2.pk).worker_seen_at
    tasks.on_node(tasks.monitor_cycle, node2)
    wait_until(lambda: Node.objects.get(pk=node2.pk).worker_seen_at > seen, what="node2's cycle")

    services.server_stop(actor=alice, server=server)
    wait_until(settled, timeout=60, what="node2's worker to stop the server")
    assert server.state == "exited"
    services.server_delete(actor=alice, server=server)
    wait_until(lambda: VirtualServer.objects.get(pk=server.pk).deleted_at, timeout=60, what="the server's removal")
    assert not machine.local_client().containers.list(all=True, filters={"name": server.container_name})

    # Its worker gone: offline within two cycles, though its engine still answers.
    node_worker.terminate()
    node_worker.wait(30)
    Node.objects.filter(pk=node2.pk).update(worker_seen_at=timezone.now() - timedelta(seconds=settings.MONITOR_INTERVAL * 2))
    monitor.run_cycle()
    assert Node.objects.get(pk=node2.pk).is_offline


def test_a_server_moves_to_another_node_with_its_files_and_containers_and_a_broken_move_leaves_it_where_it_was(
        machines, nodes, node_workers, alice, admin, settings):
    """node2 → node1, with a uid base of its own (the files' owners move to the new slot's uids). The panel's
    worker's part runs here, in the test (moves.server_move); the nodes' parts in their own workers."""
    settings.SERVER_MOVE_READY_SECONDS = 30
    node2, node1 = nodes[1], nodes[0]
    Node.objects.filter(pk=node1.pk).update(uid_base=settings.SERVER_UID_BASE + 50 * UIDS_PER_SERVER)
    workers = [node_workers(1), node_workers(0)]
    server = services.server_create(owner=alice, name="mover", node=node2)

    def settled():
        server.refresh_from_db()
        return not server.operation and server

    def shell(node, command):
        return docker.container_exec(docker.Engine.of(node), server.container_name, ["controlpanel-shell", "-c", command])[1]

    wait_until(settled, timeout=120, what="node2's worker to create the server")
    assert server.state == "running", server.last_error
    socket_dir = f"{workers[0].socket_root}/{server.pk}"
    inside.inner_wait(socket_dir)
    inside.image_copy_to_inner(TEST_APP_IMAGE, socket_dir)
    inside.inner_container_run(socket_dir, TEST_APP_IMAGE, ["sleep", "600"], name="kept-container")
    shell(node2, "echo kept > ~/kept.txt")

    # Broken half way: node1's engine is away when its part is due. The server runs on node2 again, saying why.
    machines[0].stop()
    services.server_move(actor=admin, server=server, node=Node.objects.get(pk=node1.pk))
    moves.server_move(server_id=server.pk)
    server.refresh_from_db()
    assert (server.node_id, server.operation, server.state) == (node2.pk, "", "running")
    assert "Moving to node1 failed" in server.last_error and "still on node2" in server.last_error
    assert shell(node2, "cat ~/kept.txt").strip() == "kept"

    machines[0].start()
    machines[0].wait(docker.Engine.of(node1))
    services.server_move(actor=admin, server=server, node=Node.objects.get(pk=node1.pk))
    moves.server_move(server_id=server.pk)
    wait_until(settled, timeout=120, what="node1's worker to start the moved server")
    assert (server.node_id, server.state) == (node1.pk, "running"), server.last_error
    assert server.host_uid == settings.SERVER_UID_BASE + 50 * UIDS_PER_SERVER + server.slot * UIDS_PER_SERVER
    assert shell(node1, "cat ~/kept.txt; stat -c %u ~/kept.txt").split() == ["kept", "0"]  # root's there, as before
    assert "kept-container" in wait_until(lambda: "kept-container" in (names := shell(node1, "docker ps -a --format '{{.Names}}'")) and names,
                                          timeout=60, what="the inner daemon on node1")
    # node2 keeps nothing of it.
    wait_until(lambda: not machines[1].local_client().containers.list(all=True, filters={"name": server.container_name}),
               what="node2's worker to remove what is left there")
    redis.Redis.from_url(settings.REDIS_URL).delete("celery")  # the moves' messages for a panel worker: run here instead


def test_placement_spreads_servers_over_the_nodes_and_ssh_scp_and_sftp_work_on_each(machines, nodes, node_workers, alice, settings,
                                                                                   gateway, keys, tmp_path):
    """The panel's own host drained, three nodes with their workers: a server on each, by room. On each, OpenSSH's
    client through the gateway, which reaches the node's engine over mutual TLS: a command's input ends (Docker takes
    no half-close over TLS: the input goes in frames, docker.py), scp both ways, sftp, and a command ends while the
    client's input is still open."""
    Node.objects.filter(pk=Node.local().pk).update(status=Node.Status.DRAINING)
    for index in range(3):
        node_workers(index)
    servers = [services.server_create(owner=alice, name=f"spread {index}") for index in range(3)]
    assert [server.node.name for server in servers] == ["node1", "node2", "node3"]  # each time, the one with the most room

    def settled(server):
        server.refresh_from_db()
        return not server.operation

    for server in servers:
        wait_until(lambda: settled(server), timeout=120, what=f"{server.node.name}'s worker to create the server")
        assert server.state == "running", server.last_error
    key = keys("alice")
    account_services.ssh_key_add(user=alice, name="laptop", public_key=key.with_suffix(".pub").read_text())
    started = gateway(NODE_CREDENTIALS_DIR=str(settings.NODE_CREDENTIALS_DIR))
    upload = tmp_path / "upload.bin"
    upload.write_bytes(secrets.token_bytes(3 * 2**20))
    for server in servers:
        ssh = Ssh(started, key, server.hostname, tmp_path)
        result = ssh.run("cat > piped.txt && wc -c < piped.txt && hostname", stdin=b"x" * 200_000)
        assert result.stdout.split() == [b"200000", server.hostname.encode()], result.stderr
        assert ssh.scp(str(upload), f"{server.hostname}@127.0.0.1:upload.bin").returncode == 0
        back = tmp_path / f"back-{server.pk}.bin"
        assert ssh.scp(f"{server.hostname}@127.0.0.1:upload.bin", str(back)).returncode == 0
        assert back.read_bytes() == upload.read_bytes()
        result = ssh.sftp("put " + str(upload) + " via-sftp.bin\nls\n")
        assert result.returncode == 0 and b"via-sftp.bin" in result.stdout, result.stderr
        held = subprocess.Popen(["ssh", *ssh.options(), f"{server.hostname}@127.0.0.1", "exit 4"], stdin=subprocess.PIPE)
        assert held.wait(timeout=30) == 4  # its input never ended
        held.stdin.close()
