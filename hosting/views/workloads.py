"""What runs inside a server: its containers (logs, actions), its images and its compose apps."""

from functools import partial

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from controlpanel.forms import add_errors, refused, restored

from .. import services
from ..forms import AppForm
from ..models import App, ContainerSnapshot, ImageSnapshot, VirtualServer, app_container_states
from .shared import confirmed, gateway_url, get_for_user, get_server_for_user, post_action


@require_GET
def container_logs(request, container_id):
    container = get_for_user(ContainerSnapshot, request, container_id)
    url = gateway_url(f"/ws/servers/{container.server_id}/containers/{container.pk}/logs/")
    return render(request, "hosting/container_logs.html", {"container": container, "server": container.server, "logs_url": url})


def _container_action(action, done):
    """A start, stop, restart or remove of a container inside a server."""
    return post_action(
        partial(get_for_user, ContainerSnapshot),
        lambda request, container: services.container_act(actor=request.user, server=container.server, container=container,
                                                          action=action, request=request),
        done, lambda container: reverse("hosting:server_detail", args=[container.server_id]))


container_start = _container_action(ContainerSnapshot.Action.START, "Starting “{name}”.")
container_stop = _container_action(ContainerSnapshot.Action.STOP, "Stopping “{name}”.")
container_restart = _container_action(ContainerSnapshot.Action.RESTART, "Restarting “{name}”.")
container_remove = confirmed(_container_action(ContainerSnapshot.Action.REMOVE, "Removing “{name}”."),
                             ContainerSnapshot, "hosting/container_remove.html", "container")


def _images_context(request, server):
    services.images_watched(server)
    return {"server": server, "images": server.images.all(), "load_url": gateway_url(f"/ws/servers/{server.pk}/images/load/"),
            "load_max_mb": settings.IMAGE_LOAD_MAX_MB}


@require_GET
def server_images(request, server_id):
    """The images in a server's daemon: listed, removed, and loaded from a `docker save` archive (through the gateway)."""
    return render(request, "hosting/server_images.html", _images_context(request, get_server_for_user(request, server_id)))


@require_GET
def server_images_live(request, server_id):
    return render(request, "hosting/partials/images_live.html", _images_context(request, get_server_for_user(request, server_id)))


image_remove = confirmed(
    post_action(partial(get_for_user, ImageSnapshot), lambda request, image: services.image_remove(actor=request.user, image=image,
                                                                                                   request=request),
                "Removing “{name}”.", lambda image: reverse("hosting:server_images", args=[image.server_id]), named=str),
    ImageSnapshot, "hosting/image_remove.html", "image")


def _example_image(server):
    """The new-app form's example names an image the server has, if it has one with a tag."""
    tags = next((tags for tags in server.images.values_list("tags", flat=True) if tags), None)
    return {"image": tags[0]} if tags else {}


def _app_form_page(request, server, form, app=None, status=200):
    context = {"server": server, "form": form, **(_app_live_context(app) if app else {})}
    return render(request, "hosting/app_detail.html" if app else "hosting/app_new.html", context, status=status)


def _app_live_context(app):
    """What an app's page shows of how it is: its state, read from its containers, and its history."""
    states = app_container_states(app.server_id).get(app.name, {})
    state, words = app.health(states, server_running=app.server.state == VirtualServer.State.RUNNING)
    return {"app": app, "health": state, "health_words": words, "deployments": app.deployments.select_related("actor")[:20]}


@require_http_methods(["GET", "POST"])
def app_new(request, server_id):
    server = get_server_for_user(request, server_id)
    form = AppForm(request.POST or None, request.FILES or None, **_example_image(server))
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
    app = get_for_user(App, request, app_id)
    form = restored(request, "app_deploy", partial(AppForm, renaming=False)) or AppForm(
        initial={"name": app.name, "compose_file": services.app_latest_file(app)}, renaming=False)
    return _app_form_page(request, app.server, form, app=app)


@require_GET
def app_live(request, app_id):
    app = get_for_user(App, request, app_id)
    return render(request, "hosting/partials/app_live.html", _app_live_context(app))


@require_POST
def app_deploy(request, app_id):
    app = get_for_user(App, request, app_id)
    form = AppForm(request.POST, request.FILES, renaming=False)
    if form.is_valid():
        try:
            services.app_deploy(actor=request.user, app=app, compose_file=form.compose()["compose_file"], request=request)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"Deploying “{app.name}” again.")
            return redirect("hosting:app_detail", app_id=app.pk)
    return refused(request, form, "app_deploy", reverse("hosting:app_detail", args=[app.pk]))


def _app_action(service, done, back=lambda app: reverse("hosting:app_detail", args=[app.pk])):
    """A start, stop or remove of an app."""
    return post_action(partial(get_for_user, App), lambda request, app: service(actor=request.user, app=app, request=request),
                        done, back)


app_start = _app_action(services.app_start, None)  # its page says what is under way
app_stop = _app_action(services.app_stop, None)
# The app goes: back to its server's page, where it is listed as removing until it is gone.
app_remove = confirmed(_app_action(services.app_remove, "Removing “{name}”: its containers and networks go; its volumes stay.",
                                   lambda app: reverse("hosting:server_detail", args=[app.server_id])),
                       App, "hosting/app_remove.html", "app")
