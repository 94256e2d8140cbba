"""Everything the panel asks of Docker. The only module that imports the docker SDK.

Functions take plain values, use explicit timeouts, return our own plain data
and raise DockerError with a message a person can read. Asking for what is
already so (stopping a stopped container, removing a missing one) succeeds.
"""

import asyncio
import functools
import http.client
import io
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import stat
import tarfile
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import docker
import docker.constants
import docker.errors
import docker.tls
import requests.exceptions
from django.conf import settings

from controlpanel.text import visible_controls

from ..models import UIDS_PER_SERVER
from . import certificates

log = logging.getLogger(__name__)

INNER_SOCKET_DIR = "/controlpanel"  # where a server's socket directory is mounted inside it
# The image's entry point adds the server's own local socket (see images/dind).
INNER_DOCKERD_ARGS = [f"--host=unix://{INNER_SOCKET_DIR}/docker.sock"]
IDENTITY_DIR = "/etc/controlpanel"  # a server's accounts, read-only (see _write_accounts)
OWNER_HOME = "/home/user"  # rootless: the owner's home, the server's disk
# Rootless: what newuidmap/newgidmap need in the bounding set to map the
# server's uid range. No process holds them: none runs as uid 0 on the host,
# and the image has no other setuid program (images/dind/setup).
ROOTLESS_BOUNDING_CAPS = ["SETUID", "SETGID", "DAC_OVERRIDE", "SYS_ADMIN"]


class DockerError(Exception):
    """A Docker operation failed; str() is fit to show to the user."""


@dataclass(frozen=True)
class Engine:
    """A node's Docker engine, as this process reaches it, with the facts of that node
    its servers are made with. Every call to a node's engine names one: Engine.of(node)."""

    url: str
    subnet: str  # the servers' network on the node: a server's address is its slot + 1 in it
    uid_base: int  # rootless: the root of the server in slot N is uid_base + N × UIDS_PER_SERVER
    tls: certificates.ClientCredentials | None = None  # mutual TLS, for another machine's engine

    @classmethod
    def of(cls, node):
        """The node's engine: the one this process sits next to (NODE_NAME) through its
        local socket, any other over mutual TLS with the panel's certificate for that node."""
        facts = {"subnet": node.server_subnet, "uid_base": node.server_uid_base}
        if node.is_here or node.is_local:
            return cls(url=settings.DOCKER_HOST_URL, **facts)
        return cls(url=node.docker_url, tls=certificates.credentials(node.name), **facts)

    @property
    def is_remote(self):
        return urlsplit(self.url).scheme not in ("unix", "http+unix", "npipe")

    def ssl_context(self):
        """For a raw connection to a remote engine: its certificate checked against the node's
        CA, ours presented. DockerError when the panel holds no certificate for it."""
        if self.tls is None:
            raise DockerError("The panel has no certificate for this node's engine: set the node up again.")
        context = ssl.create_default_context(cafile=self.tls.ca)
        context.load_cert_chain(self.tls.cert, self.tls.key)
        return context


@dataclass(frozen=True)
class ServerSpec:
    """What a virtual server container is made of."""

    container_name: str
    hostname: str
    volume_name: str
    socket_dir: str
    identity_dir: str
    disk_dir: str | None  # its disk's mount on the node; None: a Docker volume (a server from before disks)
    labels: dict
    memory_mb: int
    cpus: float
    pids_limit: int
    slot: int  # its place on this node, its address on the servers' network from it
    uid: int | None  # rootless: the host uid its root maps to; its containers' users follow


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
    if isinstance(error, (requests.exceptions.SSLError, ssl.SSLError)):
        return "The node's engine and the panel could not prove who they are to each other (mutual TLS): set the node up again."
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


def _client(engine, timeout=None):
    """A client per engine and timeout, kept: creating one asks the engine its API version."""
    key = (engine.url, engine.tls, timeout or settings.DOCKER_TIMEOUT)
    with _clients_lock:
        client = _clients.get(key)
    if client is None:
        client = _remote_client(engine, key[2]) if engine.is_remote else \
            docker.DockerClient(base_url=engine.url, timeout=key[2], version="auto")
        with _clients_lock:
            _clients[key] = client
    return client


