"""What runs inside a server, on the request side: container actions, images and compose apps.
The worker (worker.workloads) does the work, one piece per server at a time."""

import yaml
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from controlpanel.errors import refusal

from ..activity import Action
from ..models import App, AppDeployment, ContainerSnapshot, ImageSnapshot, VirtualServer
from ..models.workloads import APP_NAME_TAKEN
from .. import tasks
from .servers import log_server_activity

State = VirtualServer.State
COMPOSE_MAX_BYTES = 64 * 1024

ERRORS = {
    "container_busy": "{name} is busy ({action}); try again in a moment.",
    "app_busy": "The app is busy ({status}); try again when it is done.",
    "not_running": "The server is {state}: start it first.",
    "app_exists": APP_NAME_TAKEN,
    "never_deployed": "This app has not been deployed yet: deploy it first.",
    "image_busy": "{name} is being removed already.",
    "too_big": f"A compose file can be at most {COMPOSE_MAX_BYTES // 1024} KiB.",
    "too_deep": "This file is nested too deeply to be a compose file.",
    "not_yaml": "This is not YAML{line}: {problem}.",
    "no_services": "A compose file needs a “services:” mapping with at least one service.",
}


@transaction.atomic
def container_act(*, actor, server, container, action, request=None):
    """Ask the worker to start, stop, restart or remove a container inside the server."""
    container = ContainerSnapshot.objects.select_for_update().get(pk=container.pk, server=server)
    if container.action:
        raise refusal(ERRORS, "container_busy", name=container.name or "This container", action=container.action)
    if server.state != State.RUNNING:
        raise refusal(ERRORS, "not_running", state=server.state.label.lower())
    container.action, container.action_error = action, ""
    container.save(update_fields=["action", "action_error"])
    log_server_activity(action=Action.CONTAINER_ACTION, actor=actor, server=server, request=request,
                        message=f"{ContainerSnapshot.Action(action).label} container “{container.name}” in “{server.name}”")
    transaction.on_commit(lambda: tasks.on_node(tasks.container_action, server.node, container.pk, tenant=True))
    return container


def images_watched(server):
    """Someone is looking at the server's images: have its node's worker list them again, at most
    every SERVER_REFRESH_SECONDS."""
    if server.state == State.RUNNING and cache.add(f"hosting:images:{server.pk}", 1, timeout=settings.SERVER_REFRESH_SECONDS):
        transaction.on_commit(lambda: tasks.on_node(tasks.images_refresh, server.node, server.pk, tenant=True))


def images_refresh_now(server):
    """The server's images changed (one was loaded): list them again now."""
    cache.delete(f"hosting:images:{server.pk}")
    images_watched(server)


@transaction.atomic
def image_remove(*, actor, image, request=None):
    """Ask the worker to remove an image from the server's daemon (with all its tags)."""
    image = ImageSnapshot.objects.select_for_update().select_related("server__node").get(pk=image.pk)
    if image.action:
        raise refusal(ERRORS, "image_busy", name=str(image))
    if image.server.state != State.RUNNING:
        raise refusal(ERRORS, "not_running", state=image.server.state.label.lower())
    ImageSnapshot.objects.filter(pk=image.pk).update(action="remove", action_error="")
    log_server_activity(action=Action.IMAGE_REMOVED, actor=actor, server=image.server, request=request,
                        message=f"Removing image “{image}” from “{image.server.name}”")
    transaction.on_commit(lambda: tasks.on_node(tasks.image_remove, image.server.node, image.pk, tenant=True))


def compose_file_check(text):
    """The compose file as it will be deployed, or a ValidationError saying why not.
    (The worker has compose itself check it again, in the server, before it deploys.)"""
    text = (text or "").replace("\r\n", "\n")
    if len(text.encode()) > COMPOSE_MAX_BYTES:
        raise refusal(ERRORS, "too_big")
    try:
        document = yaml.safe_load(text)
    except RecursionError:
        raise refusal(ERRORS, "too_deep") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        raise refusal(ERRORS, "not_yaml", line=line, problem=getattr(error, "problem", None) or error) from None
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict) or not document["services"]:
        raise refusal(ERRORS, "no_services")
    return text


def _deploy(*, actor, app, action, compose_file="", request=None):
    deployment = AppDeployment.objects.create(app=app, actor=actor, action=action, compose_file=compose_file)
    busy = {AppDeployment.Action.DEPLOY: App.Status.DEPLOYING, AppDeployment.Action.START: App.Status.STARTING,
            AppDeployment.Action.STOP: App.Status.STOPPING, AppDeployment.Action.REMOVE: App.Status.REMOVING}[action]
    App.objects.filter(pk=app.pk).update(status=busy, updated_at=timezone.now())
    transaction.on_commit(lambda: tasks.on_node(tasks.app_run, app.server.node, deployment.pk, tenant=True))
    return deployment


@transaction.atomic
def app_create(*, actor, server, name, compose_file, request=None):
    if server.apps.filter(name=name).exists():
        raise refusal(ERRORS, "app_exists", "name")
    app = App.objects.create(server=server, name=name)
    log_server_activity(action=Action.APP_CREATED, actor=actor, server=server, request=request, message=f"Created app “{name}” in “{server.name}”")
    _deploy(actor=actor, app=app, action=AppDeployment.Action.DEPLOY, compose_file=compose_file_check(compose_file), request=request)
    return app


def _app_for_change(app):
    app = App.objects.select_for_update().select_related("server").get(pk=app.pk)
    if app.is_busy:
        raise refusal(ERRORS, "app_busy", status=app.get_status_display().lower())
    if app.server.state != State.RUNNING:
        raise refusal(ERRORS, "not_running", state=app.server.state.label.lower())
    return app


@transaction.atomic
def app_deploy(*, actor, app, compose_file, request=None):
    app = _app_for_change(app)
    log_server_activity(action=Action.APP_DEPLOYED, actor=actor, server=app.server, request=request, message=f"Deploying app “{app.name}”")
    return _deploy(actor=actor, app=app, action=AppDeployment.Action.DEPLOY, compose_file=compose_file_check(compose_file))


@transaction.atomic
def app_start(*, actor, app, request=None):
    app = _app_for_change(app)
    if not app.compose_file:
        raise refusal(ERRORS, "never_deployed")
    log_server_activity(action=Action.APP_STARTED, actor=actor, server=app.server, request=request, message=f"Starting app “{app.name}”")
    return _deploy(actor=actor, app=app, action=AppDeployment.Action.START)


@transaction.atomic
def app_stop(*, actor, app, request=None):
    app = _app_for_change(app)
    log_server_activity(action=Action.APP_STOPPED, actor=actor, server=app.server, request=request, message=f"Stopping app “{app.name}”")
    return _deploy(actor=actor, app=app, action=AppDeployment.Action.STOP)


@transaction.atomic
def app_remove(*, actor, app, request=None):
    app = _app_for_change(app)
    log_server_activity(action=Action.APP_REMOVED, actor=actor, server=app.server, request=request, message=f"Removing app “{app.name}”")
    return _deploy(actor=actor, app=app, action=AppDeployment.Action.REMOVE)


def app_latest_file(app):
    """What the app's edit form starts from: the last file submitted (it may not have deployed)."""
    latest = app.deployments.filter(action=AppDeployment.Action.DEPLOY).first()
    return latest.compose_file if latest else app.compose_file
