from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import services as account_services
from accounts.decorators import admin_required
from accounts.forms import RegistrationCodeForm
from accounts.models import ActivityLog, RegistrationCode, User
from controlpanel.forms import add_errors
from controlpanel.pagination import get_page

from . import domains, services
from .domain_names import normalize_domain
from .forms import (
    AppForm,
    DomainForm,
    DomainSearchForm,
    DomainSettingsForm,
    ServerFilterForm,
    ServerLimitsForm,
    ServerNameForm,
)
from .models import App, ContainerSnapshot, Domain, MonitorRun, VirtualServer

PAGE_SIZE = 50
State = VirtualServer.State


def terminal_page(view):
    """Pages with terminals: xterm.js draws its colours and sizes with <style> elements it
    writes from script, which a style-src of 'self' alone refuses. Scripts stay 'self'."""
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        policy = {**settings.SECURE_CSP, "style-src": [*settings.SECURE_CSP.get("style-src", []), CSP.UNSAFE_INLINE]}
        return csp_override(policy)(view)(request, *args, **kwargs)

    return wrapper


@require_GET
def home(request):
    """The start page: admins get the dashboard, everyone else their servers."""
    return redirect("hosting:admin_dashboard" if request.user.is_admin else "hosting:server_list")


def _get_server_for_user(request, server_id):
    """Someone else's server is a 404, not a 403: its existence is not ours to tell."""
    user = request.user
    servers = VirtualServer.objects.for_user(user)
    if user.is_admin:  # their pages name the owner and node
        return get_object_or_404(servers.select_related("owner", "node"), pk=server_id)
    server = get_object_or_404(servers, pk=server_id)
    server.owner = user  # their own: no join for what we already have
    return server


def _error_messages(request, error):
    for message in error.messages:
        messages.error(request, message)


def _own_servers(user):
    return VirtualServer.objects.live().filter(owner=user).with_counts()


def _server_list_page(request, form, status=200):
    servers = list(_own_servers(request.user))
    quota = services.quota_for(request.user)
    context = {"servers": servers, "form": form, "quota": quota, "quota_left": services.quota_left(request.user, len(servers))}
    return render(request, "hosting/server_list.html", context, status=status)


@require_GET
def server_list(request):
    return _server_list_page(request, ServerNameForm())


@require_GET
def server_list_live(request):
    return render(request, "hosting/partials/server_table.html", {"servers": _own_servers(request.user)})


@require_POST
def server_create(request):
    form = ServerNameForm(request.POST)
    if form.is_valid():
        try:
            server = services.server_create(owner=request.user, name=form.cleaned_data["name"], request=request)
        except ValidationError as error:
            _error_messages(request, error)
        else:
            messages.success(request, f"Creating “{server.name}”. It will be running in a few seconds.")
            return redirect("hosting:server_detail", server_id=server.pk)
    return _server_list_page(request, form, status=400 if form.errors else 200)


CONTAINERS_PER_PAGE = 50
# What the container table shows: the other columns are JSON or long text, costly to load.
CONTAINER_COLUMNS = ("docker_id", "name", "image", "state", "status", "ports", "labels", "created", "action", "action_error", "server_id")


def _containers_page(request, containers):
    return get_page(containers.only(*CONTAINER_COLUMNS), CONTAINERS_PER_PAGE, request.GET.get("cpage"))


def _live_context(request, server):
    containers = _containers_page(request, server.containers.all())
    apps = {app.name: app for app in server.apps.all()}
    # Grouped by compose project (an app deployed here, or one made in the terminal), the rest last.
    groups = {}
    for container in sorted(containers, key=lambda c: (not c.project, c.project, c.name)):
        groups.setdefault(container.project, []).append(container)
    busy_inside = any(c.action for c in containers) or any(app.is_busy for app in apps.values())
    return {"server": server, "containers": containers, "container_groups": list(groups.items()), "apps": apps, "busy_inside": busy_inside}


