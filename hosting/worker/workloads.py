"""What runs inside servers, on the worker side: the container actions and the
compose apps that people ask for on the server page.

The request side wrote down what is wanted (a container's `action`, an
AppDeployment); this does it, through the server's own daemon or a `docker
exec` of compose as the server's owner, and writes down what happened in
words, compose's own output included (bounded: it comes from inside).
"""

import shlex
import time
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import activity_log
from controlpanel.text import visible_controls

from ..activity import Action
from ..backends import docker
from ..models import App, AppDeployment, ContainerSnapshot, ImageSnapshot, VirtualServer
from . import monitor

APPS_FOLDER = "apps"  # ~/apps/<name>/compose.yaml in the server: its owner sees and may edit it
FLUSH_SECONDS = 0.5  # how often the output of a running deploy reaches the page


# The longest one piece of work in a server may take (a deploy: the check, then `up`).
WORK_SECONDS = settings.APP_CHECK_SECONDS + settings.APP_RUN_SECONDS + 30


class ServerBusy(Exception):
    """Another piece of work runs in this server: try again in a moment."""


@contextmanager
def one_at_a_time(server_id):
    """At most one piece of work per server at a time, across every worker: a
    tenant's many requests take turns in their own server and never hold more
    than one of the workers all tenants share."""
    key = f"hosting:server-work:{server_id}"
    if not cache.add(key, 1, timeout=WORK_SECONDS):
        raise ServerBusy
    try:
        yield
    finally:
        cache.delete(key)


def container_action(*, container_id):
    container = ContainerSnapshot.objects.select_related("server").filter(pk=container_id).exclude(action="").first()
    if container is None or container.server is None:
        return
    with one_at_a_time(container.server_id):
        _container_action(container)


def _container_action(container):
    server = container.server
    try:
        docker.inner_container_action(str(server.socket_dir), container.docker_id, container.action)
        error = ""
    except docker.DockerError as failure:
        error = str(failure)
        activity_log(action=Action.CONTAINER_ACTION, user=User.objects.named(server.owner_id), target=server.container_name,
                     message=f"{container.action.capitalize()} container “{container.name}” failed: {error}")
    ContainerSnapshot.objects.filter(pk=container.pk).update(action="", action_error=error[:255])
    monitor.refresh_server(server)


IMAGES_LISTED = 500  # the most of a server's images the page shows


def images_refresh(*, server_id):
    """List a server's images again (its daemon's answer, bounded and checked: it comes from inside)."""
    server = VirtualServer.objects.filter(pk=server_id, observed_state=VirtualServer.ObservedState.RUNNING).first()
    if server is None:
        return
    with one_at_a_time(server_id):
        _images_refresh(server)


def _images_refresh(server):
    try:
        listed = docker.inner_images_json(str(server.socket_dir))
    except docker.DockerError:
        return  # the page keeps what it had, and says when it was read
    rows = {}
    for entry in listed if isinstance(listed, list) else []:
        if not isinstance(entry, dict) or not docker.IMAGE_ID.fullmatch(str(entry.get("Id", ""))) or len(rows) >= IMAGES_LISTED:
            continue
        tags = [visible_controls(tag[:255]) for tag in (entry.get("RepoTags") or [])[:10] if isinstance(tag, str) and tag != "<none>:<none>"]
        size = entry.get("Size")
        rows[entry["Id"]] = {"tags": tags, "size": size if isinstance(size, int) and size >= 0 else 0,
                             "created": monitor.from_timestamp(entry.get("Created"))}
    with transaction.atomic():
        ImageSnapshot.objects.filter(server=server).exclude(image_id__in=rows).delete()
        known = set(ImageSnapshot.objects.filter(server=server).values_list("image_id", flat=True))
        for image_id, fields in rows.items():
            if image_id in known:
                ImageSnapshot.objects.filter(server=server, image_id=image_id).update(**fields)
        ImageSnapshot.objects.bulk_create([ImageSnapshot(server=server, image_id=image_id, **fields)
                                           for image_id, fields in rows.items() if image_id not in known])
        VirtualServer.objects.filter(pk=server.pk).update(images_read_at=timezone.now())


def image_remove(*, image_id):
    """The removal its owner asked for (ImageSnapshot.action); then the list is read again."""
    image = ImageSnapshot.objects.select_related("server").filter(pk=image_id, action="remove").first()
    if image is None:
        return
    with one_at_a_time(image.server_id):
        try:
            docker.inner_image_remove(str(image.server.socket_dir), image.image_id)
            error = ""
        except docker.DockerError as failure:
            error = str(failure)
        ImageSnapshot.objects.filter(pk=image.pk).update(action="", action_error=error[:255])
        _images_refresh(image.server)


class _Output:
    """Compose's output as it comes, kept to its tail and written to the deployment now and then."""

    def __init__(self, deployment):
        self.deployment, self.text, self.flushed = deployment, "", 0.0

    def add(self, chunk):
        if isinstance(chunk, bytes):
            chunk = chunk.decode("utf-8", "replace")
        self.text = (self.text + visible_controls(chunk))[-AppDeployment.OUTPUT_LIMIT:]
        if time.monotonic() - self.flushed > FLUSH_SECONDS:
            self.flush()

    def flush(self):
        AppDeployment.objects.filter(pk=self.deployment.pk).update(output=self.text)
        self.flushed = time.monotonic()


