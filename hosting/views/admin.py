"""The administrators' pages: the dashboard, every server, the host and its monitor, open terminals."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.db.models import Count, Q, Sum
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import admin_required
from accounts.forms import RegistrationCodeForm
from accounts.models import ActivityLog, RegistrationCode, User
from controlpanel.pagination import get_page

from .. import services
from ..forms import ServerFilterForm
from ..models import ContainerSnapshot, Domain, MonitorRun, VirtualServer
from .shared import PAGE_SIZE, containers_page, gateway_url, terminal_page

State = VirtualServer.State


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
        "containers": containers_page(request, ContainerSnapshot.objects.filter(server__isnull=True)),
        "orphans": services.orphan_containers(),
        "isolation": services.isolation_summary(),
        **monitor_status(),
    }
    return render(request, "hosting/admin_host.html", context)


@admin_required
@require_GET
def admin_monitor_status(request):
    return render(request, "hosting/partials/monitor_status.html", monitor_status())


def monitor_status():
    last = MonitorRun.objects.first()
    interval = timedelta(seconds=settings.MONITOR_INTERVAL)
    next_run = last.started_at + interval if last else None
    return {
        "last_run": last,
        "next_run": next_run,
        "monitor_late": bool(last) and timezone.now() - last.started_at > 3 * interval,
        "recent_runs": MonitorRun.objects.all()[:10],
    }


def _dashboard_context(request):
    """The admin's overview, from the database only (host facts come from the monitor)."""
    return {
        "users": User.objects.aggregate(
            total=Count("pk"), admins=Count("pk", filter=Q(is_admin=True)), enabled=Count("pk", filter=Q(is_active=True))
        ),
        "servers": VirtualServer.objects.live().aggregate(
            total=Count("pk"), running=Count("pk", filter=VirtualServer.state_q(State.RUNNING)), containers=Sum("container_count")
        ),
        "domains": Domain.objects.for_user(request.user).aggregate(
            total=Count("pk"), approval=Count("pk", filter=Q(status=Domain.Status.APPROVAL)), dns=Count("pk", filter=Q(status=Domain.Status.DNS))
        ),
        **monitor_status(),
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
    url = gateway_url(f"/ws/terminals/{terminal.pk}/watch/")
    return render(request, "hosting/terminal_watch.html", {"terminal": terminal, "watch_url": url})


@admin_required
@require_POST
def terminal_end(request, terminal_id):
    terminal = _open_terminal(terminal_id)
    services.terminal_end(actor=request.user, terminal=terminal, request=request)
    messages.success(request, "The terminal ends in a few seconds.")
    return redirect("hosting:admin_terminals")
