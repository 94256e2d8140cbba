"""The nodes: admins add, drain and remove them; a machine joins with its one-time token."""

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import admin_required
from controlpanel.forms import add_errors

from .. import services
from ..forms import NodeForm, NodeSettingsForm
from ..models import Node
from .shared import error_messages

JOIN_CSR_MAX_BYTES = 16 * 1024


def _token_key(node):
    return f"hosting:node-token:{node.pk}"


def _list_page(request, form, status=200):
    nodes = Node.objects.with_promised().order_by("name")
    return render(request, "hosting/admin_node_list.html", {"nodes": nodes, "form": form}, status=status)


@admin_required
@require_http_methods(["GET", "POST"])
def admin_node_list(request):
    form = NodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            node, token = services.node_add(actor=request.user, request=request, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            request.session[_token_key(node)] = token  # shown once, on its page
            messages.success(request, f"Added {node.name}. Run the command below on that machine.")
            return redirect("hosting:admin_node_detail", node_id=node.pk)
    return _list_page(request, form, status=400 if form.errors else 200)


def _detail_page(request, node, form=None, status=200):
    node = Node.objects.with_promised().get(pk=node.pk)
    token = request.session.pop(_token_key(node), None)
    initial = {field: getattr(node, field) for field in NodeSettingsForm.base_fields}
    context = {
        "node": node,
        "form": form or NodeSettingsForm(initial=initial),
        "token": token,
        "join_url": request.build_absolute_uri(reverse("hosting:node_join")),
        "servers": node.servers.live().select_related("owner").order_by("pk")[:100],
    }
    return render(request, "hosting/admin_node_detail.html", context, status=status)


@admin_required
@require_http_methods(["GET", "POST"])
def admin_node_detail(request, node_id):
    node = get_object_or_404(Node, pk=node_id)
    if request.method == "GET":
        return _detail_page(request, node)
    form = NodeSettingsForm(request.POST)
    if not form.is_valid():
        return _detail_page(request, node, form=form, status=400)
    services.node_update(actor=request.user, node=node, request=request, **form.cleaned_data)
    messages.success(request, f"Saved {node.name}.")
    return redirect("hosting:admin_node_detail", node_id=node.pk)


@admin_required
@require_POST
def node_token(request, node_id):
    node = get_object_or_404(Node, pk=node_id, docker_url__gt="")
    request.session[_token_key(node)] = services.node_new_token(actor=request.user, node=node, request=request)
    messages.success(request, f"A new join token for {node.name}: run the command below on that machine again.")
    return redirect("hosting:admin_node_detail", node_id=node.pk)


@admin_required
@require_http_methods(["GET", "POST"])
def node_remove(request, node_id):
    node = get_object_or_404(Node, pk=node_id)
    if request.method == "GET":
        return render(request, "hosting/node_remove.html", {"node": node})
    try:
        services.node_remove(actor=request.user, node=node, request=request)
    except ValidationError as error:
        error_messages(request, error)
        return redirect("hosting:admin_node_detail", node_id=node.pk)
    messages.success(request, f"Removed {node.name}: the panel no longer trusts its certificate.")
    return redirect("hosting:admin_node_list")


@login_not_required
@csrf_exempt  # a machine, not a browser: its one-time token is the credential, no cookie is read
@require_http_methods(["GET", "POST"])
def node_join(request):
    """deploy/node/install: POST its certificate request (token, csr), then GET (token)
    until its certificate is signed; the answer that hands it over uses the token up."""
    token = request.POST.get("token") or request.GET.get("token", "")
    if request.method == "POST":
        csr = request.POST.get("csr", "")
        if len(csr) > JOIN_CSR_MAX_BYTES:
            return JsonResponse({"error": "That certificate request is too large."}, status=400)
        try:
            node = services.node_join(token=token, csr=csr)
        except ValidationError as error:
            return JsonResponse({"error": " ".join(error.messages)}, status=403)
        return JsonResponse({"node": node.name, "status": "signing"}, status=202)
    node = services.node_for_token(token)
    if node is None:
        return JsonResponse({"error": services.nodes.ERRORS["join_invalid"]}, status=403)
    if not node.certificate:
        return JsonResponse({"node": node.name, "status": "signing", "error": node.contact_error}, status=202)
    services.node_joined(node=node)
    return JsonResponse({"node": node.name, "status": "signed", "ca": node.ca_certificate, "certificate": node.certificate,
                         "address": node.address, "environment": node.worker_environment})
