"""Write a file so that readers see either the old content or the complete new content.

Saved models, benchmark plots and downloaded data files go through ``atomic_write``: an
interrupted run (crash, Ctrl-C, full disk) must never leave a
half-written file that a later run trusts.
"""

import contextlib
import errno
import os
import secrets
import socket
import stat
import tempfile
from contextlib import contextmanager

__all__ = ["atomic_write", "check_target", "target_problem"]


def target_problem(path):
    """Why ``atomic_write`` could not write ``path`` as (errno, message): a directory, a directory
    that does not exist or that this user may not write to; or None. Callers check this before
    work whose result would be lost, so that the message names the user's path, not the
    temporary file's. A symbolic link is written through, so its target's directory counts."""
    path = os.fsdecode(path)
    if not path:
        return errno.ENOENT, "the path is empty; give a file name"
    if os.path.isdir(path):  # a link to a directory too
        return errno.EISDIR, f"{path!r} is a directory; give a file name"
    if not os.path.isabs(path):
        try:
            os.getcwd()
        except FileNotFoundError:  # (realpath's own error named no path)
            return errno.ENOENT, f"{path!r} is relative to the current directory, which no longer exists; give a full path"
    final = os.path.realpath(path)
    if os.path.islink(final):  # realpath gives up on a loop of links
        return errno.ELOOP, f"{path!r} is a loop of symbolic links"
    directory = os.path.dirname(final)
    link = f" ({path!r} links to {final!r})" if os.path.islink(path) else ""
    try:
        kind = os.stat(final).st_mode
    except OSError:
        kind = None  # (none there yet)
    if kind is not None and not stat.S_ISREG(kind):
        # the write renames a new file onto it: /dev/null (as root) would become a model file
        what = ("a character device" if stat.S_ISCHR(kind) else "a block device" if stat.S_ISBLK(kind)
                else "a named pipe" if stat.S_ISFIFO(kind) else "a socket" if stat.S_ISSOCK(kind) else "not a file")
        return errno.EINVAL, f"{path!r} is {what}, not a regular file; give a file name{link}"
    if kind is not None and not os.access(final, os.W_OK):
        # the rename needs only the directory's permission: a file its owner write-protected was
        # replaced without a word, where `echo x > file` is refused (root may write it, as there)
        return errno.EACCES, f"{path!r} is write-protected; make it writable (chmod u+w) or give another name{link}"
    if os.path.exists(directory) and not os.path.isdir(directory):
        return errno.ENOTDIR, f"{directory!r} is a file, not a directory{link}"
    if not os.path.isdir(directory):
        return errno.ENOENT, f"directory {directory!r} does not exist{link}"
    if not os.access(directory, os.W_OK | os.X_OK):
        return errno.EACCES, f"directory {directory!r} is not writable{link}"
    try:  # root passes os.access where nothing can be written (/proc, /sys): try (an unnamed file)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as error:  # (/proc's error is ENOENT: "not writable (No such file or directory)" misled)
        return errno.EACCES, f"directory {directory!r} is not writable (creating a file there failed: {error.strerror or error}){link}"
    return None


def path_argument(path, name="path"):
    """``path``, or a TypeError naming ``name`` if it is not a file path (os.fsdecode's own said
    "expected str, bytes or os.PathLike object, not int", naming no argument)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} must be a file path (str, bytes or os.PathLike); got {type(path).__name__} {path!r}")
    return path


def check_target(path, name="path"):
    """A ValueError naming ``name`` and ``path`` if ``atomic_write`` could not write there."""
    problem = target_problem(path_argument(path, name))
    if problem is not None:
        raise ValueError(f"{name} {os.fsdecode(path)!r}: {problem[1]}")


_HOST = socket.gethostname()


def file_identity(path):
    """(device, inode, modification time in ns) of the file at ``path``, or None: every write
    (a rename onto it, ``atomic_write``) changes it."""
    try:
        found = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return found.st_dev, found.st_ino, found.st_mtime_ns


def _pid_namespace():
    """This process's PID namespace (Linux: the inode of /proc/self/ns/pid), or "" where unknown:
    a process id names a process only within one namespace."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except (OSError, AttributeError):
        return ""


