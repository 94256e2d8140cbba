"""Everything the panel asks of Docker. The only module that imports the docker SDK.

Functions take plain values, use explicit timeouts, return our own plain data
and raise DockerError with a message a person can read. Asking for what is
already so (stopping a stopped container, removing a missing one) succeeds.
"""

import functools
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass

import docker
import docker.errors
import requests.exceptions
from django.conf import settings

log = logging.getLogger(__name__)

INNER_SOCKET_DIR = "/controlpanel"  # where a server's socket directory is mounted inside it
INNER_DOCKERD_ARGS = ["--host=unix:///var/run/docker.sock", f"--host=unix://{INNER_SOCKET_DIR}/docker.sock"]


class DockerError(Exception):
    """A Docker operation failed; str() is fit to show to the user."""


@dataclass(frozen=True)
class ServerSpec:
    """What a virtual server container is made of."""

    container_name: str
    hostname: str
    volume_name: str
    socket_dir: str
    labels: dict
    memory_mb: int
    cpus: float
    pids_limit: int


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    state: str  # created, running, restarting, paused, exited, dead
    ip_address: str
    started_at: str


def _readable(error):
    if isinstance(error, docker.errors.ImageNotFound):
        return "The server image is missing on the Docker host: " + _explanation(error)
    if isinstance(error, docker.errors.NotFound):
        return "Docker could not find it: " + _explanation(error)
    if isinstance(error, docker.errors.APIError):
        return "Docker refused: " + _explanation(error)
    if isinstance(error, requests.exceptions.Timeout):
        return "The Docker engine did not answer in time."
    if isinstance(error, (requests.exceptions.ConnectionError, docker.errors.DockerException, OSError)):
        return "The Docker engine is not reachable. Try again later or ask an administrator."
    return f"Docker failed: {error}"


def _explanation(error):
    return str(getattr(error, "explanation", None) or error)