def _gateway_url(path):
    """Where the browser opens a gateway WebSocket: GATEWAY_URL, or the page's own origin."""
    return settings.GATEWAY_URL + path


def _detail_page(request, server, *, rename_form=None, limits_form=None, domain_form=None, status=200):
    context = {
        **_live_context(request, server),
        "terminal_url": _gateway_url(f"/ws/servers/{server.pk}/terminal/"),
        "terminal_grace_minutes": settings.TERMINAL_REATTACH_SECONDS // 60,
        "ssh_address": account_services.ssh_address(request),
        "has_ssh_key": request.user.ssh_keys.exists(),
        "domains": server.domains.all(),
        "domain_form": domain_form or DomainForm(),
        "domain_limit": settings.DOMAINS_PER_SERVER,
        "rename_form": rename_form or ServerNameForm(initial={"name": server.name}),
        "limits_form": limits_form
        or ServerLimitsForm(initial={field: getattr(server, field) for field in ServerLimitsForm.base_fields}),
    }
    return render(request, "hosting/server_detail.html", context, status=status)


@terminal_page
@require_GET
def server_detail(request, server_id):
    server = _get_server_for_user(request, server_id)
    services.server_watched(server)
    return _detail_page(request, server)


@require_GET
def server_live(request, server_id):
    """The part of the server page that refreshes itself: state and containers, from the database."""
    server = _get_server_for_user(request, server_id)
    services.server_watched(server)
    return render(request, "hosting/partials/server_live.html", _live_context(request, server))


def _post_action(load, run, done, back):
    """A POST-only view: load the user's object (404 if it is not theirs), run one
    service on it, say so (or why not), and go back to the page it belongs on."""

    @require_POST
    def view(request, *args, **kwargs):
        (object_id,) = args or tuple(kwargs.values())
        target = load(request, object_id)
        try:
            run(request, target)
        except ValidationError as error:
            _error_messages(request, error)
        else:
            messages.success(request, done.format(name=target.name))
        return redirect(back(target))

    return view


def _server_action(service, done):
    """A lifecycle service run on a server."""
    return _post_action(_get_server_for_user, lambda request, server: service(actor=request.user, server=server, request=request),
                        done, lambda server: reverse("hosting:server_detail", args=[server.pk]))


server_start = _server_action(services.server_start, "Starting “{name}”.")
server_stop = _server_action(services.server_stop, "Stopping “{name}”.")
server_restart = _server_action(services.server_restart, "Restarting “{name}”.")


@terminal_page
@require_POST
def server_rename(request, server_id):
    server = _get_server_for_user(request, server_id)
    form = ServerNameForm(request.POST)
    if not form.is_valid():
        return _detail_page(request, server, rename_form=form, status=400)
    services.server_rename(actor=request.user, server=server, name=form.cleaned_data["name"], request=request)
    messages.success(request, "Renamed.")
    return redirect("hosting:server_detail", server_id=server.pk)


@require_http_methods(["GET", "POST"])
def server_delete(request, server_id):
    server = _get_server_for_user(request, server_id)
    if request.method == "GET":
        context = {"server": server, "keep_volume": settings.SERVER_KEEP_VOLUME_ON_DELETE}
        return render(request, "hosting/server_delete.html", context)
    services.server_delete(actor=request.user, server=server, request=request)
    messages.success(request, f"Deleting “{server.name}”.")
    return redirect("hosting:admin_server_list" if request.user.is_admin and server.owner_id != request.user.pk else "hosting:server_list")


@admin_required
@terminal_page
@require_POST
def server_limits(request, server_id):
    server = _get_server_for_user(request, server_id)
    form = ServerLimitsForm(request.POST)
    if not form.is_valid():
        return _detail_page(request, server, limits_form=form, status=400)
    try:
        services.server_set_limits(actor=request.user, server=server, request=request, **form.cleaned_data)
    except ValidationError as error:
        _error_messages(request, error)
    else:
        messages.success(request, "Limits saved: the server gets them in a moment.")
    return redirect("hosting:server_detail", server_id=server.pk)


