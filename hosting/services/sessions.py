"""What the gateway has open in servers, for the admin pages: the gateway itself serves and ends them."""

from django.db import transaction
from django.utils import timezone

from ..activity import Action
from ..models import TerminalSession
from .servers import log_server_activity


def terminals_open():
    """Open terminals as the database knows them (the gateway keeps the rows up to date)."""
    return TerminalSession.objects.filter(closed_at__isnull=True).select_related("user", "server")


@transaction.atomic
def terminal_end(*, actor, terminal, request=None):
    """An admin ends someone's terminal: the gateway sees the request within TERMINAL_CHECK_SECONDS."""
    TerminalSession.objects.filter(pk=terminal.pk, end_requested_at__isnull=True).update(end_requested_at=timezone.now())
    log_server_activity(action=Action.TERMINAL_ENDED, actor=actor, server=terminal.server, request=request,
                        message=f"Asked to end {terminal.user.email if terminal.user else 'someone'}'s terminal on “{terminal.server.name}”")
