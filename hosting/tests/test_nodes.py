"""Nodes with Docker faked: placement by room, a node that goes away and comes back, a
machine joining with its token, removal. test_nodes_integration has real engines."""

import io
import tarfile
from datetime import timedelta
from urllib.parse import urlsplit
from decimal import Decimal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from hosting import services, tasks
from hosting.backends import certificates, docker
from hosting.models import ContainerSnapshot, Node, VirtualServer
from hosting.worker import monitor

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def credentials(settings, tmp_path):
    settings.NODE_CREDENTIALS_DIR = tmp_path / "node-credentials"
    settings.SERVER_QUOTA_DEFAULT = 50


def joined(name, memory_mb, **fields):
    """A node that has joined (its certificate signed), with `memory_mb` to promise."""
    return Node.objects.create(name=name, docker_url=f"tcp://192.0.2.{Node.objects.count() + 10}:2376", certificate="signed",
                               memory_mb=memory_mb, worker_seen_at=timezone.now(), **fields)


def test_new_servers_go_to_the_node_with_the_most_room(alice, fake_docker, committed, settings):
    settings.SERVER_DEFAULT_MEMORY_MB = 512
    Node.objects.create(name=settings.NODE_NAME, memory_mb=1024)
    joined("big", 4096), joined("small", 2048)
    joined("draining", 16384, status=Node.Status.DRAINING)
    Node.objects.filter(pk=joined("never-joined", 16384).pk).update(certificate="")
    Node.objects.filter(pk=joined("no-worker", 16384).pk).update(worker_seen_at=None)
    with committed():
        placed = [services.server_create(owner=alice, name=f"s{n}").node.name for n in range(9)]
    # The most room first; on a tie, the node with fewer servers.
    assert placed == ["big", "big", "big", "big", "small", "big", "small", "big", settings.NODE_NAME]
    promised = {n.name: n.promised_mb for n in Node.objects.with_promised()}
    assert promised == {"big": 3072, "small": 1024, settings.NODE_NAME: 512, "draining": None, "never-joined": None, "no-worker": None}


def test_overcommit_and_the_most_servers_bound_a_node(alice, fake_docker, committed, settings):
    settings.SERVER_DEFAULT_MEMORY_MB = 512
    Node.objects.create(name=settings.NODE_NAME, memory_mb=256)  # no room here
    joined("node2", 512, overcommit=Decimal("2.00"), max_servers=3)
    with committed():
        for n in range(2):  # 2 × 512 fits in 512 × 2
            assert services.server_create(owner=alice, name=f"s{n}").node.name == "node2"
    with pytest.raises(ValidationError, match="No node has room for a server of 512 MB"):
        services.server_create(owner=alice, name="one too many")
    assert VirtualServer.objects.count() == 2  # nothing made


def test_an_admin_may_pick_the_node_it_must_have_room(admin, fake_docker, committed, settings):
    settings.SERVER_DEFAULT_MEMORY_MB = 512
    Node.local()
    small = joined("small", 256)
    spacious = joined("spacious", 4096, status=Node.Status.DRAINING)
    with pytest.raises(ValidationError, match="small cannot take this server: it has 256 MB of memory left to promise"):
        services.server_create(owner=admin, name="here", node=small)
    with pytest.raises(ValidationError, match="spacious cannot take this server: it is draining"):
        services.server_create(owner=admin, name="here", node=spacious)
    Node.objects.filter(pk=spacious.pk).update(status=Node.Status.ACTIVE)
    with committed():
        assert services.server_create(owner=admin, name="here", node=spacious).node == spacious


def test_a_node_that_goes_away_is_offline_within_two_cycles_and_comes_back(alice, fake_docker, committed, settings):
    Node.local()
    node2 = joined("node2", 8192)
    with committed():
        server = services.server_create(owner=alice, name="away", node=node2)
    ContainerSnapshot.objects.create(server=server, docker_id="b" * 64, name="web", state="running", digest="x")
    monitor.run_cycle()
    server.refresh_from_db()
    assert server.state == "running"

    fake_docker.down.add(node2.docker_url)
    run = monitor.run_cycle()
    assert {"daemon": "node node2", "error": "The Docker engine is not reachable."} in run.failures
    server.refresh_from_db()
    assert server.state == "running"  # one failed read is not enough
    # The next cycle, a minute on: offline, its rows and snapshots kept.
    Node.objects.filter(pk=node2.pk).update(contacted_at=timezone.now() - timedelta(seconds=settings.MONITOR_INTERVAL * 2))
    monitor.run_cycle()
    server.refresh_from_db()
    assert server.state == "node_offline" and server.state.label == "Node offline"
    assert ContainerSnapshot.objects.filter(server=server).exists()
    for action in (services.server_stop, services.server_restart, services.server_start):
        with pytest.raises(ValidationError, match="The machine this server runs on is offline"):
            action(actor=alice, server=server)
    with committed():
        assert services.server_create(owner=alice, name="elsewhere").node.name == settings.NODE_NAME

    fake_docker.down.clear()
    monitor.run_cycle()
    server.refresh_from_db()
    assert server.state == "running"
    assert Node.objects.get(pk=node2.pk).facts["docker_version"] == "20.10.24"


