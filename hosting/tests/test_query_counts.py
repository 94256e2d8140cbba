"""Page query counts do not grow with the data.

A list whose first page holds everything is one query (no COUNT); past one
page it is one more, and that is all, however long the list grows.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import ActivityLog, User
from hosting.models import ContainerSnapshot, Domain, Node, VirtualServer

pytestmark = pytest.mark.django_db


def grow(owner, n):
    node = Node.local()
    users = User.objects.bulk_create(User(email=f"u{n}-{k}@example.org", password="!") for k in range(n))
    servers = VirtualServer.objects.bulk_create(
        VirtualServer(owner=owner if k % 2 else users[k], node=node, name=f"s{n}-{k}", observed_state="running",
                      memory_mb=512, cpus=1, pids_limit=128)
        for k in range(n)
    )
    ContainerSnapshot.objects.bulk_create(ContainerSnapshot(server=s, docker_id=f"{s.pk:032x}{k:032x}", digest="x") for s in servers for k in range(5))
    Domain.objects.bulk_create(Domain(name=f"d{s.pk}.example.org", server=s) for s in servers)
    ActivityLog.objects.bulk_create(ActivityLog(user=owner, email=owner.email, action="login", message="m") for _ in range(n * 5))
    return servers


def queries(client, url):
    client.get(url)  # the first request may write last_seen
    with CaptureQueriesContext(connection) as context:
        assert client.get(url).status_code == 200
    return len(context.captured_queries)


@pytest.mark.parametrize("name", [
    "hosting:admin_dashboard", "hosting:admin_server_list", "accounts:user_list", "accounts:activity_list",
    "hosting:admin_domain_list", "hosting:admin_host", "hosting:server_list",
])
def test_page_queries_stay_flat(name, admin, as_admin, alice, as_alice):
    client = as_admin if name.split(":")[1].startswith(("admin", "user_list", "activity")) else as_alice
    grow(alice, 3)
    one_page = queries(client, reverse(name))
    grow(alice, 60)
    pages = queries(client, reverse(name))
    grow(alice, 120)
    assert queries(client, reverse(name)) == pages
    assert one_page <= pages <= one_page + 1


def test_server_detail_queries_stay_flat(alice, as_alice):
    first = grow(alice, 2)[1]
    url = reverse("hosting:server_detail", args=[first.pk])
    one_page = queries(as_alice, url)
    ContainerSnapshot.objects.bulk_create(ContainerSnapshot(server=first, docker_id=f"x{k:063x}", digest="x") for k in range(100))
    Domain.objects.bulk_create(Domain(name=f"more{k}.example.org", server=first) for k in range(8))
    pages = queries(as_alice, url)
    ContainerSnapshot.objects.bulk_create(ContainerSnapshot(server=first, docker_id=f"y{k:063x}", digest="x") for k in range(200))
    assert queries(as_alice, url) == pages == one_page + 1


def test_the_raw_count_subqueries_name_the_real_tables():
    from hosting.models import Domain, VirtualServer
    from hosting.models.servers import VirtualServerQuerySet

    assert f"FROM {Domain._meta.db_table} WHERE server_id = {VirtualServer._meta.db_table}.id" in VirtualServerQuerySet.DOMAIN_COUNT
