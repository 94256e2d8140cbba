"""Acting inside a server as its owner would, and watching it from the host: for the
benchmarks and the tests, never for the panel (which reaches inner daemons only
through hosting.backends.docker, and trusts nothing inside).

These drive the docker SDK directly, at the node's engine and at a server's own
socket, on servers the benchmark or test made itself.
"""

import time

import docker as docker_sdk
from django.conf import settings

from hosting.backends import docker

TEST_APP_IMAGE = "controlpanel/testapp:local"  # busybox in an empty root (hosting/images/build)
# A compose app of two services that runs where no registry is: a web server on 8081, and a worker.
TWO_SERVICE_APP = f"""services:
  web:
    image: {TEST_APP_IMAGE}
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["8081:8080"]
  worker:
    image: {TEST_APP_IMAGE}
    command: ["sh", "-c", "while :; do echo working; sleep 5; done"]
"""


def host_engine():
    return docker_sdk.DockerClient(base_url=settings.DOCKER_HOST_URL, timeout=120)


def inner_engine(socket_dir):
    return docker_sdk.DockerClient(base_url=f"unix://{docker.inner_socket_path(socket_dir)}", timeout=120)


def inner_wait(socket_dir, timeout=60):
    """Wait until a just-started server's inner daemon answers; DockerError if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return docker.inner_ping(socket_dir, timeout=2)
        except docker.DockerError:
            if time.monotonic() > deadline:
                raise docker.DockerError(f"The server's Docker daemon did not answer within {timeout:g}s.") from None
            time.sleep(0.1)


def image_copy_to_inner(image, socket_dir):
    """Copy an image from the host into a server's inner daemon (no registry needed), its tag kept."""
    archive = b"".join(host_engine().images.get(image).save(named=True))
    inner_engine(socket_dir).images.load(archive)


def inner_container_run(socket_dir, image, command, *, name=None, ports=None):
    """Create and start a container inside a server; `ports` maps "8080/tcp" to a published port. Its id."""
    return inner_engine(socket_dir).containers.run(image, command, name=name, ports=ports or {}, detach=True).id


def container_process_memory(name):
    """Proportional set size in bytes of the container's processes, by command name
    (read from the host's /proc: for benchmarks run on the Docker host)."""
    usage = {}
    for (pid, command) in host_engine().api.top(name, ps_args="-eo pid,comm")["Processes"]:
        try:
            rollup = open(f"/proc/{pid}/smaps_rollup").read()
        except OSError:
            continue  # gone, or not ours to read
        pss = next((int(line.split()[1]) * 1024 for line in rollup.splitlines() if line.startswith("Pss:")), 0)
        usage[command] = usage.get(command, 0) + pss
    return usage


def container_memory_usage(name):
    """Bytes of memory the container uses now (page cache excluded)."""
    stats = host_engine().api.stats(name, stream=False)["memory_stats"]
    cache = stats.get("stats", {}).get("inactive_file", stats.get("stats", {}).get("cache", 0))
    return stats.get("usage", 0) - cache
