"""What the page modules share: loading the user's own object (someone else's is a 404),
one-service POST views, and where the browser finds the gateway."""

from functools import wraps
from operator import attrgetter

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from django.views.decorators.http import require_http_methods, require_POST

from controlpanel.pagination import get_page

from ..models import VirtualServer

PAGE_SIZE = 50


def terminal_page(view):
    """Pages with terminals: xterm.js draws its colours and sizes with <style> elements it
    writes from script, which a style-src of 'self' alone refuses. Scripts stay 'self'."""
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        policy = {**settings.SECURE_CSP, "style-src": [*settings.SECURE_CSP.get("style-src", []), CSP.UNSAFE_INLINE]}
        return csp_override(policy)(view)(request, *args, **kwargs)

    return wrapper


def get_server_for_user(request, server_id):
    """Someone else's server is a 404, not a 403: its existence is not ours to tell."""
    user = request.user
    servers = VirtualServer.objects.for_user(user).select_related("node")  # where it runs: its domains' address
    if user.is_admin:  # their pages name the owner too
        return get_object_or_404(servers.select_related("owner"), pk=server_id)
    server = get_object_or_404(servers, pk=server_id)
    server.owner = user  # their own: no join for what we already have
    return server


def get_for_user(model, request, object_id):
    """A domain, container or app of a server the user may see (models.visible_to), with its server."""
    return get_object_or_404(model.objects.for_user(request.user).select_related("server", "server__owner"), pk=object_id)


def error_messages(request, error):
    for message in error.messages:
        messages.error(request, message)


def post_action(load, run, done, back, *, named=attrgetter("name")):
    """A POST-only view: load the user's object (404 if it is not theirs), run one
    service on it, say so (`done`, its {name} what `named` says of the object; None: the
    page it goes back to says it) or why not, and go back to the page it belongs on."""

    @require_POST
    def view(request, *args, **kwargs):
        (object_id,) = args or tuple(kwargs.values())
        target = load(request, object_id)
        try:
            run(request, target)
        except ValidationError as error:
            error_messages(request, error)
        else:
            if done:
                messages.success(request, done.format(name=named(target)))
        return redirect(back(target))

    return view


def gateway_url(path):
    """Where the browser opens a gateway WebSocket: GATEWAY_URL, or the page's own origin."""
    return settings.GATEWAY_URL + path


CONTAINERS_PER_PAGE = 50
# What the container table shows: the other columns are JSON or long text, costly to load.
CONTAINER_COLUMNS = ("docker_id", "name", "image", "state", "status", "state_since", "ports", "labels", "created", "action", "action_error",
                     "server_id")


def containers_page(request, containers):
    return get_page(containers.only(*CONTAINER_COLUMNS), CONTAINERS_PER_PAGE, request.GET.get("cpage"))


def confirmed(action, model, template, name):
    """`action` (a POST view) behind a page that asks first: GET shows `template` with the
    user's object as `name` (and its server)."""

    @require_http_methods(["GET", "POST"])
    def view(request, **kwargs):
        if request.method == "POST":
            return action(request, **kwargs)
        (object_id,) = kwargs.values()
        target = get_for_user(model, request, object_id)
        return render(request, template, {name: target, "server": target.server})

    return view
