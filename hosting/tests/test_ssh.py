"""SSH, SCP and SFTP into servers with Debian's OpenSSH client, through the real gateway."""

import os
import signal
import subprocess
import time

import pytest
import requests

from accounts import services as account_services
from accounts.models import ActivityLog, SshKey
from hosting.activity import Action
from hosting.benchmarks import inside

from .conftest import TEST_APP_IMAGE, free_port, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker, pytest.mark.usefixtures("eager_tasks")]


class Ssh:
    def __init__(self, gateway, key, login, tmp_path):
        self.gateway, self.key, self.login, self.known = gateway, key, login, tmp_path / "known_hosts"

    def options(self, port_flag="-p", log_level="ERROR"):
        return [port_flag, str(self.gateway.ssh_port), "-i", str(self.key), "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={self.known}",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-o", f"LogLevel={log_level}"]

    def run(self, *command, stdin=None, timeout=60):
        return subprocess.run(["ssh", *self.options(), f"{self.login}@127.0.0.1", *command], input=stdin,
                              capture_output=True, timeout=timeout)

    def scp(self, source, target):
        return subprocess.run(["scp", *self.options("-P"), source, target], capture_output=True, timeout=120)

    def sftp(self, batch):
        return subprocess.run(["sftp", *self.options("-P"), "-b", "-", f"{self.login}@127.0.0.1"], input=batch.encode(),
                              capture_output=True, timeout=120)


@pytest.fixture
def alice_ssh(gateway, running_server, alice, keys, tmp_path):
    key = keys("alice")
    account_services.ssh_key_add(user=alice, name="laptop", public_key=key.with_suffix(".pub").read_text())
    return Ssh(gateway(), key, running_server.hostname, tmp_path)


def test_a_command_runs_in_the_server_with_its_exit_status(alice_ssh, running_server, alice):
    result = alice_ssh.run("docker info --format 'daemon={{.Name}}'; id -u; exit 3")
    assert result.returncode == 3, result.stderr
    assert f"daemon={running_server.hostname}\n0\n".encode() in result.stdout
    result = alice_ssh.run("cat > piped.txt && wc -c < piped.txt", stdin=b"x" * 5000)
    assert result.stdout.strip() == b"5000"
    assert {row.ip for row in ActivityLog.objects.filter(action=Action.SSH_LOGIN, user=alice, message__contains="SHA256:")} == {"127.0.0.1"}
    assert SshKey.objects.get().last_used_at is not None


def test_a_shell_with_a_pty_is_the_terminals_shell(alice_ssh, running_server):
    result = subprocess.run(["ssh", "-tt", *alice_ssh.options(), f"{alice_ssh.login}@127.0.0.1"],
                            input=b"echo in-a-tty $(tty) && exit\n", capture_output=True, timeout=60)
    assert b"root@" + running_server.hostname.encode() in result.stdout
    assert b"in-a-tty /dev/pts/" in result.stdout


def test_files_copied_in_and_out_belong_to_the_owner_and_are_logged(alice_ssh, running_server, alice, tmp_path):
    local = tmp_path / "upload.bin"
    local.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    assert alice_ssh.scp(str(local), f"{alice_ssh.login}@127.0.0.1:upload.bin").returncode == 0
    back = tmp_path / "back.bin"
    assert alice_ssh.scp(f"{alice_ssh.login}@127.0.0.1:upload.bin", str(back)).returncode == 0
    assert back.read_bytes() == local.read_bytes()
    result = alice_ssh.sftp("put " + str(local) + " via-sftp.bin\nrename via-sftp.bin renamed.bin\nmkdir made\nrm upload.bin\nls\n")
    assert result.returncode == 0, result.stderr
    assert b"renamed.bin" in result.stdout
    # Owned by the user a shell runs as: root inside, so the owner's containers may write them.
    owners = alice_ssh.run("stat -c '%U %n' renamed.bin made").stdout.decode()
    assert owners.split() == ["root", "renamed.bin", "root", "made"]
    on_host = docker_stat(running_server, "/home/user/renamed.bin")
    assert on_host == str(running_server.host_uid)
    logged = ActivityLog.objects.filter(action=Action.SSH_SESSION, message__contains="renamed 1").first()
    assert logged and "wrote" in logged.message and "removed 1" in logged.message


def docker_stat(server, path):
    import docker as docker_sdk

    container = docker_sdk.from_env().containers.get(server.container_name)
    return container.exec_run(["stat", "-c", "%u", path]).output.decode().strip()


def test_a_local_forward_reaches_a_port_of_that_server_and_nothing_else(alice_ssh, running_server, tmp_path):
    inside.inner_container_run(str(running_server.socket_dir), TEST_APP_IMAGE, ["httpd", "-f", "-p", "8080", "-h", "/www"],
                               name="site", ports={"8080/tcp": 80})
    local = free_port()
    tunnel = subprocess.Popen(["ssh", "-N", "-L", f"{local}:localhost:80", *alice_ssh.options(), f"{alice_ssh.login}@127.0.0.1"])
    try:
        assert wait_until(lambda: _get(f"http://127.0.0.1:{local}/"), timeout=30, what="the tunnel")
    finally:
        tunnel.kill()
        tunnel.wait(10)
    # Another host through that server: refused, and the client is told why.
    elsewhere, said, reached = free_port(), tmp_path / "tunnel.err", []
    with open(said, "wb") as err:
        # (the refusal is said at LogLevel INFO)
        tunnel = subprocess.Popen(["ssh", "-N", "-L", f"{elsewhere}:example.org:80", *alice_ssh.options(log_level="INFO"),
                                   f"{alice_ssh.login}@127.0.0.1"],
                                  stderr=err)
    try:
        assert wait_until(lambda: reached.append(_get(f"http://127.0.0.1:{elsewhere}/")) or b"administratively prohibited" in said.read_bytes(),
                          timeout=30, what="the refusal")
        assert not any(reached)
    finally:
        tunnel.kill()
        tunnel.wait(10)


def _get(url):
    try:
        return "hello from the test app" in requests.get(url, timeout=3).text
    except requests.RequestException:
        return False


def test_remote_and_agent_forwarding_are_refused(alice_ssh):
    result = subprocess.run(["ssh", "-o", "ExitOnForwardFailure=yes", "-R", "0:localhost:22", *alice_ssh.options(),
                             f"{alice_ssh.login}@127.0.0.1", "true"], capture_output=True, timeout=60)
    assert result.returncode != 0 and b"forwarding" in result.stderr.lower()
    agent = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True).stdout
    env = dict(line.split(";")[0].split("=", 1) for line in agent.splitlines() if "=" in line and ";" in line)
    try:
        result = subprocess.run(["ssh", "-A", *alice_ssh.options(), f"{alice_ssh.login}@127.0.0.1", "echo agent=[$SSH_AUTH_SOCK]"],
                                capture_output=True, timeout=60, env={**os.environ, **env})
        assert b"agent=[]" in result.stdout
    finally:
        subprocess.run(["kill", env["SSH_AGENT_PID"]])


