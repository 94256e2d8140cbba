"""The server pages: the user's list, a server's page and what it does."""

from functools import partial

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import services as account_services
from accounts.decorators import admin_required

from controlpanel.forms import add_errors, refused, restored

from .. import services
from ..forms import DomainForm, ServerCreateForm, ServerLimitsForm, ServerMoveForm, ServerNameForm
from ..models import VirtualServer, app_container_states
from .shared import containers_page, gateway_url, get_server_for_user, post_action, terminal_page


@require_GET
def home(request):
    """The start page: admins get the dashboard, everyone else their servers."""
    return redirect("hosting:admin_dashboard" if request.user.is_admin else "hosting:server_list")


def own_servers(user):
    return VirtualServer.objects.live().filter(owner=user).with_counts()


def _server_list_page(request):
    make = partial(ServerCreateForm, choose_node=request.user.is_admin)
    form = restored(request, "create", make) or make()
    servers = list(own_servers(request.user))
    quota = services.quota_for(request.user)
    context = {"servers": servers, "form": form, "quota": quota, "quota_left": services.quota_left(request.user, len(servers))}
    return render(request, "hosting/server_list.html", context)


@require_GET
def server_list(request):
    return _server_list_page(request)


@require_GET
def server_list_live(request):
    return render(request, "hosting/partials/server_table.html", {"servers": own_servers(request.user)})


@require_POST
def server_create(request):
    form = ServerCreateForm(request.POST, choose_node=request.user.is_admin)
    if form.is_valid():
        try:
            server = services.server_create(owner=request.user, request=request, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            return redirect(page_of(server))
    return refused(request, form, "create", reverse("hosting:server_list"))


def live_context(request, server):
    containers = containers_page(request, server.containers.all())
    apps = {app.name: app for app in server.apps.all()}
    # Grouped by compose project (an app deployed here, or one made in the terminal), the rest last.
    groups = {}
    for container in sorted(containers, key=lambda c: (not c.project, c.project, c.name)):
        groups.setdefault(container.project, []).append(container)
    busy_inside = any(c.action for c in containers) or any(app.is_busy for app in apps.values())
    states, running = app_container_states(server.pk) if apps else {}, server.state == VirtualServer.State.RUNNING
    app_health = {name: app.health(states.get(name, {}), server_running=running) for name, app in apps.items()}
    return {"server": server, "containers": containers, "container_groups": list(groups.items()), "apps": apps, "app_health": app_health,
            "busy_inside": busy_inside}


def page_of(server):
    return reverse("hosting:server_detail", args=[server.pk])


def detail_page(request, server):
    """A server's page; a form refused at one of its POST-only addresses comes back with its errors (refused)."""
    context = {
        **live_context(request, server),
        "terminal_url": gateway_url(f"/ws/servers/{server.pk}/terminal/"),
        "terminal_grace_minutes": settings.TERMINAL_REATTACH_SECONDS // 60,
        "ssh_address": account_services.ssh_address(request),
        # Where its domains' DNS records point: its node's public address, or this panel's host for the panel's own.
        "dns_address": server.node.public_address or request.get_host().rsplit(":", 1)[0].strip("[]"),
        "has_ssh_key": request.user.ssh_keys.exists(),
        "domains": server.domains.all(),
        "domain_form": restored(request, "domain", DomainForm) or DomainForm(),
        "domain_limit": settings.DOMAINS_PER_SERVER,
        "rename_form": restored(request, "rename", ServerNameForm) or ServerNameForm(initial={"name": server.name}),
        "limits_form": restored(request, "limits", ServerLimitsForm)
        or ServerLimitsForm(initial={field: getattr(server, field) for field in ServerLimitsForm.base_fields}),
        "move_form": restored(request, "move", partial(ServerMoveForm, server=server)) or ServerMoveForm(server=server),
    }
    return render(request, "hosting/server_detail.html", context)


@terminal_page
@require_GET
def server_detail(request, server_id):
    server = get_server_for_user(request, server_id)
    services.server_watched(server)
    return detail_page(request, server)


@require_GET
def server_live(request, server_id):
    """The part of the server page that refreshes itself: state and containers, from the database."""
    server = get_server_for_user(request, server_id)
    services.server_watched(server)
    return render(request, "hosting/partials/server_live.html", live_context(request, server))


def _server_action(service, done):
    """A lifecycle service run on a server."""
    return post_action(get_server_for_user, lambda request, server: service(actor=request.user, server=server, request=request),
                        done, page_of)


# No message: the page's live part says what is under way, and stops saying it when it is done.
server_start = _server_action(services.server_start, None)
server_stop = _server_action(services.server_stop, None)
server_restart = _server_action(services.server_restart, None)


@terminal_page
@require_POST
def server_rename(request, server_id):
    server = get_server_for_user(request, server_id)
    form = ServerNameForm(request.POST)
    if not form.is_valid():
        return refused(request, form, "rename", page_of(server))
    services.server_rename(actor=request.user, server=server, name=form.cleaned_data["name"], request=request)
    messages.success(request, "Renamed.")
    return redirect("hosting:server_detail", server_id=server.pk)


@require_http_methods(["GET", "POST"])
def server_delete(request, server_id):
    server = get_server_for_user(request, server_id)
    if request.method == "GET":
        context = {"server": server, "keep_volume": settings.SERVER_KEEP_VOLUME_ON_DELETE}
        return render(request, "hosting/server_delete.html", context)
    services.server_delete(actor=request.user, server=server, request=request)
    messages.success(request, f"Deleting “{server.name}”.")
    return redirect("hosting:admin_server_list" if request.user.is_admin and server.owner_id != request.user.pk else "hosting:server_list")


@admin_required
@terminal_page
@require_POST
def server_move(request, server_id):
    server = get_server_for_user(request, server_id)
    form = ServerMoveForm(request.POST, server=server)
    if form.is_valid():
        try:
            services.server_move(actor=request.user, server=server, node=form.cleaned_data["node"], request=request)
        except ValidationError as error:
            add_errors(form, error)
    if form.errors:
        return refused(request, form, "move", page_of(server))
    return redirect(page_of(server))


@admin_required
@terminal_page
@require_POST
def server_limits(request, server_id):
    server = get_server_for_user(request, server_id)
    form = ServerLimitsForm(request.POST)
    if form.is_valid():
        try:
            services.server_set_limits(actor=request.user, server=server, request=request, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
    if form.errors:
        return refused(request, form, "limits", page_of(server))
    messages.success(request, "Limits saved: the server gets them in a moment.")
    return redirect(page_of(server))