@admin_required
@require_GET
def admin_server_list(request):
    filters = ServerFilterForm(request.GET)
    servers = VirtualServer.objects.live().select_related("owner", "node")
    if filters.is_valid():
        servers = filters.filter(servers)
    page = get_page(servers.order_by("-pk"), PAGE_SIZE, request.GET.get("page"))
    return render(request, "hosting/admin_server_list.html", {"filters": filters, "page": page})


@admin_required
@require_GET
def admin_host(request):
    """The host daemon's containers, orphans and the monitor's health."""
    context = {
        "containers": _containers_page(request, ContainerSnapshot.objects.filter(server__isnull=True)),
        "orphans": services.orphan_containers(),
        "isolation": services.isolation_summary(),
        **_monitor_status(),
    }
    return render(request, "hosting/admin_host.html", context)


@admin_required
@require_GET
def admin_monitor_status(request):
    return render(request, "hosting/partials/monitor_status.html", _monitor_status())


def _monitor_status():
    last = MonitorRun.objects.first()
    interval = timedelta(seconds=settings.MONITOR_INTERVAL)
    next_run = last.started_at + interval if last else None
    return {
        "last_run": last,
        "next_run": next_run,
        "monitor_late": bool(last) and timezone.now() - last.started_at > 3 * interval,
        "recent_runs": MonitorRun.objects.all()[:10],
    }


# Domains -----------------------------------------------------------------------

def _get_domain_for_user(request, domain_id):
    return get_object_or_404(Domain.objects.for_user(request.user).select_related("server", "server__owner"), pk=domain_id)