def forget_clients():
    """Let go of every kept client (a node was removed: its connections must not live on)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


def _remote_client(engine, timeout):
    """Another machine's engine: never a plain TCP socket, the node's engine and the panel
    prove who they are. requests would let REQUESTS_CA_BUNDLE (or a proxy) from the
    environment override the node's CA, so these clients never read the environment."""
    if engine.tls is None:
        raise DockerError("The panel has no certificate for this node's engine: set the node up again.")
    tls = docker.tls.TLSConfig(client_cert=(engine.tls.cert, engine.tls.key), ca_cert=engine.tls.ca, verify=True)
    with docker.APIClient(base_url=engine.url, timeout=timeout, version=docker.constants.DEFAULT_DOCKER_API_VERSION, tls=tls) as probe:
        probe.trust_env = False
        version = probe.version(api_version=False)["ApiVersion"]
    client = docker.DockerClient(base_url=engine.url, timeout=timeout, version=version, tls=tls)
    client.api.trust_env = False
    return client


# Virtual server containers on the host --------------------------------------

def _isolation(spec):
    """(create options, HostConfig options, raw HostConfig fields, data mount point)
    for the isolation mode chosen in settings."""
    mode = settings.SERVER_ISOLATION
    # The CLI's --security-opt systempaths=unconfined: /proc and /sys unmasked,
    # which an inner daemon needs to mount /proc for its own containers.
    unmasked = {"MaskedPaths": [], "ReadonlyPaths": []}
    if mode == "rootless":
        uid = spec.uid
        runtime_dir = f"/run/user/{uid}"
        create = {
            "user": f"{uid}:{uid}",
            "environment": {"HOME": OWNER_HOME, "XDG_RUNTIME_DIR": runtime_dir, "DOCKER_HOST": f"unix://{runtime_dir}/docker.sock"},
            "working_dir": OWNER_HOME,
        }
        host = {
            "cap_drop": ["ALL"],
            "cap_add": ROOTLESS_BOUNDING_CAPS,
            # unshare(CLONE_NEWUSER) and the inner daemon's mounts; AppArmor's docker-default refuses mounts.
            "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
            "devices": ["/dev/net/tun"],  # slirp4netns, inside the server's own network namespace
            # rootlesskit publishes the owner's ports (80, 443 too) as this uid.
            "sysctls": {"net.ipv4.ip_unprivileged_port_start": "0"},
            # Read-only: nothing the server runs, nor a slip of the panel's, can change a
            # file a setuid program or the image's scripts trust. Writable: its disk
            # (the home) and these, in memory, counted in its memory limit.
            "read_only": True,
            "tmpfs": {"/run": "size=16m,mode=0755", runtime_dir: f"size=256m,uid={uid},gid={uid},mode=0700",
                      "/tmp": "size=256m,mode=1777", "/var/tmp": "size=64m,mode=1777"},
        }
        return create, host, unmasked, "/home"
    if mode == "privileged":
        return {}, {"privileged": True, "tmpfs": {"/run": "", "/var/run": ""}}, {}, "/var/lib/docker"
    if mode.startswith("runtime:"):
        return {}, {"runtime": mode.split(":", 1)[1], "tmpfs": {"/run": "", "/var/run": ""}}, {}, "/var/lib/docker"
    # capabilities: every capability but SYS_RESOURCE (which --privileged needs
    # and some hosts lack; see server_create). A private cgroup namespace lets the image's entry
    # point mount cgroups writable for the inner daemon without binding the host's.
    host = {
        "cap_add": ["ALL"],
        "cap_drop": ["SYS_RESOURCE"],
        "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
        "cgroupns": "private",
        "tmpfs": {"/run": "", "/var/run": ""},
    }
    return {}, host, unmasked, "/var/lib/docker"


def _resources(memory_mb, cpus, pids_limit):
    memory = memory_mb * 1024 * 1024
    # memswap == memory: no swap on top of the memory limit.
    return {"mem_limit": memory, "memswap_limit": memory, "nano_cpus": int(cpus * 1e9), "pids_limit": pids_limit}


