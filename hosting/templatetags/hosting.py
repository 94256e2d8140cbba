"""Template helpers for hosting pages. The state badge is Python, not an
included template: it appears on every row of long lists and is the hot path."""

from django import template
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince
from django.utils.timezone import localtime

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
            localtime(server.observed_at).strftime("%Y-%m-%d %H:%M:%S %Z"), timesince(server.observed_at, depth=1),
        )
    return badge


@register.simple_tag
def admin_server_rows(servers):
    """The rows of the admin's server list, built in Python: this list is the
    panel's busiest page, and the template engine spent most of its time here."""
    detail = reverse("hosting:server_detail", args=[0]).replace("/0/", "/{}/")
    owner = reverse("accounts:user_detail", args=[0]).replace("/0/", "/{}/")
    return format_html_join(
        "\n",
        '<tr><td class="mono">{}</td><td><a href="{}">{}</a></td><td><a href="{}">{}</a></td><td>{}</td>'
        '<td>{}</td><td class="small nowrap">{} MB · {} CPU · {} pids</td><td class="nowrap">{}</td></tr>',
        (
            (
                s.pk, detail.format(s.pk), s.name, owner.format(s.owner_id), s.owner.email, s.node.name,
                server_state(s), s.memory_mb, f"{s.cpus.normalize():f}", s.pids_limit, f"{localtime(s.created_at):%-d %b %Y}",
            )
            for s in servers
        ),
    )