def test_refusals_look_alike_and_close_open_sessions(alice_ssh, gateway, running_server, make_server, alice, bob, admin, keys, tmp_path):
    bobs_server = make_server(name="bob's", owner=bob)
    stranger = Ssh(alice_ssh.gateway, keys("stranger"), running_server.hostname, tmp_path)
    not_mine = Ssh(alice_ssh.gateway, alice_ssh.key, bobs_server.hostname, tmp_path)
    nowhere = Ssh(alice_ssh.gateway, alice_ssh.key, f"server{running_server.pk + 999}", tmp_path)
    answers = {name: ssh.run("true") for name, ssh in [("unknown key", stranger), ("someone else's server", not_mine), ("no such server", nowhere)]}
    for name, result in answers.items():
        assert result.returncode == 255 and b"Permission denied (publickey)" in result.stderr, name
    said = {result.stderr.replace(ssh.login.encode(), b"LOGIN") for ssh, result in zip([stranger, not_mine, nowhere], answers.values())}
    assert len(said) == 1  # nothing tells them apart
    assert ActivityLog.objects.filter(action=Action.SSH_LOGIN_FAILED).exists()

    # A session open while its key is removed, or its user disabled, is closed within seconds.
    for take_away in ("key", "user"):
        if take_away == "user":
            account_services.ssh_key_add(user=alice, name="again", public_key=alice_ssh.key.with_suffix(".pub").read_text())
        session = subprocess.Popen(["ssh", *alice_ssh.options(), f"{alice_ssh.login}@127.0.0.1", "sleep 300"])
        time.sleep(3)
        if take_away == "key":
            account_services.ssh_key_remove(user=alice, key=SshKey.objects.get(user=alice))
        else:
            account_services.user_update(actor=admin, user=alice, email=alice.email, is_admin=False, is_active=False)
        session.wait(15)
        assert alice_ssh.run("true").returncode == 255, take_away


def test_guessing_is_throttled_per_client(gateway, running_server, keys, tmp_path, settings):
    started = gateway(SSH_FAILURE_LIMIT=3)
    for n in range(3):
        assert Ssh(started, keys(f"guess{n}"), running_server.hostname, tmp_path).run("true").returncode == 255
    result = Ssh(started, keys("one-more"), running_server.hostname, tmp_path).run("true")
    assert result.returncode == 255 and b"Too many refused keys" in result.stderr