@_translate_errors
def network_ensure(engine, name):
    """The servers' bridge network on the node, on its subnet, which their fixed
    addresses come from. Returns the subnet.

    Servers on it cannot talk to each other (no inter-container traffic); the
    host, where Caddy runs, reaches every one. A network of that name on
    another subnet (an older panel's) is made again if it is ours and empty.
    """
    client = _client(engine)
    subnet = ipaddress.ip_network(engine.subnet)
    for network in client.networks.list(names=[name]):
        owner, subnets = _network_facts(network)
        if owner != settings.PANEL_INSTANCE:
            # Addresses come from server slots: two panels on one network would hand out the same ones.
            raise DockerError(f"The network {name} belongs to {'the panel ' + repr(owner) if owner else 'someone else'}: "
                              "give this panel a SERVER_NETWORK (and SERVER_NETWORK_SUBNET) of its own.")
        if str(subnet) in subnets:
            return subnet
        if network.attrs.get("Containers"):
            raise DockerError(f"The network {name} is not on {subnet} (SERVER_NETWORK_SUBNET) and is in use: "
                              "choose another SERVER_NETWORK, or move its containers off it.")
        network.remove()
    try:
        client.networks.create(
            name,
            driver="bridge",
            ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet), gateway=str(subnet[1]))]),
            options={"com.docker.network.bridge.enable_icc": "false"},
            labels={"controlpanel.instance": settings.PANEL_INSTANCE},
            check_duplicate=True,
        )
    except docker.errors.APIError:
        # Two first creates at once (two workers): the other is making it, and it is as good.
        for _ in range(50):
            if (settings.PANEL_INSTANCE, True) in {(owner, str(subnet) in subnets)
                                                   for owner, subnets in map(_network_facts, client.networks.list(names=[name]))}:
                return subnet
            time.sleep(0.1)
        raise
    return subnet


def _network_facts(network):
    """(the panel instance it belongs to, its subnets) of a network."""
    network.reload()
    configs = (network.attrs.get("IPAM") or {}).get("Config") or []
    return (network.attrs.get("Labels") or {}).get("controlpanel.instance"), {config.get("Subnet") for config in configs}