@terminal_page
@require_POST
def domain_add(request, server_id):
    server = _get_server_for_user(request, server_id)
    form = DomainForm(request.POST)
    if form.is_valid():
        try:
            domain = domains.domain_add(actor=request.user, server=server, request=request, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            if domain.is_active:
                messages.success(request, f"{domain.display_name} now points at this server.")
            elif domain.status == Domain.Status.DNS:
                messages.info(request, f"To prove {domain.display_name} is yours, add its TXT record below; it is routed once the record is found.")
            else:
                messages.info(request, f"{domain.display_name} is waiting for an administrator's approval.")
            return redirect("hosting:server_detail", server_id=server.pk)
    return _detail_page(request, server, domain_form=form, status=400)


@require_http_methods(["GET", "POST"])
def domain_edit(request, domain_id):
    domain = _get_domain_for_user(request, domain_id)
    form = DomainSettingsForm(request.POST or None, initial={"port": domain.port, "ssl": domain.ssl, "cloudflare": domain.cloudflare})
    if request.method == "POST" and form.is_valid():
        try:
            domains.domain_update(actor=request.user, domain=domain, request=request, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"Saved {domain.display_name}.")
            return redirect("hosting:server_detail", server_id=domain.server_id)
    return render(request, "hosting/domain_edit.html", {"domain": domain, "form": form}, status=400 if form.errors else 200)


@require_POST
def domain_remove(request, domain_id):
    domain = _get_domain_for_user(request, domain_id)
    try:
        domains.domain_remove(actor=request.user, domain=domain, request=request)
    except ValidationError as error:
        _error_messages(request, error)
    else:
        messages.success(request, f"Removed {domain.display_name}.")
    return redirect("hosting:server_detail", server_id=domain.server_id)


@require_GET
def domain_check(request):
    """Live validation for the domain field: what adding the name would say, as a fragment."""
    try:
        check = domains.check_name(user=request.user, name=request.GET.get("name", "")[:300])
    except ValidationError as error:
        return render(request, "hosting/domain_check.html", {"errors": error.messages, "check": None})
    return render(request, "hosting/domain_check.html", {"errors": [], "check": check})


@admin_required
@require_GET
def admin_domain_list(request):
    search = DomainSearchForm(request.GET)
    domains = Domain.objects.for_user(request.user).select_related("server", "server__owner")
    if search.is_valid():
        if q := search.cleaned_data["q"].strip().lower():
            try:
                q = normalize_domain(q, allow_wildcard=True)
            except ValidationError:
                pass
            domains = domains.filter(Q(name__icontains=q) | Q(server__owner__email__icontains=q) | Q(server__name__icontains=q))
        if search.cleaned_data["pending"]:
            domains = domains.pending()
    page = get_page(domains.order_by("name"), PAGE_SIZE, request.GET.get("page"))
    return render(request, "hosting/admin_domain_list.html", {"search": search, "page": page})


@require_POST
def domain_check_claim(request, domain_id):
    """The owner asks for their claim's TXT record to be looked up now."""
    domain = _get_domain_for_user(request, domain_id)
    asked, message = services.domain_check_request(actor=request.user, domain=domain)
    (messages.info if asked else messages.warning)(request, message)
    return redirect("hosting:server_detail", server_id=domain.server_id)


@admin_required
@require_POST
def domain_approve(request, domain_id):
    domain = _get_domain_for_user(request, domain_id)
    try:
        domains.domain_approve(actor=request.user, domain=domain, request=request)
    except ValidationError as error:
        _error_messages(request, error)
    else:
        messages.success(request, f"Approved {domain.display_name}.")
    return redirect("hosting:admin_domain_list")


def _dashboard_context(request):
    """The admin's overview, from the database only (host facts come from the monitor)."""
    return {
        "users": User.objects.aggregate(
            total=Count("pk"), admins=Count("pk", filter=Q(is_admin=True)), enabled=Count("pk", filter=Q(is_active=True))
        ),
        "servers": VirtualServer.objects.live().aggregate(
            total=Count("pk"), running=Count("pk", filter=VirtualServer.state_q(State.RUNNING))
        ),
        "domain_count": Domain.objects.for_user(request.user).count(),
        "container_count": ContainerSnapshot.objects.filter(server__isnull=False, server__deleted_at__isnull=True).count(),
        **_monitor_status(),
    }


@admin_required
@require_GET
def admin_dashboard(request):
    context = {
        **_dashboard_context(request),
        "code": RegistrationCode.objects.filter(created_by=request.user).first(),
        "code_form": RegistrationCodeForm(),
        "code_ttl_minutes": int(settings.REGISTRATION_CODE_TTL.total_seconds() // 60),
        "activity": ActivityLog.objects.all()[:10],
        "isolation": services.isolation_summary(),
    }
    return render(request, "hosting/admin_dashboard.html", context)


@admin_required
@require_GET
def admin_dashboard_live(request):
    return render(request, "hosting/partials/dashboard_stats.html", _dashboard_context(request))


# Terminals (the gateway serves them; these pages only show and end them) -------------

@admin_required
@require_GET
def admin_terminals(request):
    page = get_page(services.terminals_open(), PAGE_SIZE, request.GET.get("page"))
    return render(request, "hosting/admin_terminals.html", {"page": page})


def _open_terminal(terminal_id):
    return get_object_or_404(services.terminals_open(), pk=terminal_id)


@admin_required
@terminal_page
@require_GET
def terminal_watch(request, terminal_id):
    terminal = _open_terminal(terminal_id)
    url = _gateway_url(f"/ws/terminals/{terminal.pk}/watch/")
    return render(request, "hosting/terminal_watch.html", {"terminal": terminal, "watch_url": url})


@admin_required
@require_POST
def terminal_end(request, terminal_id):
    terminal = _open_terminal(terminal_id)
    services.terminal_end(actor=request.user, terminal=terminal, request=request)
    messages.success(request, "The terminal ends in a few seconds.")
    return redirect("hosting:admin_terminals")


# Containers and apps inside a server ------------------------------------------------

def _get_container_for_user(request, container_id):
    return get_object_or_404(ContainerSnapshot.objects.for_user(request.user).select_related("server", "server__owner"), pk=container_id)


def _get_app_for_user(request, app_id):
    return get_object_or_404(App.objects.for_user(request.user).select_related("server", "server__owner"), pk=app_id)


@require_GET
def container_logs(request, container_id):
    container = _get_container_for_user(request, container_id)
    url = _gateway_url(f"/ws/servers/{container.server_id}/containers/{container.pk}/logs/")
    return render(request, "hosting/container_logs.html", {"container": container, "server": container.server, "logs_url": url})


def _container_action(action, done):
    """A start, stop, restart or remove of a container inside a server."""
    return _post_action(
        _get_container_for_user,
        lambda request, container: services.container_act(actor=request.user, server=container.server, container=container,
                                                          action=action, request=request),
        done, lambda container: reverse("hosting:server_detail", args=[container.server_id]))


container_start = _container_action(ContainerSnapshot.Action.START, "Starting “{name}”.")
container_stop = _container_action(ContainerSnapshot.Action.STOP, "Stopping “{name}”.")
container_restart = _container_action(ContainerSnapshot.Action.RESTART, "Restarting “{name}”.")
_container_remove = _container_action(ContainerSnapshot.Action.REMOVE, "Removing “{name}”.")


@require_http_methods(["GET", "POST"])
def container_remove(request, container_id):
    if request.method == "POST":
        return _container_remove(request, container_id)
    container = _get_container_for_user(request, container_id)
    return render(request, "hosting/container_remove.html", {"container": container, "server": container.server})


def _app_form_page(request, server, form, app=None, status=200):
    context = {"server": server, "app": app, "form": form,
               "deployments": app.deployments.all()[:20] if app else [], "latest": app.deployments.first() if app else None}
    return render(request, "hosting/app_detail.html" if app else "hosting/app_new.html", context, status=status)


@require_http_methods(["GET", "POST"])
def app_new(request, server_id):
    server = _get_server_for_user(request, server_id)
    form = AppForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            app = services.app_create(actor=request.user, server=server, request=request, **form.compose())
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"Deploying “{app.name}”: compose's output follows below.")
            return redirect("hosting:app_detail", app_id=app.pk)
    return _app_form_page(request, server, form, status=400 if form.errors else 200)


@require_GET
def app_detail(request, app_id):
    app = _get_app_for_user(request, app_id)
    form = AppForm(initial={"name": app.name, "compose_file": services.app_latest_file(app)}, renaming=False)
    return _app_form_page(request, app.server, form, app=app)


@require_GET
def app_live(request, app_id):
    app = _get_app_for_user(request, app_id)
    return render(request, "hosting/partials/app_live.html", {"app": app, "latest": app.deployments.first()})


@require_POST
def app_deploy(request, app_id):
    app = _get_app_for_user(request, app_id)
    form = AppForm(request.POST, request.FILES, renaming=False)
    if form.is_valid():
        try:
            services.app_deploy(actor=request.user, app=app, compose_file=form.compose()["compose_file"], request=request)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"Deploying “{app.name}” again.")
            return redirect("hosting:app_detail", app_id=app.pk)
    return _app_form_page(request, app.server, form, app=app, status=400)


def _app_action(service, done):
    """A stop or remove of an app."""
    return _post_action(_get_app_for_user, lambda request, app: service(actor=request.user, app=app, request=request),
                        done, lambda app: reverse("hosting:app_detail", args=[app.pk]))


app_stop = _app_action(services.app_stop, "Stopping “{name}”.")
_app_remove = _app_action(services.app_remove, "Removing “{name}”: its containers and networks go; its volumes stay.")


@require_http_methods(["GET", "POST"])
def app_remove(request, app_id):
    if request.method == "POST":
        return _app_remove(request, app_id)
    app = _get_app_for_user(request, app_id)
    return render(request, "hosting/app_remove.html", {"app": app, "server": app.server})
