"""Real extra nodes on one machine, for the tests and benchmark_monitor: each a Docker
engine of its own in a network namespace this module makes (its own data and exec
roots, its own bridge), reached over mutual TLS at its namespace address, as a
machine added to the panel would be. Everything it
makes (namespace, veth pair, engine, folders) it removes again; nothing of the host's
network is touched but the host end of each veth pair."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hosting.backends import docker


def _run(*command):
    subprocess.run(command, check=True, capture_output=True)


def certificate_request(name):
    """(key PEM, request PEM), as deploy/node/install makes them on the machine."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])).sign(key, hashes.SHA256())
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            request.public_bytes(serialization.Encoding.PEM).decode())


class ExtraNode:
    def __init__(self, index):
        self.index = index
        subnet = (os.getpid() % 60) * 4 + index  # apart from another run's
        self.host_address, self.address = f"10.249.{subnet}.1", f"10.249.{subnet}.2"
        self.netns = f"cpt-node{index}-{os.getpid()}"
        self.veth = f"cpn{index}h{os.getpid() % 10000}"
        self.root = Path(tempfile.mkdtemp(prefix=f"cpn{index}-"))
        self.socket = self.root / "d.sock"  # its local socket: what the node's own worker would use
        self.process = self.caddy = None
        self.key, self.csr = certificate_request(f"node{index}")

    @property
    def url(self):
        return f"tcp://{self.address}:2376"

    def make_network(self):
        _run("ip", "netns", "add", self.netns)
        _run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        _run("ip", "addr", "add", f"{self.host_address}/30", "dev", self.veth)
        _run("ip", "link", "set", self.veth, "up")
        inside = ["nsenter", f"--net=/var/run/netns/{self.netns}"]
        _run(*inside, "ip", "addr", "add", f"{self.address}/30", "dev", "eth0")
        _run(*inside, "ip", "link", "set", "eth0", "up")
        _run(*inside, "ip", "link", "set", "lo", "up")

    def install(self, ca, certificate):
        """The files deploy/node/install leaves on the machine: the node's CA (which signed the
        panel's certificate) and its own key and certificate."""
        (self.root / "ca.pem").write_text(ca)
        (self.root / "cert.pem").write_text(certificate)
        (self.root / "key.pem").write_bytes(self.key)
        os.chmod(self.root / "key.pem", 0o600)

    def start(self):
        """Its engine, as deploy/node/install starts it: --tlsverify on its address, its own socket.
        `nsenter --net` (not `ip netns exec`, which remounts /sys and hides the cgroups)."""
        self.process = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{self.netns}", "dockerd",
             "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "x"), "--pidfile", str(self.root / "pid"),
             "--cgroup-parent", self.netns, "-H", f"unix://{self.socket}", "-H", f"tcp://{self.address}:2376",
             "--tlsverify", "--tlscacert", str(self.root / "ca.pem"), "--tlscert", str(self.root / "cert.pem"),
             "--tlskey", str(self.root / "key.pem")],
            stdout=open(self.root / "dockerd.log", "ab"), stderr=subprocess.STDOUT)

    def start_caddy(self):
        """Its users' Caddy, as deploy/node runs it: on the machine's own addresses (ports 80 and
        443 in its namespace), its admin API a unix socket the node's worker shares. Returns the
        worker's settings for it."""
        admin = self.root / "caddy-admin.sock"
        settings = {"CADDY_ADMIN_URL": f"unix://{admin}", "CADDY_ADMIN_LISTEN": f"unix/{admin}", "CADDY_HTTP_PORT": "80",
                    "CADDY_HTTPS_PORT": "443", "CADDY_LISTEN_HOST": "", "CADDY_TLS_ISSUER": "internal"}
        if self.caddy and self.caddy.poll() is None:
            return settings
        (self.root / "caddy.json").write_text(json.dumps({"admin": {"listen": f"unix/{admin}"}}))
        env = {**os.environ, "XDG_DATA_HOME": str(self.root / "caddy-data"), "XDG_CONFIG_HOME": str(self.root / "caddy-config")}
        self.caddy = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{self.netns}", "caddy", "run", "--config", str(self.root / "caddy.json")],
                                      env=env, stdout=open(self.root / "caddy.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not admin.exists():
            if time.monotonic() > deadline or self.caddy.poll() is not None:
                raise AssertionError(f"node {self.index}'s Caddy did not start: {(self.root / 'caddy.log').read_text()[-2000:]}")
            time.sleep(0.1)
        return settings

    def wait(self, engine, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return docker.engine_ping(engine)
            except docker.DockerError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError(f"node {self.index}'s engine did not start: {(self.root / 'dockerd.log').read_text()[-2000:]}")
                time.sleep(0.3)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def local_client(self):
        """The node's own engine through its socket, for the test to put things on it."""
        import docker as docker_sdk

        return docker_sdk.DockerClient(base_url=f"unix://{self.socket}", timeout=60)

    def remove(self):
        self.stop()
        if self.caddy:
            self.caddy.terminate()
            self.caddy.wait(10)
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        # What the engine mounted under its roots, should it have died without letting go.
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if line.split()[1].startswith(str(self.root))]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        # Its containers' cgroups (--cgroup-parent), empty now: folders only rmdir takes away.
        cgroups = Path("/sys/fs/cgroup")
        for parent in [*cgroups.glob(f"*/{self.netns}"), *cgroups.glob(self.netns)]:  # v1 hierarchies, or v2
            for folder in sorted((p for p in parent.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                folder.rmdir()
            parent.rmdir()