def _owner():
    """The writer in a temporary's name: ``pid`` or ``pid-namespace``."""
    namespace = _pid_namespace()
    return f"{os.getpid()}-{namespace}" if namespace else str(os.getpid())


def _remove_stale_temporaries(directory, name):
    """Remove the temporary files of earlier writes of ``name`` whose process, on this host, is
    gone: killed mid-write (SIGKILL, the OOM killer, MPI_Abort of the rank writing a checkpoint),
    it could not remove its own. Others' (a live process, another host, an unknown name) stay."""
    prefix = f".{_short(name)}."
    try:
        entries = [entry for entry in os.listdir(directory) if entry.startswith(prefix) and entry.endswith(".tmp")]
    except OSError:
        return
    for entry in entries:
        _, _, owner = entry[len(prefix):-len(".tmp")].partition(".")
        pid, _, host = owner.partition("@")
        pid, _, namespace = pid.partition("-")
        if host != _HOST or not pid.isdigit() or int(pid) == os.getpid():
            continue
        if namespace and namespace != _pid_namespace():
            continue  # another PID namespace's (a container on this host): its pid means nothing here
        if not _process_exists(int(pid)):  # (alive, another user's, or unknowable: left)
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, entry))


def _process_exists(pid):
    """Whether process ``pid`` exists: ``os.kill(pid, 0)`` on POSIX; on Windows, where that would
    end it, its exit code through the Win32 API (``_windows_process_exists``)."""
    if os.name != "posix":
        return _windows_process_exists(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # someone else's process; a number no pid can be (a name not ours)
        return True
    return True


ERROR_INVALID_PARAMETER = 87  # OpenProcess of a pid that names no process
STILL_ACTIVE = 259  # GetExitCodeProcess of a process that has not ended


def _windows_process_exists(pid, kernel32=None, last_error=None):
    """Whether process ``pid`` exists on Windows: OpenProcess, then GetExitCodeProcess (a handle
    to an ended process can still be open elsewhere). Assumed to where that cannot be told (access
    denied: someone else's; no ctypes). Taken for alive always, a mark left by a killed second
    process was adopted by every later cold fit, which then trained on the interpreted kernel
    and compiled nothing (audit 41). ``kernel32``, ``last_error``: stand-ins for tests (this runs
    on Linux only in tests)."""
    try:
        import ctypes

        if kernel32 is None:
            from ctypes import wintypes

            kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
            kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
            kernel32.OpenProcess.restype = wintypes.HANDLE
            kernel32.GetExitCodeProcess.argtypes = (wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD))
            kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
            last_error = ctypes.get_last_error
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return last_error() != ERROR_INVALID_PARAMETER
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    except Exception:  # noqa: BLE001 - no Win32 API to ask (another system, no ctypes): as before
        return True


NAME_MAX = 255  # bytes in a file name, on the filesystems in use (ext4, XFS, btrfs, tmpfs, NFS)


def _short(name):
    """``name`` cut to leave room in a temporary's name (``.{name}.{8 hex}.{pid}-{namespace}@{host}
    .tmp``, the pid and namespace counted at their most, 10 and 20 digits) under NAME_MAX: a file
    name near the limit could be created, but not its temporary (the whole run trained, then its
    save failed)."""
    room = NAME_MAX - len(os.fsencode(f"..{'0' * 8}.{'0' * 10}-{'0' * 20}@{_HOST}.tmp"))
    encoded = os.fsencode(name)
    return name if len(encoded) <= room else os.fsdecode(encoded[:max(room, 1)])


