"""Template helpers for hosting pages. The state badge is Python, not an
included template: it appears on every row of long lists and is the hot path."""

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

register = template.Library()
SPINNER = mark_safe('<span class="spinner" aria-hidden="true"></span>')


@register.simple_tag
def server_state(server):
    badge = format_html(
        '<span class="state state-{}">{}{}</span>', server.state, SPINNER if server.is_busy else "", server.state_label
    )
    if server.observed_at and not server.is_busy:
        badge += format_html(
            ' <span class="muted small" title="{}">seen {} ago</span>',
            server.observed_at.strftime("%Y-%m-%d %H:%M:%S %Z"), timesince(server.observed_at, depth=1),
        )
    return badge