def _translate_errors(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DockerError:
            raise
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as error:
            log.warning("docker %s failed: %s", func.__name__, error)
            raise DockerError(_readable(error)) from error

    return wrapper


_clients = {}
_clients_lock = threading.Lock()


def _client(base_url=None, timeout=None):
    """A client per daemon and timeout, kept: creating one asks the daemon its API version."""
    key = (base_url or settings.DOCKER_HOST_URL, timeout or settings.DOCKER_TIMEOUT)
    with _clients_lock:
        client = _clients.get(key)
    if client is None:
        client = docker.DockerClient(base_url=key[0], timeout=key[1], version="auto")
        with _clients_lock:
            _clients[key] = client
    return client


def forget_client(base_url):
    """Drop cached clients of a daemon that is gone (a deleted server's socket)."""
    with _clients_lock:
        for key in [k for k in _clients if k[0] == base_url]:
            _clients.pop(key).close()


def inner_socket_url(socket_dir):
    return f"unix://{socket_dir}/docker.sock"


# Virtual server containers on the host --------------------------------------

def _isolation_options():
    """HostConfig options for the isolation mode chosen in settings."""
    mode = settings.SERVER_ISOLATION
    if mode == "privileged":
        return {"privileged": True}
    if mode.startswith("runtime:"):
        return {"runtime": mode.split(":", 1)[1]}
    # Every capability but SYS_RESOURCE (which --privileged needs and some
    # hosts lack). A private cgroup namespace lets the image's entry point
    # mount cgroups writable for the inner daemon without binding the host's.
    return {
        "cap_add": ["ALL"],
        "cap_drop": ["SYS_RESOURCE"],
        "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
        "cgroupns": "private",
        # The CLI's --security-opt systempaths=unconfined: /proc and /sys unmasked.
        "raw": {"MaskedPaths": [], "ReadonlyPaths": []},
    }


def _resources(memory_mb, cpus, pids_limit):
    memory = memory_mb * 1024 * 1024
    # memswap == memory: no swap on top of the memory limit.
    return {"mem_limit": memory, "memswap_limit": memory, "nano_cpus": int(cpus * 1e9), "pids_limit": pids_limit}


@_translate_errors
def network_ensure(name):
    """The users' bridge network. Servers on it cannot talk to each other (no
    inter-container traffic); the host, where Caddy runs, reaches every one."""
    client = _client()
    if not client.networks.list(names=[name]):
        client.networks.create(
            name,
            driver="bridge",
            options={"com.docker.network.bridge.enable_icc": "false"},
            labels={"controlpanel.instance": settings.PANEL_INSTANCE},
        )


@_translate_errors
def server_create(spec: ServerSpec):
    """Create (not start) the DinD container. An existing one is kept."""
    client = _client()
    try:
        existing = client.api.inspect_container(spec.container_name)
    except docker.errors.NotFound:
        existing = None
    if existing is not None:
        if _is_ours(existing.get("Config", {}).get("Labels"), spec.labels):
            return  # ours, from an earlier attempt
        # Same name, someone else's container (another panel, or by hand): never adopt it.
        raise DockerError(f"A container named {spec.container_name} already exists and does not belong to this server.")
    network_ensure(settings.SERVER_NETWORK)
    os.makedirs(spec.socket_dir, mode=0o700, exist_ok=True)
    options = _isolation_options()
    raw = options.pop("raw", {})
    mounts = [
        docker.types.Mount("/var/lib/docker", spec.volume_name, type="volume", labels=spec.labels),
        docker.types.Mount(INNER_SOCKET_DIR, spec.socket_dir, type="bind"),
        *options.pop("mounts", []),
    ]
    # The low-level API, because HostConfig fields like MaskedPaths have no
    # keyword in docker-py: the HostConfig it builds is a dict we can extend.
    host_config = client.api.create_host_config(
        mounts=mounts,
        tmpfs={"/run": "", "/var/run": ""},
        network_mode=settings.SERVER_NETWORK,
        restart_policy={"Name": "unless-stopped"},
        **_resources(spec.memory_mb, spec.cpus, spec.pids_limit),
        **options,
    )
    host_config.update(raw)
    client.api.create_container(
        settings.SERVER_IMAGE,
        command=INNER_DOCKERD_ARGS,
        name=spec.container_name,
        hostname=spec.hostname,
        labels=spec.labels,
        host_config=host_config,
    )


@_translate_errors
def container_start(name):
    _client().containers.get(name).start()  # starting a running container is a no-op


@_translate_errors
def container_stop(name, timeout=10):
    try:
        _client(timeout=settings.DOCKER_TIMEOUT + timeout).containers.get(name).stop(timeout=timeout)
    except docker.errors.NotFound:
        pass


@_translate_errors
def container_restart(name, timeout=10):
    _client(timeout=settings.DOCKER_TIMEOUT + timeout).containers.get(name).restart(timeout=timeout)


def _is_ours(labels, expected, adopt_unlabelled=False):
    """Whether Docker labels name the same panel instance and server as `expected`.

    Containers moved over from the legacy platform carry no labels at all:
    for those servers an unlabelled container of the right name counts.
    """
    labels = labels or {}
    if adopt_unlabelled and not any(key.startswith("controlpanel.") for key in labels):
        return True
    return all(labels.get(key) == expected[key] for key in ("controlpanel.instance", "controlpanel.server-id"))


@_translate_errors
def server_remove(container_name, *, labels, adopt_unlabelled=False, volume_name=None, socket_dir=None):
    """Remove the server's container, and its volume and socket directory when named.

    Only what carries this server's labels is removed: a container or volume
    of the same name made by someone else is left alone.
    """
    client = _client()
    try:
        container = client.containers.get(container_name)
        if _is_ours(container.labels, labels, adopt_unlabelled):
            container.remove(force=True)
        else:
            log.warning("not removing %s: it does not belong to this server", container_name)
    except docker.errors.NotFound:
        pass
    if volume_name:
        try:
            volume = client.volumes.get(volume_name)
            if _is_ours(volume.attrs.get("Labels"), labels, adopt_unlabelled):
                volume.remove(force=True)
        except docker.errors.NotFound:
            pass
    if socket_dir:
        shutil.rmtree(socket_dir, ignore_errors=True)
        forget_client(inner_socket_url(socket_dir))


@_translate_errors
def container_update_limits(name, *, memory_mb, cpus, pids_limit):
    client = _client()
    container = client.containers.get(name)
    memory = memory_mb * 1024 * 1024
    # docker-py's update() knows neither NanoCpus nor PidsLimit; the API does.
    client.api._post_json(
        client.api._url("/containers/{0}/update", container.id),
        data={"Memory": memory, "MemorySwap": memory, "NanoCpus": int(cpus * 1e9), "PidsLimit": pids_limit},
    ).raise_for_status()


@_translate_errors
def container_info(name):
    """The container's state, or None when there is no such container."""
    try:
        attrs = _client().api.inspect_container(name)
    except docker.errors.NotFound:
        return None
    networks = attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
    ip = (networks.get(settings.SERVER_NETWORK) or {}).get("IPAddress", "")
    state = attrs.get("State", {})
    return ContainerInfo(name=name, state=state.get("Status", "unknown"), ip_address=ip, started_at=state.get("StartedAt", ""))


# Inner daemons ----------------------------------------------------------------

@_translate_errors
def inner_ping(socket_dir, timeout=5):
    return _client(inner_socket_url(socket_dir), timeout=timeout).ping()


def inner_wait(socket_dir, timeout=60):
    """Wait until a just-started server's inner daemon answers; DockerError if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return inner_ping(socket_dir, timeout=2)
        except DockerError:
            if time.monotonic() > deadline:
                raise DockerError(f"The server's Docker daemon did not answer within {timeout:g}s.") from None
            time.sleep(0.1)


# For benchmarks and tests: acting inside a server as its owner would -------------

@_translate_errors
def image_copy_to_inner(image, socket_dir):
    """Copy an image from the host into a server's inner daemon (no registry needed)."""
    data = _client().images.get(image).save(named=True)  # keep the tag
    _client(inner_socket_url(socket_dir), timeout=120).images.load(b"".join(data))


@_translate_errors
def inner_container_run(socket_dir, image, command, *, name=None, ports=None):
    """Start a container inside a server (tests and benchmarks use this)."""
    container = _client(inner_socket_url(socket_dir)).containers.run(
        image, command, name=name, ports=ports or {}, detach=True
    )
    return container.id


@_translate_errors
def container_memory_usage(name):
    """Bytes of memory the container uses now (page cache excluded)."""
    stats = _client().api.stats(name, stream=False)["memory_stats"]
    cache = stats.get("stats", {}).get("inactive_file", stats.get("stats", {}).get("cache", 0))
    return stats.get("usage", 0) - cache


@_translate_errors
def containers_json(base_url, *, timeout, max_bytes):
    """`GET /containers/json?all=1` of one daemon, as parsed JSON, read with limits.

    The answer may come from a daemon a tenant controls: it is cut off past
    `max_bytes` or when the whole read takes longer than `timeout`.
    """
    client = _client(base_url, timeout=timeout)
    deadline = time.monotonic() + timeout
    response = client.api._get(client.api._url("/containers/json"), params={"all": 1}, stream=True)
    try:
        response.raise_for_status()
        body = bytearray()
        for chunk in response.iter_content(64 * 1024):
            body += chunk
            if len(body) > max_bytes:
                raise DockerError(f"The daemon's container list is larger than {max_bytes} bytes.")
            if time.monotonic() > deadline:
                raise DockerError(f"The daemon took longer than {timeout:g}s to list its containers.")
    finally:
        response.close()
    try:
        return json.loads(body)
    except ValueError:
        raise DockerError("The daemon answered with something that is not JSON.") from None


@_translate_errors
def engine_facts():
    """What the admin dashboard shows about the Docker host."""
    info = _client(timeout=5).info()
    return {"cpus": info.get("NCPU"), "memory_bytes": info.get("MemTotal"), "docker_version": info.get("ServerVersion")}


@_translate_errors
def engine_ping():
    return _client(timeout=5).ping()
