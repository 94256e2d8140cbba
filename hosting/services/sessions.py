"""What the gateway has open in servers, for its users and the admins: the gateway itself serves and ends them."""

from django.db import transaction
from django.utils import timezone

from ..activity import Action
from ..models import TerminalSession
from .servers import log_server_activity


def terminals_open():
    """Open terminals as the database knows them (the gateway keeps the rows up to date)."""
    return TerminalSession.objects.filter(closed_at__isnull=True).select_related("user", "server")


def own_sessions(user):
    """`user`'s open terminals and SSH sessions, newest first."""
    return terminals_open().filter(user=user)


@transaction.atomic
def terminal_end(*, actor, terminal, request=None):
    """Its user (the Sessions page) or an admin ends a terminal or SSH session: the gateway sees
    the request within TERMINAL_CHECK_SECONDS and tells its user who asked."""
    TerminalSession.objects.filter(pk=terminal.pk, end_requested_at__isnull=True).update(end_requested_at=timezone.now(),
                                                                                        end_requested_by=actor)
    whose = "their own" if terminal.user_id == actor.pk else f"{terminal.user.email if terminal.user else 'someone'}'s"
    log_server_activity(action=Action.TERMINAL_ENDED, actor=actor, server=terminal.server, request=request,
                        message=f"Asked to end {whose} {terminal.what or 'terminal'} on “{terminal.server.name}”")