def server_slots(engine):
    """How many servers the node has room for: an address each (.1 is the
    network's gateway, the last its broadcast) and, rootless, a uid range each."""
    slots = ipaddress.ip_network(engine.subnet).num_addresses - 3
    if settings.SERVER_ISOLATION == "rootless":
        slots = min(slots, (2**32 - 1 - engine.uid_base) // UIDS_PER_SERVER - 1)
    return slots


def server_disk_path():
    """Where a server's disk is in its container: the owner's home when rootless, else the inner daemon's data."""
    return OWNER_HOME if settings.SERVER_ISOLATION == "rootless" else "/var/lib/docker"


@_translate_errors
def server_create(engine, spec: ServerSpec):
    """Create (not start) the DinD container. An existing one is kept."""
    client = _client(engine)
    try:
        existing = client.api.inspect_container(spec.container_name)
    except docker.errors.NotFound:
        existing = None
    if existing is not None:
        if _is_ours(existing.get("Config", {}).get("Labels"), spec.labels):
            return  # ours, from an earlier attempt
        # Same name, someone else's container (another panel, or by hand): never adopt it.
        raise DockerError(f"A container named {spec.container_name} already exists and does not belong to this server.")
    if not 1 <= spec.slot <= server_slots(engine):
        raise DockerError(f"Slot {spec.slot} is outside this node's {server_slots(engine)} (its subnet and uid base).")
    # A fixed address: while the server exists it is no one else's, so its domains can only reach it.
    address = str(network_ensure(engine, settings.SERVER_NETWORK)[spec.slot + 1])
    rootless = settings.SERVER_ISOLATION == "rootless"
    os.makedirs(spec.socket_dir, mode=0o700, exist_ok=True)
    os.makedirs(spec.identity_dir, mode=0o755, exist_ok=True)
    _write_subordinate_ids(spec)
    if rootless:
        os.chown(spec.socket_dir, spec.uid, spec.uid)  # its daemon makes its socket there
    create, options, raw, data_mount = _isolation(spec)
    mounts = [
        # Its disk (hosting.backends.disks, mounted by the worker), the home itself when rootless; a server
        # from before disks had quotas keeps its Docker volume.
        docker.types.Mount(server_disk_path(), spec.disk_dir, type="bind") if spec.disk_dir else
        docker.types.Mount(data_mount, spec.volume_name, type="volume", labels=spec.labels),
        docker.types.Mount(INNER_SOCKET_DIR, spec.socket_dir, type="bind"),
        docker.types.Mount(IDENTITY_DIR, spec.identity_dir, type="bind", read_only=True),
        *(docker.types.Mount(f"/etc/{name}", os.path.join(spec.identity_dir, name), type="bind", read_only=True)
          for name in ("subuid", "subgid")),
    ]
    # The low-level API, because HostConfig fields like MaskedPaths have no
    # keyword in docker-py: the HostConfig it builds is a dict we can extend.
    host_config = client.api.create_host_config(
        mounts=mounts,
        network_mode=settings.SERVER_NETWORK,
        restart_policy={"Name": "unless-stopped"},
        **_resources(spec.memory_mb, spec.cpus, spec.pids_limit),
        **options,
    )
    host_config.update(raw)
    networking = client.api.create_networking_config(
        {settings.SERVER_NETWORK: client.api.create_endpoint_config(ipv4_address=address)})
    def make():
        client.api.create_container(settings.SERVER_IMAGE, command=INNER_DOCKERD_ARGS, name=spec.container_name,
                                    hostname=spec.hostname, labels=spec.labels, host_config=host_config,
                                    networking_config=networking, **create)

    try:
        make()
    except docker.errors.APIError as error:
        # Engines before 23 give "ALL" every capability the kernel knows, so one the
        # host lacks must be dropped; later ones give only what they hold, and
        # refuse to drop what they lack.
        if "invalid CapDrop" not in str(error) or not host_config.get("CapDrop"):
            raise
        host_config.pop("CapDrop")
        make()
    _write_accounts(client, spec)


def _tar(entries):
    """A tar archive of (name, uid, mode, text or None for a directory) entries."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, uid, mode, text in entries:
            info = tarfile.TarInfo(name)
            info.uid = info.gid = uid
            info.mode = mode
            data = None
            if text is None:
                info.type = tarfile.DIRTYPE
            else:
                data = text.encode()
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _read_file(client, container, path):
    stream, _ = client.api.get_archive(container, path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        member = archive.next()
        return archive.extractfile(member).read().decode()


def _engine_address(engine):
    """("unix", path) or ("tcp", host, port) of the node's engine."""
    url = urlsplit(engine.url)
    if not engine.is_remote:
        return "unix", url.path
    return "tcp", url.hostname, url.port or 2376


def _exec_start_request(exec_id, *, tty):
    """The HTTP request that starts an exec and turns the connection into its raw stream."""
    body = json.dumps({"Detach": False, "Tty": tty}).encode()
    return (f"POST /exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
            f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def _check_started(head):
    status = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
    if status not in (b"101", b"200"):
        raise DockerError(f"Docker refused to start the process in the server ({status.decode(errors='replace')}).")


def _exec_attach(engine, exec_id, timeout):
    """Start an exec without a TTY, blocking: the socket of its stdin (write, then shut
    down for its end) and of Docker's multiplexed output frames, and what came after the head."""
    kind, *where = _engine_address(engine)
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(where[0])
    else:
        sock = engine.ssl_context().wrap_socket(socket.create_connection(tuple(where), timeout=timeout), server_hostname=where[0])
    try:
        sock.sendall(_exec_start_request(exec_id, tty=False))
        head = bytearray()
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            if not data or len(head) > 16384:
                raise DockerError("The Docker engine did not start the process in the server.")
            head += data
        head, _, rest = bytes(head).partition(b"\r\n\r\n")
        _check_started(head)
    except BaseException:
        sock.close()
        raise
    return sock, rest


@_translate_errors
def container_exec(engine, name, command, *, stdin=b"", on_output=None, timeout=300):
    """Run `command` in a server container as its user, `stdin` its input:
    (exit code, its last MiB of output as text). With on_output, each piece of
    output is handed to it as it comes (bytes).

    Past `timeout` seconds in all (not per read: a process that prints a byte
    now and then is still stopped) the wait ends with DockerError; the command
    runs under `timeout` inside the server too, so it is killed there as well.
    """
    deadline = time.monotonic() + timeout
    api = _client(engine).api
    bounded = ["timeout", "-k", "5", str(int(timeout)), *command]
    framed = stdin and _input_framed(engine, tty=False)
    if framed:
        bounded = [INPUT_HELPER, *bounded]
    exec_id = api.exec_create(name, bounded, stdin=bool(stdin), stdout=True, stderr=True)["Id"]
    sock, pending = _exec_attach(engine, exec_id, settings.DOCKER_TIMEOUT)
    output = bytearray()
    try:
        if framed:
            sock.sendall(_frame(stdin) + _frame(b""))
        elif stdin:
            sock.sendall(stdin)
            sock.shutdown(socket.SHUT_WR)
        buffer = bytearray(pending)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DockerError(f"It took longer than {timeout:g}s and was stopped.")
            sock.settimeout(min(left, 5))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            buffer += data
            while len(buffer) >= 8:  # Docker's frames: stream, 3 zero bytes, size, payload
                size = int.from_bytes(buffer[4:8], "big")
                if len(buffer) < 8 + size:
                    break
                chunk = bytes(buffer[8:8 + size])
                del buffer[:8 + size]
                if on_output is not None:
                    on_output(chunk)
                output += chunk
                del output[: max(0, len(output) - 2**20)]
    finally:
        sock.close()
    return api.exec_inspect(exec_id).get("ExitCode"), output.decode("utf-8", "replace")


def _write_identity_file(spec, name, text):
    path = os.path.join(spec.identity_dir, name)
    with open(path + ".new", "w") as file:
        file.write(text)
    os.chmod(path + ".new", 0o644)
    os.replace(path + ".new", path)


def _write_subordinate_ids(spec):
    """Rootless: the server's subordinate ids, for newuidmap, before its container is made."""
    ids = f"user:{spec.uid + 1}:{UIDS_PER_SERVER - 1}\n" if spec.uid is not None else ""
    for name in ("subuid", "subgid"):
        _write_identity_file(spec, name, ids)


def _write_accounts(client, spec):
    """Before the first start (nothing of the tenant's runs yet): the image's own
    accounts and, rootless, the server's uid, with its home in the volume.

    The server's accounts are files of its identity folder on the node
    (root's, mounted read-only): /etc/passwd and group are links into
    IDENTITY_DIR, /etc/subuid and subgid mounts of their own. What newuidmap
    trusts is nothing the tenant can change, and the root filesystem stays
    read-only."""
    accounts = {name: _read_file(client, spec.container_name, f"/usr/share/controlpanel/{name}") for name in ("passwd", "group")}
    if spec.uid is not None:
        accounts["passwd"] += f"user:x:{spec.uid}:{spec.uid}:server owner:{OWNER_HOME}:/bin/bash\n"
        accounts["group"] += f"user:x:{spec.uid}:\n"
    for name, text in accounts.items():
        _write_identity_file(spec, name, text)
    if spec.uid is not None and not spec.disk_dir:  # a disk's top folder is the home, and the uid's already
        # The volume is new, or this server's own from before (its container made again): the
        # engine's extraction refuses a link planted where the folder goes, and nothing runs to race it.
        client.api.put_archive(spec.container_name, "/home", _tar([("user", spec.uid, 0o700, None)]))


@_translate_errors
def container_start(engine, name):
    _client(engine).containers.get(name).start()  # starting a running container is a no-op


# A server's stop is its daemon's shutdown (the signal reaches it): it stops its containers as
# `docker stop` would, each within its own stop timeout, then exits, and the stop is over.
# The engine's kill comes only after SERVER_STOP_SECONDS, which outlasts those timeouts:
# killed, the daemon's containers would be too, and found "Exited (255)" at the next start.

@_translate_errors
def container_stop(engine, name):
    timeout = settings.SERVER_STOP_SECONDS
    try:
        _client(engine, timeout=settings.DOCKER_TIMEOUT + timeout).containers.get(name).stop(timeout=timeout)
    except docker.errors.NotFound:
        pass


@_translate_errors
def container_restart(engine, name):
    timeout = settings.SERVER_STOP_SECONDS
    _client(engine, timeout=settings.DOCKER_TIMEOUT + timeout).containers.get(name).restart(timeout=timeout)


class _Chunks(io.RawIOBase):
    """A file to read from over an iterable of byte chunks (an archive streamed by an engine)."""

    def __init__(self, chunks):
        self._chunks, self._rest = iter(chunks), b""

    def readable(self):
        return True

    def readinto(self, buffer):
        while not self._rest:
            self._rest = next(self._chunks, None)
            if self._rest is None:
                return 0
        size = min(len(buffer), len(self._rest))
        buffer[:size], self._rest = self._rest[:size], self._rest[size:]
        return size


def _shifted(source, sink, top, owners):
    """Copy the tar archive `source` of the folder `top` to `sink` as an archive of what is in
    it, member by member, each owner in the range owners = (first, count, new first) moved to
    the new range. What the members hold is never looked at, only passed on."""
    first, count, new_first = owners

    def shift(uid):
        return uid - first + new_first if first <= uid < first + count else uid

    def inside(name):
        return name[len(top) + 1:] if name.startswith(top + "/") else None

    with tarfile.open(fileobj=source, mode="r|") as archive, tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as copy:
        for member in archive:
            name = inside(member.name)
            if not name:
                continue  # the folder itself: the destination's is made for its owner already
            data = archive.extractfile(member) if member.isfile() else None
            member.name, member.uid, member.gid = name, shift(member.uid), shift(member.gid)
            if member.islnk():
                member.linkname = inside(member.linkname) or member.linkname
            for changed in ("path", "linkpath", "uid", "gid"):  # tarfile would write the old ones over the new
                member.pax_headers.pop(changed, None)
            copy.addfile(member, data)


@_translate_errors
def folder_copy(source_engine, source_name, destination_engine, destination_name, path, owners=(0, 0, 0)):
    """Copy what is in the folder `path` of one stopped container (a mount: a read-only root file
    system takes nothing) to the same folder of another, on another engine, owners moved as
    `owners` says (see _shifted). The archive streams through this process: the engines never
    reach each other."""
    chunks, _ = _client(source_engine).api.get_archive(source_name, path, chunk_size=1024 * 1024)
    read_end, write_end = os.pipe()
    failure = []

    def shift():
        try:
            with io.BufferedReader(_Chunks(chunks), 1024 * 1024) as source, open(write_end, "wb") as sink:
                _shifted(source, sink, os.path.basename(path.rstrip("/")), owners)
        except Exception as error:  # the reader sees the pipe end early; the cause is reported below
            failure.append(error)

    shifter = threading.Thread(target=shift, name="folder-copy", daemon=True)
    shifter.start()
    with open(read_end, "rb") as archive:
        try:
            _client(destination_engine).api.put_archive(destination_name, path, iter(lambda: archive.read(1024 * 1024), b""))
        finally:
            archive.close()  # a failed upload: the shifter's next write fails, and it ends
            shifter.join(60)
    if failure:
        raise DockerError(f"Copying the server's files failed: {failure[0]}")


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
def server_remove(engine, container_name, *, labels, adopt_unlabelled=False, volume_name=None):
    """Remove the server's container, and its volume when named.

    Only what carries this server's labels is removed: a container or volume
    of the same name made by someone else is left alone.
    """
    client = _client(engine)
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


@_translate_errors
def container_update_limits(engine, name, *, memory_mb, cpus, pids_limit):
    client = _client(engine)
    container = client.containers.get(name)
    memory = memory_mb * 1024 * 1024
    # docker-py's update_container() knows neither NanoCpus nor PidsLimit; the API does. The
    # client is a requests session, its base URL and API version public: the endpoint, as documented.
    limits = {"Memory": memory, "MemorySwap": memory, "NanoCpus": int(cpus * 1e9), "PidsLimit": pids_limit}
    url = f"{client.api.base_url}/v{client.api.api_version}/containers/{container.id}/update"
    for attempt in (1, 2):
        try:
            client.api.post(url, json=limits, timeout=settings.DOCKER_TIMEOUT).raise_for_status()
            return
        except requests.exceptions.HTTPError as error:
            if attempt == 2 or error.response is None or error.response.status_code < 500:
                docker.errors.create_api_error_from_http_exception(error)  # raises it with the engine's reason
            time.sleep(1)  # a container in the middle of starting can refuse its cgroups' change for a moment


@_translate_errors
def container_info(engine, name):
    """The container's state, or None when there is no such container."""
    try:
        attrs = _client(engine).api.inspect_container(name)
    except docker.errors.NotFound:
        return None
    networks = attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
    ip = (networks.get(settings.SERVER_NETWORK) or {}).get("IPAddress", "")
    state = attrs.get("State", {})
    return ContainerInfo(name=name, state=state.get("Status", "unknown"), ip_address=ip, started_at=state.get("StartedAt", ""))


# Processes in a server (the terminal and SSH) -------------------------------------
#
# A `docker exec` into the server container, through the host's engine: it
# runs as the container's user (in rootless mode the server's unprivileged
# uid, never root), so the owner gets no more than a shell of their own.
#
# Docker ends a process's input when its connection is half-closed, which it
# does not take over TLS. On another node's engine a process without a TTY
# runs under the server image's controlpanel-input, and its input goes in
# frames (a 4-byte length, then the bytes), an empty frame its end.

INPUT_HELPER = "controlpanel-input"


def _input_framed(engine, *, tty):
    return engine.is_remote and not tty


def _frame(data):
    return len(data).to_bytes(4, "big") + data


class _FramedWriter:
    """The input of a process on another node, as an asyncio writer whose write_eof works."""

    def __init__(self, writer):
        self._writer = writer

    def write(self, data):
        if data:  # an empty frame is the end
            self._writer.write(_frame(bytes(data)))

    def can_write_eof(self):
        return True

    def write_eof(self):
        self._writer.write(_frame(b""))

    def __getattr__(self, name):
        return getattr(self._writer, name)


@_translate_errors
def exec_create(engine, container, command, *, tty, env=None):
    """An exec, not started yet; its id. stdin is always attached."""
    if _input_framed(engine, tty=tty):
        command = [INPUT_HELPER, *command]
    return _client(engine).api.exec_create(container, command, stdin=True, tty=tty, environment=env or {})["Id"]


@_translate_errors
def exec_resize(engine, exec_id, *, rows, cols):
    _client(engine).api.exec_resize(exec_id, height=rows, width=cols)


@_translate_errors
def exec_inspect(engine, exec_id):
    """(running, exit code) of an exec."""
    info = _client(engine).api.exec_inspect(exec_id)
    return info.get("Running", False), info.get("ExitCode")


async def exec_stream(engine, exec_id, *, tty, timeout=10):
    """Start an exec and return its raw stream (asyncio reader, writer): what is
    written is its stdin; with a TTY what is read is the terminal's output,
    without one Docker's multiplexed frames. Closing the writer is, for the
    process, its stdin ending."""
    kind, *where = _engine_address(engine)
    try:
        if kind == "unix":
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(where[0]), timeout)
        else:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*where, ssl=engine.ssl_context(), server_hostname=where[0]), timeout)
        writer.write(_exec_start_request(exec_id, tty=tty))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise DockerError("The Docker engine did not start the process in the server.") from None
    try:
        _check_started(head)
    except DockerError:
        writer.close()
        raise
    return reader, _FramedWriter(writer) if _input_framed(engine, tty=tty) else writer