@contextmanager
def atomic_write(path, mode="wb", *, encoding=None):
    """Open a temporary file next to ``path``; on success move it into place.

    Yields a file object for a temporary file in the same directory as ``path`` (as the file
    it points to, if ``path`` is a symbolic link), so that ``os.replace`` is a rename on one
    filesystem, which is atomic. When the ``with`` block finishes normally the file is flushed,
    synced and renamed to ``path``, replacing any existing file, and the directory synced (the
    rename survives a crash). On any exception, including ``KeyboardInterrupt``, the temporary
    file is removed and ``path`` is left untouched.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        Final location. Its directory must already exist. A symbolic link stays, and the file
        it points to is replaced.
    mode : {"wb", "w", "w+b", "w+"}
        Binary or text write mode.
    encoding : str, optional
        Text mode only; defaults to "utf-8" so output doesn't depend on the locale.
    """
    if mode not in ("wb", "w", "w+b", "wb+", "w+"):
        raise ValueError(
            f"atomic_write mode must be a write mode ('wb', 'w', 'w+b' or 'w+'); got {mode!r}. "
            "Appending or reading can't be made atomic by writing a fresh file."
        )
    binary = "b" in mode
    if binary and encoding is not None:
        raise ValueError("atomic_write: encoding is only valid in text mode ('w'); got mode 'wb'")
    if not binary and encoding is None:
        encoding = "utf-8"

    path = os.fsdecode(path)  # bytes too, as open() takes them
    problem = target_problem(path)
    if problem is not None:  # else the OSError below would name the temporary file
        raise OSError(problem[0], f"cannot write {path!r}: {problem[1]}")
    # Through a symbolic link (latest.npz -> runs/run5.npz) the file it points to is replaced
    # and the link stays: renaming onto the link itself would turn it into a regular file and
    # leave its target stale. A dangling link's target is created.
    directory, name = os.path.split(os.path.realpath(path))
    # "x" (exclusive create) instead of tempfile.mkstemp: the file gets the normal
    # umask-derived permissions rather than 0600, so the renamed result looks like any
    # other file the user writes.
    exclusive_mode = mode.replace("w", "x")
    _remove_stale_temporaries(directory, name)
    while True:
        # the writer's PID and host in the name, for _remove_stale_temporaries
        temp_path = os.path.join(directory, f".{_short(name)}.{secrets.token_hex(4)}.{_owner()}@{_HOST}.tmp")
        try:
            file = open(temp_path, exclusive_mode, encoding=encoding)
            break
        except FileExistsError:
            continue
        except OSError as error:
            raise OSError(error.errno, f"cannot write {path!r}: {error.strerror}") from error

    try:
        try:
            _keep_mode(file, os.path.join(directory, name))
            with file:
                yield file
                file.flush()
                # Without fsync a crash just after the rename can leave an empty file on
                # some filesystems (ext4 delayed allocation).
                os.fsync(file.fileno())
        except OSError as error:
            # a write's own error (a full disk, a quota, an I/O error) names no file: the user's path
            if error.errno is None or error.filename is not None or path in str(error):
                raise
            raise OSError(error.errno, f"cannot write {path!r}: {error.strerror or error}") from error
        try:
            os.replace(temp_path, os.path.join(directory, name))
        except OSError as error:
            raise OSError(error.errno, f"cannot write {path!r}: {error.strerror}") from error
    except BaseException:
        try:
            os.remove(temp_path)
        except FileNotFoundError:
            pass
        raise
    _sync_directory(directory)


def _keep_mode(file, target):
    """Give the temporary ``file`` the permissions of the ``target`` it replaces (a model kept
    private with chmod 600 became readable by all at its next save); a new file has the
    umask's."""
    try:
        os.fchmod(file.fileno(), stat.S_IMODE(os.stat(target).st_mode))
    except (OSError, AttributeError):  # no target yet, or no fchmod (Windows)
        pass


def _sync_directory(directory):
    """Make a rename in ``directory`` durable (POSIX: fsync the directory; until then a crash
    could bring back the old file). Where a filesystem or system cannot, nothing is lost but
    that guarantee: the new file is in place either way."""
    if os.name != "posix":
        return
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)

