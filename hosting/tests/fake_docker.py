"""A stand-in for hosting.backends.docker (and the node's disks, hosting.backends.disks), for fast unit
tests: records calls, keeps container states and mounts."""

from hosting.backends import disks, docker


class FakeDocker:
    def __init__(self):
        self.containers = {}  # name -> state
        self.calls = []
        self.fail_with = None  # a message: every call raises DockerError
        self.inner = {}  # a server's socket folder (str) -> its /containers/json answer
        self.down = set()  # the URLs of engines that do not answer (their nodes are away)
        self.started_at = {}  # name -> when it last started, in the engine's words (a new value each start)
        self.images = {}  # a server's socket folder (str) -> its /images/json answer

    def _call(self, name, *args):
        self.calls.append((name, *args))
        if self.fail_with:
            raise docker.DockerError(self.fail_with)

    def server_create(self, engine, spec):
        self._call("server_create", spec.container_name)
        self.last_engine = engine
        self.containers.setdefault(spec.container_name, "created")
        self.last_spec = spec

    def container_start(self, engine, name):
        self._call("container_start", name)
        if self.containers.get(name) != "running":
            self.started_at[name] = f"start {len(self.calls)}"
        self.containers[name] = "running"

    def container_stop(self, engine, name):
        self._call("container_stop", name)
        if name in self.containers:
            self.containers[name] = "exited"

    def container_restart(self, engine, name):
        self._call("container_restart", name)
        self.started_at[name] = f"start {len(self.calls)}"
        self.containers[name] = "running"

    def server_remove(self, engine, container_name, *, labels, adopt_unlabelled=False, volume_name=None):
        self.calls.append(("server_remove", container_name, volume_name))
        self.containers.pop(container_name, None)

    def container_update_limits(self, engine, name, **limits):
        self._call("container_update_limits", name, limits)

    def host_containers_json(self, engine, *, timeout):
        """The server containers, as the host lists them."""
        if self.fail_with or engine.url in self.down:
            raise docker.DockerError(self.fail_with or "The Docker engine is not reachable.")
        return [{"Id": f"{n:0>12}", "Names": [f"/{name}"], "State": state, "Status": "Up 2 seconds" if state == "running" else "Exited (0)"}
                for n, (name, state) in enumerate(self.containers.items())]

    def inner_containers_json(self, socket_dir, *, timeout, max_bytes):
        """What the test put in `inner` for this server (nothing by default)."""
        if self.fail_with:
            raise docker.DockerError(self.fail_with)
        return self.inner.get(socket_dir, [])

    def inner_images_json(self, socket_dir):
        if self.fail_with:
            raise docker.DockerError(self.fail_with)
        return self.images.get(socket_dir, [])

    def inner_image_remove(self, socket_dir, image_id):
        self._call("inner_image_remove", image_id)
        self.images[socket_dir] = [image for image in self.images.get(socket_dir, []) if not (isinstance(image, dict) and image.get("Id") == image_id)]

    def engine_facts(self, engine):
        return {"cpus": 2, "memory_bytes": 24 * 2**30, "docker_version": "20.10.24"}

    def container_info(self, engine, name):
        if self.fail_with:
            raise docker.DockerError(self.fail_with)
        state = self.containers.get(name)
        return docker.ContainerInfo(name=name, state=state, ip_address="172.30.0.2", started_at=self.started_at.get(name, "")) if state else None


class FakeDisks:
    def __init__(self, fake):
        self.fake = fake
        self.mounted = {}  # mount point -> size in MB (0: a socket folder)

    def disk_ensure(self, *, image, mountpoint, size_mb, owner_uid):
        self.fake._call("disk_ensure", mountpoint, size_mb)
        fresh = mountpoint not in self.mounted
        self.mounted[mountpoint] = size_mb
        return fresh

    def socket_folder_ensure(self, path, *, owner_uid):
        fresh = path not in self.mounted
        self.mounted[path] = 0
        return fresh

    def unmount(self, path):
        self.mounted.pop(path, None)

    def disk_remove(self, *, image, mountpoint, keep_image=False):
        self.fake._call("disk_remove", mountpoint, keep_image)
        self.mounted.pop(mountpoint, None)

    def folder_remove(self, path):
        self.mounted.pop(path, None)

    def disk_usage(self, mountpoint):
        size = self.mounted.get(mountpoint)
        total = size * 1024 * 1024
        return None if not size else disks.Usage(used_bytes=total // 10, total_bytes=total, free_bytes=total - total // 10)


def install(monkeypatch):
    fake = FakeDocker()
    for attr in ("server_create", "container_start", "container_stop", "container_restart", "server_remove",
                 "container_update_limits", "container_info", "host_containers_json", "inner_containers_json", "engine_facts",
                 "inner_images_json", "inner_image_remove"):
        monkeypatch.setattr(docker, attr, getattr(fake, attr))
    fake.disks = FakeDisks(fake)
    for attr in ("disk_ensure", "socket_folder_ensure", "unmount", "disk_remove", "folder_remove", "disk_usage"):
        monkeypatch.setattr(disks, attr, getattr(fake.disks, attr))
    return fake
