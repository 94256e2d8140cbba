"""Nodes on the worker side, which alone holds their certificate authorities: a new
node's CA made, its certificate request signed, a removed node's forgotten."""

from accounts.services import activity_log

from ..activity import Action
from ..backends import certificates, docker
from ..models import Node


def node_prepare(*, node_id):
    node = Node.objects.filter(pk=node_id).first()
    if node is not None and not node.is_local:
        ca = certificates.node_ca_ensure(node.name)
        Node.objects.filter(pk=node.pk).update(ca_certificate=ca)


def node_sign(*, node_id, csr):
    """Sign the node's request for its engine's address; a request that cannot be
    used is recorded on the node, where its page and the join script show it."""
    node = Node.objects.filter(pk=node_id).first()
    if node is None or node.is_local:
        return
    try:
        certificate = certificates.node_sign(node.name, csr, address=node.address)
    except certificates.CertificateError as error:
        Node.objects.filter(pk=node.pk).update(contact_error=str(error)[:255])
        return
    Node.objects.filter(pk=node.pk).update(certificate=certificate, contact_error="")
    activity_log(action=Action.NODE_JOINED, message=f"Node {node.name} sent its certificate request; signed for {node.address}",
                 target=f"node {node.name}")


def node_forget(*, name):
    certificates.node_forget(name)
    docker.forget_clients()