def test_the_gateway_keeps_its_host_key_across_restarts(alice_ssh, gateway, settings, tmp_path):
    assert alice_ssh.run("true").returncode == 0  # learns the host key (known_hosts)
    fingerprint = account_services.ssh_host_key_fingerprint()
    assert fingerprint and fingerprint.startswith("SHA256:")
    port = alice_ssh.gateway.ssh_port
    alice_ssh.gateway.process.send_signal(signal.SIGTERM)
    alice_ssh.gateway.stop()
    alice_ssh.gateway = gateway(ssh_port=port)
    result = alice_ssh.run("true")  # StrictHostKeyChecking: a changed key would be refused
    assert result.returncode == 0, result.stderr
    assert account_services.ssh_host_key_fingerprint() == fingerprint


# Walls: a held connection, every channel and every key tried ------------------------------------

@pytest.mark.parametrize("take_away", ["key", "account"])
def test_a_held_connection_ends_when_its_key_or_account_goes(take_away, alice_ssh, alice, admin, tmp_path):
    """ControlMaster: one connection that runs a new command every few seconds. Ending
    its sessions is not enough: the connection goes, and no new channel opens on it."""
    control = tmp_path / "control.sock"
    master = subprocess.Popen(["ssh", "-M", "-S", str(control), "-N", *alice_ssh.options(), f"{alice_ssh.login}@127.0.0.1"])
    try:
        wait_until(control.exists, timeout=30, what="the master connection")
        shared = ["ssh", "-S", str(control), *alice_ssh.options(), f"{alice_ssh.login}@127.0.0.1"]
        assert subprocess.run([*shared, "echo through-master"], capture_output=True, timeout=60).stdout == b"through-master\n"
        if take_away == "key":
            account_services.ssh_key_remove(user=alice, key=SshKey.objects.get(user=alice))
        else:
            account_services.user_update(actor=admin, user=alice, email=alice.email, is_admin=False, is_active=False)
        master.wait(15)  # the gateway closed the connection itself
        result = subprocess.run([*shared, "-o", "ControlMaster=no", "echo again"], capture_output=True, timeout=60)
        assert b"again" not in result.stdout
    finally:
        master.kill()
        master.wait(10)


def test_one_connection_trying_many_keys_is_cut_off_at_the_limit(gateway, running_server, keys, tmp_path):
    from accounts import throttling

    started = gateway(SSH_FAILURE_LIMIT=3)
    guesses = [keys(f"guess{n}") for n in range(12)]
    ssh = Ssh(started, guesses[0], running_server.hostname, tmp_path)
    options = ssh.options()
    for extra in guesses[1:]:
        options += ["-i", str(extra)]
    result = subprocess.run(["ssh", *options, f"{ssh.login}@127.0.0.1", "true"], capture_output=True, timeout=60)
    assert result.returncode == 255 and b"Too many refused keys" in result.stderr, result.stderr
    assert throttling.count("ssh", "127.0.0.1") == 3  # the fourth key was never tried


def test_sftp_servers_stderr_never_enters_the_sftp_stream(server, alice, monkeypatch):
    """What sftp-server says on stderr goes to the client's stderr: in the sftp stream
    it broke scp ("Received message too long"). The exec into the server is faked."""
    import asyncio
    import struct

    from hosting.gateway import ssh

    class Collect:
        def __init__(self):
            self.data = b""

        def write(self, data):
            self.data += data

        async def drain(self):
            pass

    class Process:
        stdout, stderr = Collect(), Collect()

        class stdin:
            @staticmethod
            async def read(size):
                return b""

        def exit(self, code):
            self.code = code

        def close(self):
            pass

    class Exec:
        def close(self):
            pass

        def can_write_eof(self):
            return False

    def frame(stream, data):
        return bytes([stream, 0, 0, 0]) + struct.pack(">I", len(data)) + data

    packet = b"\x00\x00\x00\x05\x02\x00\x00\x00\x03"  # SSH_FXP_VERSION 3

    async def fake_exec(gateway, command, process):
        reader = asyncio.StreamReader()
        reader.feed_data(frame(2, b"warning: something\n") + frame(1, packet))
        reader.feed_eof()
        return "exec", reader, Exec()

    monkeypatch.setattr(ssh, "_exec", fake_exec)
    key = account_services.ssh_key_add(user=alice, name="k", public_key=SAMPLE_KEY)
    gateway = type("Gateway", (), {"key": key, "server": server, "address": "127.0.0.1"})()
    process = Process()
    asyncio.run(ssh._sftp(gateway, process))
    assert process.stdout.data == packet and process.stderr.data == b"warning: something\n"


SAMPLE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC3LMufKLBjpuhgiKIq+AiWOgmJZpGeycWC6VJpMK/wV sample"