def _compose(server, app, script, output, *, timeout, stdin=b""):
    """Run a shell script as the owner, in the app's folder (made if need be), `stdin`
    its input; its exit code. The owner's shell, never the engine's root: whatever
    the owner has put in that folder (a link included) is only followed with the
    owner's own rights."""
    command = f"mkdir -p ~/{APPS_FOLDER}/{shlex.quote(app.name)} && cd ~/{APPS_FOLDER}/{shlex.quote(app.name)} && {script}"
    try:
        code, _ = docker.container_exec(docker.Engine.of(server.node), server.container_name, ["controlpanel-shell", "-c", command],
                                        stdin=stdin, on_output=output.add, timeout=timeout)
    finally:
        output.flush()
    return code


def apps_resume(*, server_id):
    """Its server has started (its owner started it, or its machine came back): the apps deployed
    there and not stopped are to start again, each with a line in its history. Returns the
    server and those starts (AppDeployment ids), for its node's worker to run one by one."""
    server = VirtualServer.objects.select_related("node").get(pk=server_id)
    starts = []
    with transaction.atomic():
        for app in server.apps.select_for_update().filter(status=App.Status.RUNNING).order_by("pk"):
            App.objects.filter(pk=app.pk).update(status=App.Status.STARTING, updated_at=timezone.now())
            starts.append(AppDeployment.objects.create(app=app, action=AppDeployment.Action.START).pk)
    return server, starts


def _inner_ready(server, wait=60):
    """The server's daemon answers (it may be starting with its server), or DockerError after `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return docker.inner_ping(str(server.socket_dir))
        except (docker.DockerError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def app_run(*, deployment_id):
    deployment = AppDeployment.objects.select_related("app__server__node").get(pk=deployment_id)
    with one_at_a_time(deployment.app.server_id):
        return _app_run(deployment)


def _app_run(deployment):
    app, server = deployment.app, deployment.app.server
    output = _Output(deployment)
    before = app.compose_file and App.Status.RUNNING or App.Status.NEW
    project = shlex.quote(app.name)
    try:
        if server.state != VirtualServer.State.RUNNING:
            raise docker.DockerError(f"The server is {server.state.label.lower()}.")
        if deployment.action == AppDeployment.Action.DEPLOY:
            # Compose reads the file on the server's own CPU, within its limits, and only so long.
            checked = _compose(server, app, f"cat > compose.next.yaml && docker compose -p {project} -f compose.next.yaml config -q 2>&1",
                               output, stdin=deployment.compose_file.encode(), timeout=settings.APP_CHECK_SECONDS)
            if checked:
                return _finish(deployment, app, ok=False, status=before, output=output,
                               note="Compose refused this file: nothing was deployed, and the app keeps its last file.")
            code = _compose(server, app, f"mv compose.next.yaml compose.yaml && docker compose -p {project} up -d --remove-orphans 2>&1",
                            output, timeout=settings.APP_RUN_SECONDS)
            return _finish(deployment, app, ok=code == 0, status=App.Status.RUNNING if code == 0 else App.Status.FAILED, output=output)
        if deployment.action == AppDeployment.Action.START:
            # As last deployed (the folder's compose.yaml): what is there starts, what is missing is made.
            _inner_ready(server)
            code = _compose(server, app, f"docker compose -p {project} up -d --no-recreate 2>&1", output, timeout=settings.APP_RUN_SECONDS)
            return _finish(deployment, app, ok=code == 0, status=App.Status.RUNNING, output=output)
        if deployment.action == AppDeployment.Action.STOP:
            code = _compose(server, app, f"docker compose -p {project} stop 2>&1", output, timeout=settings.APP_RUN_SECONDS)
            return _finish(deployment, app, ok=code == 0, status=App.Status.STOPPED if code == 0 else App.Status.FAILED, output=output)
        code = _compose(server, app, f"docker compose -p {project} down --remove-orphans 2>&1 && cd && rm -rf ~/{APPS_FOLDER}/{project}",
                        output, timeout=settings.APP_RUN_SECONDS)
        return _finish(deployment, app, ok=code == 0, status=None if code == 0 else App.Status.FAILED, output=output)
    except docker.DockerError as error:
        # A deploy keeps the app as it was; a start that failed leaves it deployed (its containers say how it is).
        status = {AppDeployment.Action.DEPLOY: before, AppDeployment.Action.START: App.Status.RUNNING}.get(deployment.action, App.Status.FAILED)
        return _finish(deployment, app, ok=False, status=status, output=output, note=str(error))
    finally:
        monitor.refresh_server(server)


@transaction.atomic
def _finish(deployment, app, *, ok, status, output, note=""):
    """Record how it went; `status` None: the app is gone."""
    text = output.text + (f"\n{note}\n" if note else "")
    AppDeployment.objects.filter(pk=deployment.pk).update(
        result=AppDeployment.Result.SUCCEEDED if ok else AppDeployment.Result.FAILED,
        output=text[-AppDeployment.OUTPUT_LIMIT:], finished_at=timezone.now())
    if status is None:
        App.objects.filter(pk=app.pk).delete()
    else:
        fields = {"status": status, "updated_at": timezone.now()}
        if ok and deployment.action == AppDeployment.Action.DEPLOY:
            fields["compose_file"] = deployment.compose_file
        App.objects.filter(pk=app.pk).update(**fields)
    if not ok:
        activity_log(action=Action.APP_FAILED, user=User.objects.named(app.server.owner_id), target=app.server.container_name,
                     message=f"{deployment.get_action_display()} of app “{app.name}” failed{': ' + note if note else ''}")
    return ok