def _csr(address="192.0.2.50"):
    key = ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil.example.org")]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("panel.example.org")]), critical=False)
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.services  # its worker's sign-ins: a PostgreSQL role (rolled back with the test) and a Redis user
def test_a_machine_joins_with_its_one_time_token(as_admin, admin, client, fake_docker, committed, settings):
    with committed():
        response = as_admin.post(reverse("hosting:admin_node_list"), {"name": "node2", "address": "192.0.2.50", "overcommit": "1"})
    node = Node.objects.get(name="node2")
    assert response.status_code == 302 and node.docker_url == "tcp://192.0.2.50:2376"
    page = as_admin.get(reverse("hosting:admin_node_detail", args=[node.pk])).content.decode()
    token = page.split("--token ")[1].split()[0]
    assert "--token" not in as_admin.get(reverse("hosting:admin_node_detail", args=[node.pk])).content.decode()  # shown once

    join = reverse("hosting:node_join")
    assert client.post(join, {"token": "guess", "csr": _csr()}).status_code == 403
    with committed():
        assert client.post(join, {"token": token, "csr": "not a request"}).status_code == 202
    assert "not a certificate request" in client.get(join, {"token": token}).json()["error"]
    with committed():
        assert client.post(join, {"token": token, "csr": _csr()}).status_code == 202
    answer = client.get(join, {"token": token}).json()
    assert answer["status"] == "signed"
    certificate = x509.load_pem_x509_certificate(answer["certificate"].encode())
    ca = x509.load_pem_x509_certificate(answer["ca"].encode())
    certificate.verify_directly_issued_by(ca)
    # For the address the admin gave, whatever names the request asked for.
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["192.0.2.50"] and not names.get_values_for_type(x509.DNSName)
    assert client.get(join, {"token": token}).status_code == 403  # used up
    # The panel's own certificate for it is the worker's, beside the CA's key; none of it is in the database.
    files = certificates.credentials("node2")
    assert files and open(files.ca).read() == answer["ca"]
    assert "PRIVATE" not in "".join(str(value) for value in Node.objects.filter(pk=node.pk).values().get().values())
    # Its worker's settings, handed over with the certificate and then kept no longer: sign-ins of its own, not the panel's.
    environment = answer["environment"]
    assert environment["NODE_NAME"] == "node2" and environment["REDIS_KEY_PREFIX"] == "node:node2:"
    assert "SECRET_KEY" not in environment and settings.SECRET_KEY not in str(environment)
    assert urlsplit(environment["DATABASE_URL"]).username == Node.objects.get(pk=node.pk).database_role != ""
    assert urlsplit(environment["REDIS_URL"]).username == "node-node2"
    assert Node.objects.get(pk=node.pk).worker_environment == {}
    with committed():
        services.node_remove(actor=admin, node=node)  # its Redis user goes (its role, with the test's transaction)


def test_a_node_with_servers_stays_and_an_empty_one_goes_with_its_certificates(admin, alice, fake_docker, committed):
    Node.local()
    node2 = joined("node2", 8192)
    certificates.node_ca_ensure("node2")
    with committed():
        server = services.server_create(owner=alice, name="there", node=node2)
    with pytest.raises(ValidationError, match="node2 still has 1 server: move or delete them first"):
        services.node_remove(actor=admin, node=node2)
    with committed():
        services.server_delete(actor=alice, server=server)
    with committed():
        services.node_remove(actor=admin, node=node2)
    assert not Node.objects.filter(name="node2").exists()
    assert certificates.credentials("node2") is None
    with pytest.raises(certificates.CertificateError, match="removed"):
        certificates.node_sign("node2", _csr(), address="192.0.2.50")
    with pytest.raises(docker.DockerError, match="no certificate"):
        docker.Engine(url="tcp://192.0.2.50:2376", subnet="10.0.0.0/24", uid_base=0).ssl_context()


def test_the_nodes_page_shows_each_node_its_state_and_its_promises(as_admin, alice, fake_docker, committed, settings):
    settings.SERVER_DEFAULT_MEMORY_MB = 512
    Node.local()
    node2 = joined("node2", 2048)
    Node.objects.create(name="node3", docker_url="tcp://192.0.2.99:2376")
    with committed():
        services.server_create(owner=alice, name="there", node=node2)
    page = as_admin.get(reverse("hosting:admin_node_list")).content.decode()
    assert "node2" in page and "Joining" in page and "512 MB of 2.0 GB" in page.replace("\xa0", " ")


