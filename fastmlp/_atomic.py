"""Write a file so that readers see either the old content or the complete new content.

Saved models and benchmark plots go through ``atomic_write`` (downloads get the same
treatment from pooch): an interrupted run (crash, Ctrl-C, full disk) must never leave a
half-written file that a later run trusts.
"""

import os
import secrets
from contextlib import contextmanager

__all__ = ["atomic_write"]


@contextmanager
def atomic_write(path, mode="wb", *, encoding=None):
    """Open a temporary file next to ``path``; on success move it into place.

    Yields a file object for a temporary file in the same directory as ``path`` (so that
    ``os.replace`` is a rename on one filesystem, which is atomic). When the ``with`` block
    finishes normally the file is flushed, synced and renamed to ``path``, replacing any
    existing file. On any exception, including ``KeyboardInterrupt``, the temporary file
    is removed and ``path`` is left untouched.

    Parameters
    ----------
    path : str or os.PathLike
        Final location. Its directory must already exist.
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

    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    # "x" (exclusive create) instead of tempfile.mkstemp: the file gets the normal
    # umask-derived permissions rather than 0600, so the renamed result looks like any
    # other file the user writes.
    exclusive_mode = mode.replace("w", "x")
    while True:
        temp_path = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            file = open(temp_path, exclusive_mode, encoding=encoding)
            break
        except FileExistsError:
            continue

    try:
        with file:
            yield file
            file.flush()
            # Without fsync a crash just after the rename can leave an empty file on
            # some filesystems (ext4 delayed allocation).
            os.fsync(file.fileno())
        os.replace(temp_path, path)
    except BaseException:
        try:
            os.remove(temp_path)
        except FileNotFoundError:
            pass
        raise
