"""Each server's disk on its node: the only module that makes, mounts and measures filesystems.

A server's disk is an ext4 filesystem in a sparse file of its quota's size,
loop-mounted on the node: everything its owner can keep (their home, the inner
daemon's images, containers and volumes) is in it, so the kernel stops every
write past the quota ("No space left on device") and `df` inside tells the
truth. Its usage is one statvfs() of the mount, never a walk of its files.
Deleted files give their blocks back to the node (the mount discards).

The server's socket folder, also the tenant's to write, is a tmpfs of
SOCKET_FOLDER_BYTES: the daemon's socket fits, nothing else does.

Everything here runs as root on the node, on paths that are the panel's own
(the image, the mount point, the socket folder): never on a path inside the
filesystem, which is the tenant's.
"""

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

SOCKET_FOLDER_BYTES = 1024 * 1024
# Journal and inode tables are left unzeroed (the sparse file reads as zeros), so
# making a disk costs no gigabytes of writes; `discard` hands deleted blocks back.
MKFS_EXTENDED = "lazy_itable_init=1,lazy_journal_init=1,nodiscard"
MOUNT_OPTIONS = "loop,nosuid,nodev,discard,noinit_itable"


class DiskError(Exception):
    """A disk could not be made, mounted or changed; str() is fit to show."""


@dataclass(frozen=True)
class Usage:
    used_bytes: int
    total_bytes: int
    free_bytes: int  # what a write can still have (ext4 keeps a little back for itself)

    @property
    def full(self):
        return self.free_bytes < max(self.total_bytes // 50, 8 * 1024 * 1024)


def _run(*command, ok=(0,)):
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DiskError(f"The node could not run {command[0]}: {error}") from None
    if result.returncode not in ok:
        log.warning("%s failed: %s", " ".join(command), result.stderr.strip())
        raise DiskError(f"The node's {command[0]} failed: {result.stderr.strip()[-200:] or 'no reason given'}")
    return result.stdout


def _mountpoint(path):
    """A folder to mount on that nobody can write while nothing is mounted there: should a
    server ever start before its disk is mounted, its owner has nowhere to write on the node."""
    os.makedirs(path, mode=0, exist_ok=True)
    if not os.path.ismount(path):
        os.chmod(path, 0)


def disk_ensure(*, image, mountpoint, size_mb, owner_uid):
    """The disk made (once), at `size_mb`, and mounted at `mountpoint`, its top folder
    owned by `owner_uid`. A size change applies while it is not mounted (the kernel
    here cannot grow a mounted ext4: that takes CAP_SYS_RESOURCE). Returns whether
    it was mounted just now."""
    os.makedirs(os.path.dirname(image), mode=0o700, exist_ok=True)
    _mountpoint(mountpoint)
    if os.path.ismount(mountpoint):
        return False
    if not os.path.exists(image):
        with open(image + ".new", "wb") as file:
            file.truncate(size_mb * 1024 * 1024)
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-E", f"{MKFS_EXTENDED},root_owner={owner_uid}:{owner_uid}", image + ".new")
        os.replace(image + ".new", image)
    else:
        _resize(image, size_mb)
    _run("mount", "-t", "ext4", "-o", MOUNT_OPTIONS, image, mountpoint)
    return True


def _resize(image, size_mb):
    current, wanted = os.stat(image).st_size, size_mb * 1024 * 1024
    if wanted == current:
        return
    _run("e2fsck", "-f", "-p", image, ok=(0, 1))  # resize2fs works on a checked filesystem
    if wanted > current:
        with open(image, "r+b") as file:
            file.truncate(wanted)
        _run("resize2fs", image)
    else:
        try:
            _run("resize2fs", image, f"{size_mb}M")
        except DiskError:
            raise DiskError(f"The server's files take more than {size_mb} MB: its disk stays as large as it is.") from None
        with open(image, "r+b") as file:
            file.truncate(wanted)


def disk_usage(mountpoint):
    """What the filesystem has in use and in all, at once (no directory walk); None when not mounted."""
    if not os.path.ismount(mountpoint):
        return None
    stats = os.statvfs(mountpoint)
    total = stats.f_blocks * stats.f_frsize
    return Usage(used_bytes=total - stats.f_bfree * stats.f_frsize, total_bytes=total, free_bytes=stats.f_bavail * stats.f_frsize)


def socket_folder_ensure(path, *, owner_uid):
    """The server's socket folder: a small tmpfs of its uid's. Returns whether it was mounted just now."""
    _mountpoint(path)
    if os.path.ismount(path):
        return False
    _run("mount", "-t", "tmpfs", "-o", f"size={SOCKET_FOLDER_BYTES},mode=0700,uid={owner_uid},gid={owner_uid},nosuid,nodev,noexec",
         "tmpfs", path)
    return True


def unmount(path):
    """Unmount if mounted (a stopped or removed server's container no longer holds it)."""
    if os.path.ismount(path):
        _run("umount", path)


def disk_remove(*, image, mountpoint, keep_image=False):
    unmount(mountpoint)
    if os.path.isdir(mountpoint):
        os.rmdir(mountpoint)  # empty once unmounted: nothing of the tenant's is ever on the node's own disk
    if not keep_image and os.path.exists(image):
        os.remove(image)


def folder_remove(path):
    """A server's folder on the node (socket, identity), once its container is gone."""
    unmount(path)
    # rmtree works through descriptors: a link the tenant left is removed, not followed.
    shutil.rmtree(path, ignore_errors=True)
