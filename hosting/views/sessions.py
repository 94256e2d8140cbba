"""A user's own open terminals and SSH sessions: seen, and ended from the panel (the gateway ends them)."""

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from .. import services


@require_GET
def session_list(request):
    context = {"sessions": services.own_sessions(request.user), "terminal_limit": settings.TERMINALS_PER_USER}
    return render(request, "hosting/session_list.html", context)


@require_POST
def session_end(request, terminal_id):
    terminal = get_object_or_404(services.own_sessions(request.user), pk=terminal_id)  # only one's own: an admin's page is theirs
    services.terminal_end(actor=request.user, terminal=terminal, request=request)
    messages.success(request, f"{terminal.what.capitalize() or 'The session'} on “{terminal.server.name}” ends in a few seconds.")
    return redirect("hosting:session_list")