# Inner daemons ----------------------------------------------------------------
#
# A server's daemon listens on docker.sock in its socket folder, which the
# server can write: its owner may put anything there, a symlink to the host's
# Docker socket or to another server's included. The panel opens that entry
# without following links and connects only if it is a socket, through the
# descriptor it checked, so nothing inside can re-point it; whatever answers
# is treated as hostile (bounded, never trusted).

def inner_socket_path(socket_dir):
    return os.path.join(socket_dir, "docker.sock")


def inner_connect(socket_dir, timeout):
    """A connected unix socket to the server's own daemon, or DockerError."""
    try:
        fd = os.open(inner_socket_path(socket_dir), os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DockerError("The server's Docker daemon is not listening.") from None
    except OSError as error:
        raise DockerError(f"The server's Docker socket cannot be opened ({error.strerror}).") from None
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise DockerError("The server's Docker socket has been replaced by something that is not a socket.")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(f"/proc/self/fd/{fd}")  # the checked inode, not the path again
        except OSError:
            sock.close()
            raise DockerError("The server's Docker daemon is not answering.") from None
        return sock
    finally:
        os.close(fd)


class _InnerConnection(http.client.HTTPConnection):
    def __init__(self, socket_dir, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_dir = socket_dir

    def connect(self):
        self.sock = inner_connect(self.socket_dir, self.timeout)


def _inner_request(socket_dir, method, path, *, timeout, max_bytes=1024 * 1024, body=None, headers=None):
    """(status, body bytes) of one request to a server's daemon, bounded in time and size."""
    connection = _InnerConnection(socket_dir, timeout)
    deadline = time.monotonic() + timeout
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        data = bytearray()
        while chunk := response.read1(64 * 1024):  # what has come, so the deadline is checked often
            data += chunk
            if len(data) > max_bytes:
                raise DockerError(f"The server's daemon's answer is larger than {max_bytes} bytes.")
            if time.monotonic() > deadline:
                raise DockerError(f"The server's daemon took longer than {timeout:g}s to answer.")
        return response.status, bytes(data)
    except TimeoutError:
        raise DockerError(f"The server's daemon took longer than {timeout:g}s to answer.") from None
    except (OSError, http.client.HTTPException):
        raise DockerError("The server's Docker daemon did not answer properly.") from None
    finally:
        connection.close()


def _inner_json(socket_dir, method, path, *, timeout, max_bytes=1024 * 1024, body=None, ok=(200, 201, 204)):
    status, data = _inner_request(socket_dir, method, path, timeout=timeout, max_bytes=max_bytes,
                                  body=None if body is None else json.dumps(body))
    if status not in ok:
        raise DockerError(f"The server's daemon refused: {_inner_message(data)}")
    try:
        return json.loads(data) if data else None
    except ValueError:
        raise DockerError("The server's daemon answered with something that is not JSON.") from None


def _inner_message(data):
    try:
        message = json.loads(data).get("message", "")
    except (ValueError, AttributeError):
        message = data.decode("utf-8", "replace")
    return visible_controls(str(message)[:300]) or "no reason given"


CONTAINER_ID = re.compile(r"[0-9a-f]{12,64}")


def _container_path(docker_id):
    if not CONTAINER_ID.fullmatch(docker_id or ""):
        raise DockerError("That is not a container id.")
    return f"/containers/{docker_id}"


def inner_container_action(socket_dir, docker_id, action):
    """start, stop, restart or remove (forcibly) a container inside a server."""
    path = _container_path(docker_id)
    if action == "remove":
        _inner_json(socket_dir, "DELETE", f"{path}?force=1", timeout=30, ok=(204, 404))
    elif action in ("start", "stop", "restart"):
        wait = "?t=10" if action != "start" else ""
        _inner_json(socket_dir, "POST", f"{path}/{action}{wait}", timeout=40, ok=(204, 304))
    else:
        raise DockerError(f"Unknown container action {action!r}.")


IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


def inner_images_json(socket_dir, *, max_bytes=4 * 1024 * 1024):
    """`GET /images/json` of a server's daemon, parsed (bounded: it comes from inside)."""
    return _inner_json(socket_dir, "GET", "/images/json", timeout=20, max_bytes=max_bytes)


def inner_image_remove(socket_dir, image_id):
    """Remove an image (by id, with every tag it has) from a server's daemon; one a container uses is refused, in words."""
    if not IMAGE_ID.fullmatch(image_id or ""):
        raise DockerError("That is not an image id.")
    _inner_json(socket_dir, "DELETE", f"/images/{image_id}?force=1&noprune=0", timeout=60, max_bytes=1024 * 1024, ok=(200, 404))


def inner_container_tty(socket_dir, docker_id):
    """Whether a container inside a server has a TTY (its logs then come without stream headers)."""
    info = _inner_json(socket_dir, "GET", f"{_container_path(docker_id)}/json", timeout=10, max_bytes=4 * 1024 * 1024)
    return bool(isinstance(info, dict) and isinstance(info.get("Config"), dict) and info["Config"].get("Tty"))


async def inner_stream(socket_dir, path, *, timeout=10):
    """An HTTP/1.0 GET to a server's daemon, for a body that streams (a log that follows):
    (status, asyncio reader of the body, writer). HTTP/1.0: the body is not chunked,
    it ends when the daemon closes the connection."""
    sock = inner_connect(socket_dir, timeout)
    sock.setblocking(False)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
    await writer.drain()
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        writer.close()
        raise DockerError("The server's Docker daemon did not answer properly.") from None
    parts = head.split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), reader, writer


def inner_ping(socket_dir, timeout=5):
    status, data = _inner_request(socket_dir, "GET", "/_ping", timeout=timeout, max_bytes=1024)
    if status != 200:
        raise DockerError("The server's Docker daemon is not ready.")
    return True


def inner_containers_json(socket_dir, *, timeout, max_bytes):
    """`GET /containers/json?all=1` of a server's daemon, parsed, cut off past
    `max_bytes` or when the whole read takes longer than `timeout`."""
    return _inner_json(socket_dir, "GET", "/containers/json?all=1", timeout=timeout, max_bytes=max_bytes)


@_translate_errors
def host_containers_json(engine, *, timeout):
    """`GET /containers/json?all=1` of a node's engine (the panel's own: trusted)."""
    return _client(engine, timeout=timeout).api.containers(all=True)


@_translate_errors
def engine_facts(engine):
    """What the admin dashboard shows about a node's engine."""
    info = _client(engine, timeout=5).info()
    return {"cpus": info.get("NCPU"), "memory_bytes": info.get("MemTotal"), "docker_version": info.get("ServerVersion")}


@_translate_errors
def engine_ping(engine):
    return _client(engine, timeout=5).ping()
