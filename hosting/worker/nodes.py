"""Nodes on the worker side, which alone holds their certificate authorities and makes
their credentials: a new node's CA made, its certificate request signed and its worker's
sign-ins made, a removed node's forgotten."""

import logging
import secrets
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.db import connection

from accounts.services import activity_log

from ..activity import Action
from ..backends import broker, certificates, database_roles, docker
from ..models import Node

log = logging.getLogger(__name__)

# The panel's settings a node's worker shares: how servers are made, named and labelled, and
# the defaults of what a node has of its own (its subnet and uid base, when its row has none).
SHARED_SETTINGS = ["SERVER_IMAGE", "SERVER_CONTAINER_PREFIX", "SERVER_NETWORK", "SERVER_NETWORK_SUBNET", "SERVER_UID_BASE",
                   "SERVER_ISOLATION", "SERVER_KEEP_VOLUME_ON_DELETE", "PANEL_INSTANCE", "TIME_ZONE"]


def node_prepare(*, node_id):
    node = Node.objects.filter(pk=node_id).first()
    if node is not None and not node.is_local:
        ca = certificates.node_ca_ensure(node.name)
        Node.objects.filter(pk=node.pk).update(ca_certificate=ca)


def node_sign(*, node_id, csr):
    """Sign the node's request for its engine's address and make its worker's sign-ins (new
    passwords: a node set up again leaves the old ones useless). What cannot be done is
    recorded on the node, where its page and the join script show it."""
    node = Node.objects.filter(pk=node_id).first()
    if node is None or node.is_local:
        return
    try:
        certificate = certificates.node_sign(node.name, csr, address=node.address)
        access = worker_access_make(node)
    except (certificates.CertificateError, database_roles.RoleError, broker.BrokerError) as error:
        Node.objects.filter(pk=node.pk).update(contact_error=str(error)[:255])
        return
    Node.objects.filter(pk=node.pk).update(certificate=certificate, contact_error="", **access)
    activity_log(action=Action.NODE_JOINED, message=f"Node {node.name} sent its certificate request; signed for {node.address}",
                 target=f"node {node.name}")


def worker_access_make(node):
    """A database role and a broker user of the node's own, with new passwords: the node's
    fields that record them, and its worker's settings (handed over once, by the join script)."""
    role, database_password, broker_password = database_roles.role_name(node.pk), secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    database_roles.role_ensure(role, database_password)
    secret_hash = broker.password_hash(broker_password)
    broker.user_ensure(node.broker_user, node.key_prefix, secret_hash, replace=True)
    database, redis_url = connection.settings_dict, urlsplit(settings.REDIS_URL)
    database_address = settings.NODES_DATABASE_ADDRESS or (
        f"{database['HOST'] if database['HOST'] and not database['HOST'].startswith('/') else 'localhost'}:{database['PORT'] or 5432}")
    redis_address = settings.NODES_REDIS_ADDRESS or redis_url.netloc.rpartition("@")[2]
    environment = {
        **{name: str(getattr(settings, name)) for name in SHARED_SETTINGS},
        "NODE_NAME": node.name,
        "DATABASE_URL": f"postgres://{quote(role)}:{quote(database_password)}@{database_address}/{quote(database['NAME'])}",
        "REDIS_URL": f"redis://{quote(node.broker_user)}:{quote(broker_password)}@{redis_address}{redis_url.path}",
        "REDIS_KEY_PREFIX": node.key_prefix,
    }
    return {"database_role": role, "broker_secret_hash": secret_hash, "worker_environment": environment}


def brokers_ensure():
    """Give Redis the nodes' users again if it lost them (it keeps them in memory only)."""
    for node in Node.objects.exclude(broker_secret_hash=""):
        try:
            broker.user_ensure(node.broker_user, node.key_prefix, node.broker_secret_hash)
        except broker.BrokerError as error:
            log.warning("node %s: %s", node.name, error)


def node_forget(*, name, database_role="", broker_user=""):
    """A removed node: its certificates, its database role and its broker user go."""
    certificates.node_forget(name)
    docker.forget_clients()
    if database_role:
        database_roles.role_drop(database_role)
    if broker_user:
        broker.user_drop(broker_user)