def test_a_servers_page_says_where_its_domains_must_point(as_alice, alice, fake_docker, committed):
    Node.local()
    node2 = joined("node2", 8192, public_address="203.0.113.7")
    with committed():
        here = services.server_create(owner=alice, name="here", node=Node.local())
        there = services.server_create(owner=alice, name="there", node=node2)
    assert "DNS record (A or AAAA) at <span class=\"mono\">203.0.113.7</span>" in as_alice.get(reverse("hosting:server_detail", args=[there.pk])).content.decode()
    assert "<span class=\"mono\">testserver</span>" in as_alice.get(reverse("hosting:server_detail", args=[here.pk])).content.decode()


def test_an_admin_picks_the_node_on_the_page_a_user_cannot(as_admin, as_alice, admin, alice, fake_docker, committed, settings):
    local = Node.objects.create(name=settings.NODE_NAME, memory_mb=4096)
    node2 = joined("node2", 1024 * 1024)  # the most room: where a server goes unless told
    with committed():
        as_admin.post(reverse("hosting:server_create"), {"name": "mine", "node": local.pk})
        as_alice.post(reverse("hosting:server_create"), {"name": "hers", "node": local.pk})
    assert VirtualServer.objects.get(owner=admin).node == local
    assert VirtualServer.objects.get(owner=alice).node == node2  # a user's choice is not theirs to make
    assert 'name="node"' in as_admin.get(reverse("hosting:server_list")).content.decode()
    assert 'name="node"' not in as_alice.get(reverse("hosting:server_list")).content.decode()


def test_a_node_still_joining_is_not_read_and_never_shows_offline(as_admin, fake_docker, settings):
    Node.local()
    joining = Node.objects.create(name="node2", docker_url="tcp://192.0.2.60:2376",
                                  created_at=timezone.now() - timedelta(hours=1))
    fake_docker.down.add(joining.docker_url)
    for _ in range(3):
        run = monitor.run_cycle()
    assert run.failures == [] and not Node.objects.get(pk=joining.pk).is_offline
    assert "Joining" in as_admin.get(reverse("hosting:admin_node_list")).content.decode()


def test_an_admin_moves_a_server_only_where_it_can_go_and_its_owner_cannot(as_admin, as_alice, alice, fake_docker, committed, monkeypatch):
    Node.local()
    node2, draining = joined("node2", 8192), joined("draining", 8192, status=Node.Status.DRAINING)
    with committed():
        server = services.server_create(owner=alice, name="there", node=Node.local())
    sent = []
    monkeypatch.setattr(tasks.server_move, "delay", sent.append)  # the move itself needs real nodes: test_nodes_integration
    move = reverse("hosting:server_move", args=[server.pk])
    assert as_alice.post(move, {"node": node2.pk}).status_code in (403, 404)
    assert 'action="' + move + '"' in as_admin.get(reverse("hosting:server_detail", args=[server.pk])).content.decode()
    with committed():
        page = as_admin.post(move, {"node": draining.pk}, follow=True).content.decode()
    assert "draining" in page and not sent
    with committed():
        as_admin.post(move, {"node": node2.pk})
    server.refresh_from_db()
    assert (server.operation, server.moving_to, server.node, sent) == ("moving", node2, Node.local(), [server.pk])
    assert server.state == "moving"
    with pytest.raises(ValidationError, match="busy"):
        services.server_delete(actor=alice, server=server)


def test_a_moved_archive_keeps_its_files_under_new_owners():
    source, sink = io.BytesIO(), io.BytesIO()
    with tarfile.open(fileobj=source, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, uid, kind in (("user", 1000, tarfile.DIRTYPE), ("user/a.txt", 1005, tarfile.REGTYPE), ("user/b.txt", 7, tarfile.REGTYPE),
                                ("user/hard", 1005, tarfile.LNKTYPE), (f"user/{'long' * 40}", 1000 + 2**30, tarfile.REGTYPE)):
            member = tarfile.TarInfo(name)
            member.type, member.uid, member.gid = kind, uid, uid
            member.linkname = "user/a.txt" if kind == tarfile.LNKTYPE else ""
            member.size = 5 if kind == tarfile.REGTYPE else 0
            archive.addfile(member, io.BytesIO(b"hello") if kind == tarfile.REGTYPE else None)
    source.seek(0)
    docker._shifted(source, sink, "user", (1000 + 2**30, 100, 5000 + 2**30))  # past ustar's fields: in pax headers
    sink.seek(0)
    with tarfile.open(fileobj=sink) as archive:
        members = {m.name: (m.uid, m.linkname) for m in archive.getmembers()}
        assert archive.extractfile("a.txt").read() == b"hello"
    assert members == {"a.txt": (1005, ""), "b.txt": (7, ""), "hard": (1005, "a.txt"), "long" * 40: (5000 + 2**30, "")}
