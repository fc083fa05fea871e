"""Find, download and read MNIST, Fashion-MNIST and KMNIST (or any dataset in the same IDX or
CSV layout).

Everything here is about files: where they live, how they are checked, and how they become
``uint8 [N, 784]`` images and ``int64 [N]`` labels. Converting to float for training is the
trainer's job. A download streams through pooch's HTTP downloader into ``atomic_write``'s
temporary file next to the target, is MD5-checked, then renamed into place.

Any corrupt file raises ``DataFormatError`` naming the file; any missing file raises
``DataNotFoundError`` saying where we looked and how to provide the data. Headers are checked
against the real data length before anything is allocated, so a corrupt header can't trigger
a huge allocation: a plain file's length is its size; a gzipped file's, the size its trailer
records when that agrees with the header, else counted by decompressing (keeping nothing) first.
"""

import gzip
import io
import math
import os
import re
import socket
import struct
import sys
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastmlp._atomic import path_argument
from fastmlp._validation import boolean, progress_flag
from fastmlp.progress import progress_bar, shown_by_default

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "DataFormatError",
    "DataNotFoundError",
    "Dataset",
    "default_data_dir",
    "load_dataset",
    "load_mnist",
    "load_test_set",
    "read_csv",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
]

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
IDX_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
CSV_FILES = ("mnist_train.csv", "mnist_test.csv")

IMAGE_ROWS = IMAGE_COLS = 28
N_PIXELS = IMAGE_ROWS * IMAGE_COLS

DOWNLOAD_TIMEOUT_SECONDS = 30  # a server silent this long fails (requests' connect and read timeouts)
DOWNLOAD_DEADLINE_SECONDS = 600  # a file not downloaded in this time fails (a server sending a trickle)


@dataclass(frozen=True)
class Dataset:
    """A named dataset in the MNIST layout: the four IDX files, gzipped, at each mirror."""

    name: str  # load_dataset's and --dataset's name, and the cache subdirectory
    title: str  # how messages call it
    mirrors: tuple  # base URLs, tried in order, each serving the four official .gz files
    # .gz file name -> "md5:<hex digest>" of the official download. Checked right after a
    # download only: a user's own copy may be re-compressed (other .gz bytes, same content),
    # and every file is checked by parsing anyway.
    registry: dict
    class_names: tuple  # class_names[label]


DATASETS = {
    dataset.name: dataset
    for dataset in (
        # MD5 sums as torchvision lists them (torchvision/datasets/mnist.py, class MNIST); the
        # mirrors are PyTorch's and TensorFlow's copies of the files yann.lecun.com published.
        Dataset(
            name="mnist",
            title="MNIST",
            mirrors=(
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ),
            registry={
                TRAIN_IMAGES + ".gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
                TRAIN_LABELS + ".gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
                TEST_IMAGES + ".gz": "md5:9fb629c4189551a2d022fa330f9573f3",
                TEST_LABELS + ".gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
            },
            class_names=tuple("0123456789"),
        ),
        # The download table of Fashion-MNIST's README (github.com/zalandoresearch/fashion-mnist),
        # the same in torchvision's FashionMNIST; its repository also serves the files.
        Dataset(
            name="fashion-mnist",
            title="Fashion-MNIST",
            mirrors=(
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            ),
            registry={
                TRAIN_IMAGES + ".gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                TRAIN_LABELS + ".gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
                TEST_IMAGES + ".gz": "md5:bef4ecab320f06d8554ea6380940ec79",
                TEST_LABELS + ".gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
            },
            class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ),
        # Kuzushiji-MNIST (github.com/rois-codh/kmnist), hosted by ROIS-DS CODH; MD5 sums from
        # torchvision's KMNIST. Class names romanised as there (お き す つ な は ま や れ を), so that
        # plots need no Japanese font.
        Dataset(
            name="kmnist",
            title="Kuzushiji-MNIST",
            mirrors=(
                "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
                "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            ),
            registry={
                TRAIN_IMAGES + ".gz": "md5:bdb82020997e1d708af4cf47b453dcf7",
                TRAIN_LABELS + ".gz": "md5:e144d726b3acfaa3e44228e80efcd344",
                TEST_IMAGES + ".gz": "md5:5c965bf0a639b31b8f53240b1b52f4d7",
                TEST_LABELS + ".gz": "md5:7320c461ea6c1c855c0b718fb2a4b134",
            },
            class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        ),
    )
}
# CLASS_NAMES["fashion-mnist"][label] -> "Ankle boot" and so on, for users' plots and reports
# (``fastmlp.plot.plot_confusion_matrix``'s ``classes=``; the README's example).
CLASS_NAMES = {name: dataset.class_names for name, dataset in DATASETS.items()}

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions [N, rows, cols]
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension [N]

# IDX type code -> (name, dtype as stored: big-endian).
_IDX_TYPES = {
    0x08: ("unsigned byte", np.dtype("u1")),
    0x09: ("signed byte", np.dtype("i1")),
    0x0B: ("short", np.dtype(">i2")),
    0x0C: ("int", np.dtype(">i4")),
    0x0D: ("float", np.dtype(">f4")),
    0x0E: ("double", np.dtype(">f8")),
}
_CHUNK_BYTES = 1 << 20


class DataFormatError(ValueError):
    """A data file exists but is corrupt or not in the expected layout.

    The message names the file and what is wrong with it.
    """


class DataNotFoundError(FileNotFoundError):
    """The data files are not where we looked, and could not be downloaded.

    The message lists the files looked for, the directory, what failed, and how to
    provide the data.
    """


# --------------------------------------------------------------------------------------
# Where the data lives


def _dataset(name):
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[name]


def default_data_dir(dataset="mnist"):
    """Return the per-user cache directory of ``dataset`` (it may not exist yet).

    ``%LOCALAPPDATA%\\fastmlp\\<dataset>`` on Windows, else ``$XDG_CACHE_HOME/fastmlp/<dataset>``,
    else ``~/.cache/fastmlp/<dataset>``: one subdirectory per name in ``DATASETS``.
    """
    name = _dataset(dataset).name
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(Path.home(), "AppData", "Local")
    else:
        base = os.environ.get("XDG_CACHE_HOME", "")
        # The XDG spec says to ignore relative paths here.
        if not os.path.isabs(base):
            base = os.path.join(Path.home(), ".cache")
    return Path(base) / "fastmlp" / name


def _resolve_data_dir(dataset, data_dir):
    """Return (directory, source) where source is "argument", "environment" or "cache"."""
    if data_dir is not None:
        data_dir = os.fsdecode(path_argument(data_dir, "data_dir"))  # (bytes failed inside pathlib; audit 61)
        if data_dir == "":  # Path("") is the current directory: surely not meant
            raise ValueError("data_dir is an empty string; give a directory, or None for the default")
        return Path(os.path.expanduser(data_dir)), "argument"
    # FASTMLP_DATA has always meant "the MNIST files are here"; the other datasets have no
    # variable of their own and live in their cache subdirectory.
    from_environment = os.environ.get("FASTMLP_DATA", "") if dataset.name == "mnist" else ""
    if from_environment:
        return Path(os.path.expanduser(from_environment)), "environment"
    return default_data_dir(dataset.name), "cache"


_SOURCE_DESCRIPTIONS = {
    "argument": "the data_dir argument, or --data on the command line",
    "environment": "the FASTMLP_DATA environment variable",
    "cache": "the default cache directory",
}


def _ways_to_point(dataset):
    """The ways to say where ``dataset``'s files are, for the end of an error message."""
    if dataset.name == "mnist":
        return "the FASTMLP_DATA environment variable, load_mnist(data_dir=...) or the --data DIR option"
    return f"load_dataset({dataset.name!r}, data_dir=...) or the --data DIR option"


def _find_idx_files(directory):
    """Map each IDX base name to the existing file (plain preferred over .gz) or None."""
    found = {}
    for name in IDX_FILES:
        found[name] = None
        for candidate in (directory / name, directory / (name + ".gz")):
            if candidate.is_file():
                found[name] = candidate
                break
    return found


def _not_found_message(dataset, directory, source, missing, failure=None, needed=IDX_FILES):
    looked_for = ", ".join(needed)
    if len(missing) == len(needed):
        what_is_missing = "none of them is there"
    else:
        what_is_missing = "missing: " + ", ".join(missing)
    message = (
        f"{dataset.title} data not found: looked for {looked_for} (each plain or with .gz) "
        f"in {directory} (from {_SOURCE_DESCRIPTIONS[source]}); {what_is_missing}."
    )
    folders = [path.name for name in missing for path in (directory / name, directory / (name + ".gz"))
               if path.is_dir()]
    if folders:
        message += f" ({', '.join(folders)} {'is a directory' if len(folders) == 1 else 'are directories'}, not a file.)"
    csv_there = [name for name in CSV_FILES if (directory / name).is_file()]
    if csv_there and len(needed) == len(IDX_FILES) and len(csv_there) < len(CSV_FILES):
        csv_missing = [name for name in CSV_FILES if name not in csv_there]
        message += f" ({csv_there[0]} is there, but not {csv_missing[0]}: the CSV layout needs both.)"
    if failure:
        message += f" Download failed: {failure}."
    elif source == "cache":
        message += " Downloading is switched off (download=False)."
    else:
        message += " Nothing is downloaded into a directory you chose."
    csv = "mnist_train.csv and mnist_test.csv" if len(needed) == len(IDX_FILES) else "mnist_test.csv"
    message += (
        f" To fix: place the {'four files' if len(needed) == len(IDX_FILES) else 'test files'} in {directory} "
        f"({csv}, label first then 784 pixels, work too), or point {_ways_to_point(dataset)} at a "
        "directory that holds them."
    )
    if failure:
        message += " The files can be fetched by hand from " + " or ".join(dataset.mirrors) + "."
    return message


def load_mnist(data_dir=None, *, download=True, progress=None):
    """Load MNIST: ``load_dataset("mnist", data_dir, download=..., progress=...)``.

    Any dataset stored under the same file names (Fashion-MNIST, for example) loads the same
    way from its ``data_dir``.
    """
    return load_dataset("mnist", data_dir, download=download, progress=progress)


def load_dataset(name, data_dir=None, *, download=True, progress=None):
    """Load the dataset ``name`` as ``(train_images, train_labels, test_images, test_labels)``.

    Images are ``uint8`` arrays of shape ``[N, 784]`` (C-contiguous), labels are ``int64``
    arrays of shape ``[N]``; ``CLASS_NAMES[name][label]`` names a label.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "kmnist"}
        A key of ``DATASETS``.
    data_dir : str or os.PathLike, optional
        Directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each plain or gzipped),
        or ``mnist_train.csv`` and ``mnist_test.csv`` (read when the four IDX files are not all
        there). Defaults, for "mnist", to the
        ``FASTMLP_DATA`` environment variable, then to ``default_data_dir(name)``.
    download : bool, default True
        Download missing files from the dataset's mirrors, checked against its official MD5
        sums. Only ever done into ``default_data_dir(name)``, never into a directory given by
        ``data_dir`` or ``FASTMLP_DATA``.
    progress : bool, optional
        Show download progress (tqdm) on stderr. By default only when stderr is a terminal
        (or in Jupyter).

    Raises
    ------
    ValueError
        ``name`` is not a known dataset.
    TypeError
        ``download`` or ``progress`` is not a bool.
    DataNotFoundError
        The files are missing and could not be downloaded.
    DataFormatError
        A file is corrupt, images aren't 28x28, or image and label counts disagree.
    """
    return _load(name, data_dir, download, progress, test_only=False)


def load_test_set(name="mnist", data_dir=None, *, download=True, progress=None):
    """The test split of ``load_dataset(name, data_dir, ...)`` as ``(test_images, test_labels)``,
    from the test files alone (``t10k-*`` or ``mnist_test.csv``, the one ``load_dataset`` would
    take): the training files need not be there, and are not downloaded. Raises as
    ``load_dataset``."""
    return _load(name, data_dir, download, progress, test_only=True)


def _load(name, data_dir, download, progress, test_only):
    dataset = _dataset(name)
    boolean("download", download)
    progress_flag(progress)
    directory, source = _resolve_data_dir(dataset, data_dir)
    if directory.exists() and not directory.is_dir():
        raise DataNotFoundError(
            f"{dataset.title} data directory {directory} (from {_SOURCE_DESCRIPTIONS[source]}) is a "
            f"file, not a directory. Point {_ways_to_point(dataset)} at the directory that holds "
            "the four files."
        )

    needed = (TEST_IMAGES, TEST_LABELS) if test_only else IDX_FILES
    paths = _find_idx_files(directory)
    missing = [file_name for file_name in needed if paths[file_name] is None]
    # a full CSV set beats a partial IDX one, for the test set alone too (evaluate reads what train
    # reads); the CSV test file alone stands in for missing t10k files
    csv_set = any(paths[name] is None for name in IDX_FILES) and all((directory / name).is_file() for name in CSV_FILES)
    csv_test = test_only and missing and (directory / CSV_FILES[1]).is_file()
    if csv_set or csv_test:
        csv_paths = [directory / file_name for file_name in (CSV_FILES[1:] if test_only else CSV_FILES)]
        tables = [read_csv(path, n_features=N_PIXELS) for path in csv_paths]
        return tables[0] if test_only else (*tables[0], *tables[1])

    if missing:
        if source != "cache" or not download:
            raise DataNotFoundError(_not_found_message(dataset, directory, source, missing, needed=needed))
        if progress is None:
            progress = shown_by_default()
        failure = _download(dataset, directory, missing, progress)
        if failure:  # what is still missing: the files before the one that failed are there now
            still = [file_name for file_name in needed if _find_idx_files(directory)[file_name] is None]
            raise DataNotFoundError(_not_found_message(dataset, directory, source, still, failure, needed=needed))
        paths = _find_idx_files(directory)

    try:
        return _read_split(paths, test_only)
    except DataFormatError as error:
        if source != "cache":
            raise
        raise DataFormatError(f"{error} It is in fastmlp's download cache ({directory}): delete it, and the next "
                              f"load downloads it again.") from None


def _read_split(paths, test_only):
    if test_only:
        test_images = _read_mnist_images(paths[TEST_IMAGES])
        test_labels = read_idx_labels(paths[TEST_LABELS])
        _check_counts(paths[TEST_IMAGES], test_images, paths[TEST_LABELS], test_labels)
        return test_images, test_labels
    train_images = _read_mnist_images(paths[TRAIN_IMAGES])
    train_labels = read_idx_labels(paths[TRAIN_LABELS])
    test_images = _read_mnist_images(paths[TEST_IMAGES])
    test_labels = read_idx_labels(paths[TEST_LABELS])
    _check_counts(paths[TRAIN_IMAGES], train_images, paths[TRAIN_LABELS], train_labels)
    _check_counts(paths[TEST_IMAGES], test_images, paths[TEST_LABELS], test_labels)
    return train_images, train_labels, test_images, test_labels


def _read_mnist_images(path):
    images = _read_idx(path, IDX_IMAGES_MAGIC)
    n_images, rows, cols = images.shape
    if (rows, cols) != (IMAGE_ROWS, IMAGE_COLS):
        raise DataFormatError(
            f"{path}: images are {rows}x{cols} pixels; MNIST images must be "
            f"{IMAGE_ROWS}x{IMAGE_COLS} = {N_PIXELS}. Use read_idx_images() for other sizes."
        )
    return images.reshape(n_images, N_PIXELS)


def _check_counts(images_path, images, labels_path, labels):
    if len(images) != len(labels):
        raise DataFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels; the two files must come from the same dataset split. Replace the "
            "mismatched file."
        )


# --------------------------------------------------------------------------------------
# Download


def _download(dataset, directory, missing, progress):
    """Download the missing files as .gz; return None on success, else what failed. The folders
    it had to make (the dataset's, and the cache's above it on a first load) are removed again
    when it fails (or is interrupted) before a file is in them."""
    from ._atomic import _remove_stale_temporaries

    made = [folder for folder in (directory, *directory.parents) if not folder.exists()]  # deepest first
    failure = "interrupted"
    try:
        failure = _download_files(dataset, directory, missing, progress)
        if failure is None:  # a killed download's temporary file of a name this one did not write goes too
            for gz_name in dataset.registry:
                _remove_stale_temporaries(directory, gz_name)
        return failure
    finally:
        if failure:
            for folder in made:
                try:
                    folder.rmdir()  # (only where empty: a file downloaded before the failure stays)
                except OSError:
                    break


def _download_files(dataset, directory, missing, progress):
    from ._atomic import target_problem

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"could not create {directory} ({error})"
    problem = target_problem(os.path.join(directory, missing[0] + ".gz"))
    if problem is not None:  # this machine's fault, not the mirrors': none is asked
        return f"cannot write into {directory} ({problem[1]})"
    for name in missing:
        gz_name = name + ".gz"
        errors = []
        for mirror in dataset.mirrors:
            url = mirror.rstrip("/") + "/" + gz_name
            try:
                _retrieve(url, dataset.registry[gz_name], directory, gz_name, progress)
                break
            # requests' errors (no connection, an HTTP error status, a connection closed
            # early) are OSErrors; a download whose MD5 differs is a ValueError.
            except OSError as error:
                errors.append(f"{url}: {_network_failure(error)}")
            except ValueError as error:
                errors.append(f"{url}: checksum mismatch ({error})")
        else:
            # Stop at the first file no mirror could serve: the network is probably down,
            # and trying the others would only multiply the timeouts.
            return f"no mirror could serve {gz_name} ({'; '.join(errors)})"
    return None


def _network_failure(error):
    """What went wrong, without the wrappers requests and urllib3 put around it (the message
    names the URL already): "Failed to establish a new connection: [Errno 111] Connection
    refused" rather than "HTTPConnectionPool(...): Max retries exceeded with url: ... (Caused
    by NewConnectionError(...))"."""
    cause = error.args[0] if error.args else None
    if not isinstance(cause, Exception):
        return str(error)
    reason = getattr(cause, "reason", None)  # urllib3's MaxRetryError holds the real cause
    if isinstance(reason, Exception):
        cause = reason
    text = cause.args[0] if cause.args and isinstance(cause.args[0], str) else str(cause)
    return re.sub(r"^\w+\(host=[^)]*\): ", "", text)


def _retrieve(url, known_hash, directory, file_name, progress):
    """Download ``url`` into ``directory / file_name`` with pooch's HTTP downloader.

    It streams into ``atomic_write``'s temporary file beside the target, whose MD5 is checked
    against ``known_hash`` ("md5:<hex>") before the rename: nothing half-downloaded or wrong
    ever carries the real name, a failure (Ctrl-C included) removes the temporary file, and
    one a killed process left is removed by a later write there. The file gets the
    permissions the umask gives any other (pooch's own temporary files kept 0600).
    """
    import hashlib

    import pooch

    from ._atomic import atomic_write

    bar = _DownloadBar(file_name) if progress else False
    # The read timeout starts again with every byte, so a server that sends one every few
    # seconds would hold the download for ever: past the deadline the response's socket is shut
    # down, which ends the read waiting in this thread at once (closing the response from
    # another thread does not wake it).
    responses, expired = [], threading.Event()
    downloader = pooch.HTTPDownloader(progressbar=bar, timeout=DOWNLOAD_TIMEOUT_SECONDS, chunk_size=_CHUNK_BYTES,
                                      hooks={"response": lambda response, *args, **kwargs: responses.append(response)})

    def expire():
        expired.set()
        for response in responses:
            # the socket under urllib3's response, under http.client's, under its buffered file
            # (no public way to it; where a version hides it, the closed response ends the read at
            # the server's next byte at best)
            sock = response.raw
            for name in ("_fp", "fp", "raw", "_sock"):
                sock = getattr(sock, name, None)
            if isinstance(sock, socket.socket):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            response.close()

    deadline = threading.Timer(DOWNLOAD_DEADLINE_SECONDS, expire)
    deadline.daemon = True
    too_slow = f"the download took more than {DOWNLOAD_DEADLINE_SECONDS:g} s (the server sends too slowly)"
    path = os.path.join(directory, file_name)
    # (another process's first download into this cache, interrupted, removes the folders it made
    # while they are empty: this one's may be gone since _download made it, pooch's import ago)
    os.makedirs(directory, exist_ok=True)
    try:
        with atomic_write(path, "w+b") as file:
            deadline.start()
            try:
                downloader(url, file, None)
            except Exception:
                if expired.is_set():  # whatever the closed response raised
                    raise TimeoutError(too_slow) from None
                raise
            if expired.is_set():  # (a closed response may also just end early)
                raise TimeoutError(too_slow)
            file.seek(0)
            digest = hashlib.md5()
            for block in iter(lambda: file.read(_CHUNK_BYTES), b""):
                digest.update(block)
            expected = known_hash.split(":", 1)[1]
            if digest.hexdigest() != expected.lower():
                raise ValueError(f"the download's MD5 is {digest.hexdigest()}, the file's is {known_hash}")
    finally:
        deadline.cancel()
        if progress:
            bar.finish(path)


class _DownloadBar:
    """The progress bar object pooch's HTTPDownloader drives (``total = ...``, ``update``,
    ``reset``, ``close``). The tqdm bar appears once pooch sets the size from the response,
    so a mirror that fails before sending anything draws no empty bar."""

    def __init__(self, description):
        self.description = description
        self._bar = None

    def __bool__(self):
        return True  # pooch only drives a truthy bar

    @property
    def total(self):
        return None if self._bar is None else self._bar.total

    @total.setter
    def total(self, n_bytes):
        self._bar = progress_bar(n_bytes or None, self.description, enabled=True, unit="B",
                                 unit_scale=True, unit_divisor=1024)

    def update(self, n_bytes):
        self._bar.update(n_bytes)

    # pooch counts a whole chunk per chunk received, then ends with reset(), update(total) and
    # close(), which fill the bar to the size the server announced. Without one (no
    # Content-Length) that showed "0.00B": the bar stays open, and ``finish`` shows the size of
    # the file written.

    def reset(self):
        if self._bar.total:
            self._bar.reset()

    def close(self):
        if self._bar is not None and self._bar.total:
            self._bar.close()

    def finish(self, path):
        """Close the bar, showing ``path``'s size where the server did not announce one."""
        if self._bar is None or self._bar.disable:
            return
        if not self._bar.total and os.path.isfile(path):
            self._bar.n = os.path.getsize(path)
            self._bar.refresh()
        self._bar.close()


# --------------------------------------------------------------------------------------
# IDX files


def read_idx(path):
    """Read any IDX file at ``path`` (plain or gzipped) into an array shaped as its header says.

    Multi-byte types (short, int, float, double) are converted to native byte order. Raises
    ``fastmlp.DataFormatError`` naming what is wrong with a file that is not IDX (or is cut
    short), ``OSError`` for one it cannot read, ``TypeError`` for a ``path`` that is not a file
    path (an int is not taken for a file descriptor).
    """
    return _read_idx(path)


def read_idx_images(path):
    """Read an IDX image file (magic 2051) as ``uint8 [N, rows * cols]``."""
    images = _read_idx(path, IDX_IMAGES_MAGIC)
    n_images, rows, cols = images.shape
    return images.reshape(n_images, rows * cols)


def read_idx_labels(path):
    """Read an IDX label file (magic 2049) as ``int64 [N]``."""
    return _read_idx(path, IDX_LABELS_MAGIC).astype(np.int64)


def _describe_magic(magic):
    type_code, n_dims = (magic >> 8) & 0xFF, magic & 0xFF
    if magic >> 16 or type_code not in _IDX_TYPES:
        return f"0x{magic:08X}"
    plural = "" if n_dims == 1 else "s"
    return f"0x{magic:08X}: {_IDX_TYPES[type_code][0]}, {n_dims} dimension{plural}"


def _open_data_file(path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: no such file. Check the path.") from None
    except IsADirectoryError:
        raise DataNotFoundError(f"{path} is a directory; expected an IDX or CSV file.") from None


def _read_idx(path, expected_magic=None):
    # (an int is a file descriptor to open(): read_idx(0) read the caller's stdin, 1 closed its
    # stdout; audit 60)
    path_argument(path)
    with _open_data_file(path) as raw:
        # Detect gzip by content, not by name: "*.gz" files are sometimes already
        # decompressed and plain files are sometimes gzipped.
        is_gzip = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        size = os.fstat(raw.fileno()).st_size
        if not is_gzip:
            return _parse_idx(raw, path, size, expected_magic)
        raw.seek(max(size - 4, 0))  # ISIZE: the decompressed size mod 2**32 (of a single-member file)
        trailer = int.from_bytes(raw.read(4), "little") if size >= 18 else None
        raw.seek(0)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _parse_idx(stream, path, None, expected_magic, trailer)
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise DataFormatError(
                f"{path}: corrupt or truncated gzip stream ({error}). Download the file again."
            ) from None


def _read_at_most(stream, limit):
    """Read up to ``limit`` bytes in chunks, so a lying header can't force a huge read."""
    chunks = []
    total = 0
    while total < limit:
        chunk = stream.read(min(_CHUNK_BYTES, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    # bytearray keeps the resulting array writable.
    return bytearray().join(chunks)


def _read_into(stream, n_bytes):
    """``n_bytes`` of ``stream`` in one buffer, filled chunk by chunk (no joined copy), and how
    many bytes the stream held: ``n_bytes`` + 1 when it holds more."""
    buffer = bytearray(n_bytes)
    view, filled = memoryview(buffer), 0
    while filled < n_bytes:
        got = stream.readinto(view[filled : filled + _CHUNK_BYTES])
        if not got:
            break
        filled += got
    return buffer, filled + (len(stream.read(1)) if filled == n_bytes else 0)


def _count_bytes(stream, limit):
    """How many bytes ``stream`` holds, up to ``limit``, keeping none of them."""
    total = 0
    while total < limit:
        chunk = stream.read(min(_CHUNK_BYTES, limit - total))
        if not chunk:
            break
        total += len(chunk)
    return total


def _parse_idx(stream, path, file_size, expected_magic, gzip_trailer=None):
    """Parse an open IDX stream; ``file_size`` is None for gzip (size unknown up front), whose
    ``gzip_trailer`` is the size the file's trailer records (mod 2**32)."""
    magic_bytes = _read_at_most(stream, 4)
    if len(magic_bytes) < 4:
        raise DataFormatError(
            f"{path}: file too short for an IDX header: need 4 bytes for the magic number, "
            f"got {len(magic_bytes)}. The file is empty or truncated; download it again."
        )
    magic = int.from_bytes(magic_bytes, "big")
    gzipped_twice = " It looks gzip-compressed twice; decompress it once." if magic_bytes[:2] == b"\x1f\x8b" else ""
    if expected_magic is not None and magic != expected_magic:
        hint = gzipped_twice
        if {magic, expected_magic} == {IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC}:
            hint = " Are the image and label files swapped?"
        raise DataFormatError(
            f"{path}: wrong magic number: expected {expected_magic} "
            f"({_describe_magic(expected_magic)}), got {magic} ({_describe_magic(magic)}).{hint}"
        )
    if magic_bytes[:2] != b"\x00\x00":
        hint = gzipped_twice
        raise DataFormatError(
            f"{path}: not an IDX file: the magic number 0x{magic:08X} must start with two "
            f"zero bytes.{hint}"
        )
    type_code, n_dims = magic_bytes[2], magic_bytes[3]
    if type_code not in _IDX_TYPES:
        supported = ", ".join(f"0x{code:02X} ({name})" for code, (name, _) in _IDX_TYPES.items())
        raise DataFormatError(
            f"{path}: unsupported IDX data type 0x{type_code:02X}; supported: {supported}."
        )
    if n_dims == 0:
        raise DataFormatError(f"{path}: IDX header declares 0 dimensions; need at least 1.")
    if n_dims > 64:  # NumPy's limit; MNIST's files have 1 or 3
        raise DataFormatError(f"{path}: IDX header declares {n_dims} dimensions; at most 64 can be read. "
                              "The file is corrupt or not an IDX file.")

    header_size = 4 + 4 * n_dims
    dims_bytes = _read_at_most(stream, 4 * n_dims)
    if len(dims_bytes) < 4 * n_dims:
        raise DataFormatError(
            f"{path}: file too short for the IDX header: it declares {n_dims} dimensions, "
            f"which needs {header_size} header bytes, but the file has only "
            f"{4 + len(dims_bytes)}. The file is truncated; download it again."
        )
    shape = struct.unpack(f">{n_dims}I", dims_bytes)
    dtype = _IDX_TYPES[type_code][1]
    # Python ints: a corrupt header can declare more bytes than any machine has.
    n_data_bytes = math.prod(shape) * dtype.itemsize
    shape_text = " x ".join(map(str, shape))

    try:
        if file_size is not None:
            n_available = file_size - header_size
            if n_available == n_data_bytes:
                buffer = bytearray(n_data_bytes)
                n_available = stream.readinto(buffer)
        elif gzip_trailer == (header_size + n_data_bytes) % 2**32:  # (the header agrees with the trailer)
            buffer, n_available = _read_into(stream, n_data_bytes)
        else:
            # a header the trailer does not confirm (a lie, a damaged file or one of several gzip
            # members): counted first, keeping nothing, so that a 1 MB file inflating to gigabytes
            # costs time and not memory; read only if the count is right
            n_available = _count_bytes(stream, n_data_bytes + 1)
            if n_available == n_data_bytes:
                stream.seek(header_size)
                buffer, n_available = _read_into(stream, n_data_bytes)
    except MemoryError:
        raise DataFormatError(f"{path}: the header declares {shape_text} {_IDX_TYPES[type_code][0]} values "
                              f"({n_data_bytes:,} bytes), more memory than this machine gives") from None
    if n_available < n_data_bytes:
        raise DataFormatError(
            f"{path}: truncated data: the header declares {shape_text} {_IDX_TYPES[type_code][0]} "
            f"values ({n_data_bytes} bytes), but only {n_available} bytes follow it. "
            "Download the file again."
        )
    if n_available > n_data_bytes:
        extra = f"{n_available - n_data_bytes}" if file_size is not None else "at least 1"
        raise DataFormatError(
            f"{path}: {extra} unexpected trailing bytes after the {n_data_bytes} data bytes "
            f"declared by the header ({shape_text}). The file is corrupt or not an IDX file."
        )
    array = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array


# --------------------------------------------------------------------------------------
# CSV files: label first, then one column per pixel; optional header row.

_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _is_number(cell):
    return _DECIMAL.fullmatch(cell) is not None


def read_csv(path, *, n_features=784, labels=True):
    """Read the plain-text CSV file at ``path`` of ``label, pixel_1, ..., pixel_n`` rows.

    The first row is taken as a header when its first cell is not a number and its other cells
    are not all pixel values (0..255): a row like ``?,0,0,...`` is data, and its label an error.
    A header may put the label last instead (``pixel1,...,pixel784,class``, OpenML's mnist_784):
    when its last name is ``label``, ``class``, ``target``, ``y`` or ``digit`` (any case), or its
    first names a pixel (``pixel1``, ``1x1``) and its last does not. Without a header the label
    is first.
    Returns ``(images uint8 [N, n_features], labels int64 [N])``; with ``labels=False`` the
    first column is not read at all (any text, as for samples to predict) and the labels are None.
    Raises ``fastmlp.DataFormatError`` naming the line and what is wrong (a row of another
    length, a value that is not a whole number in 0..255, a label that is not one), ``OSError``
    for a file it cannot read, ``TypeError`` for a ``path`` that is not a file path.
    """
    path_argument(path)  # (not a file descriptor: open() would read it, then close it; audit 60)
    is_integer = isinstance(n_features, (int, np.integer)) and not isinstance(n_features, bool)
    if not is_integer or n_features < 1:
        raise ValueError(f"n_features must be a positive integer; got {n_features!r}")
    n_features = int(n_features)

    read = _read_csv_fast(path, n_features, labels)
    if read is not None:
        pixels, read_labels = read
        return np.ascontiguousarray(pixels, dtype=np.uint8), None if read_labels is None else read_labels.copy()
    # The fast reader only says "something is wrong"; the strict reader finds the line
    # (or accepts what the fast one couldn't, such as "5.0").
    return _read_csv_strict(path, n_features, labels)


_PIXEL = re.compile(r"\s*\+?0*(?:[0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])(?:\.0*)?\s*")


def _is_header(cells):
    """Whether a first row's ``cells`` are a header: a label cell that is not a number, and
    other cells that are not all pixel values (MNIST's CSV: ``label,1x1,1x2,...``); or the
    numbers k, k+1, ... that pandas writes as a frame's default column names, where they reach
    past 255 (no row of pixels can: audit 79, "line 1, column 257: pixel value 256")."""
    if not _is_number(cells[0].strip()):
        return not all(_PIXEL.fullmatch(cell) for cell in cells[1:])
    first = cells[0].strip()
    if not _INTEGER.fullmatch(first) or int(first) + len(cells) - 1 <= 255:
        return False
    return all(_INTEGER.fullmatch(cell.strip()) and int(cell) == int(first) + i for i, cell in enumerate(cells))


# A header's names for the label column, and for a pixel's (``pixel1``, Kaggle's ``pixel0``, MNIST's
# CSV ``1x1``): OpenML's mnist_784 (scikit-learn's fetch_openml) writes ``pixel1,...,pixel784,class``,
# the label last, and read label-first every label was pixel 1's value (audit 78).
_LABEL_NAMES = frozenset(("label", "labels", "class", "target", "y", "digit"))
_PIXEL_NAME = re.compile(r"(?:pixel|px)_?[0-9]+|[0-9]+x[0-9]+")


def _label_last(path, cells):
    """Whether a header's ``cells`` put the label in the last column (``_LABEL_NAMES`` there, or
    a pixel's name first and not last); a header that names pixels at both ends is a
    DataFormatError (no label column). Otherwise the label is first."""
    names = [cell.strip().strip("\"'").strip().lower() for cell in cells]
    if names[0] in _LABEL_NAMES:
        return False
    first_is_pixel, last_is_pixel = (_PIXEL_NAME.fullmatch(name) is not None for name in (names[0], names[-1]))
    if names[-1] in _LABEL_NAMES or (first_is_pixel and not last_is_pixel):
        return True
    if first_is_pixel:
        raise DataFormatError(
            f"{path}, line 1: the header names pixels in the first and the last column ({cells[0].strip()!r}, "
            f"{cells[-1].strip()!r}): no label column; rows are a label and {len(cells) - 1} pixel values "
            f"(the label first, or last with a header naming it 'label' or 'class')."
        )
    return False


def _line_limit(n_columns):
    """The longest CSV line read: 64 characters a column (no row of pixels comes near), 64 KB at least."""
    return max(64 * n_columns, 1 << 16)


def _lines(file, limit):
    """The lines of ``file``, each read with at most ``limit`` characters: a longer one is None
    (and the rest of it skipped), so that a 100 MB line costs no more than a short one (it cost
    2 GB, split and parsed, before it was refused as the wrong width)."""
    while True:
        line = file.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith("\n"):
            while line and not line.endswith("\n"):
                line = file.readline(_CHUNK_BYTES)
            yield None
        else:
            yield line


# NumPy's loadtxt before 2.3 parses a number that is not an integer into an int64 column as a
# float, truncated ("4.5" as 4, "nan" as -2**63), with a DeprecationWarning (seen on 1.24.4,
# 1.26.4, 2.0.2, 2.1.3 and 2.2.6); 2.3 refuses it. There, the fast reader leaves every file with
# what only such numbers hold ("4.5", "1e2", "nan", "inf") to the strict reader, which refuses
# "4.5" and takes "4.0" as 4 (and an ID column that labels=False does not read, "img_1.png",
# with them: slower, not wrong).
_LOADTXT_TAKES_FLOATS = np.lib.NumpyVersion(np.__version__) < "2.3.0"
_FLOAT_MARKS = (b".", b"e", b"E", b"n", b"N")


def _float_marks(data):
    return sum(data.count(mark) for mark in _FLOAT_MARKS)


def _widths_fit(path, n_separators, limit, header_marks=0):
    """Whether every non-blank line of ``path`` is at most ``limit`` bytes and the commas come to
    ``n_separators`` a line, by one pass over the bytes in chunks (a line with more commas than
    that is made up only by one with fewer, which loadtxt then refuses), and, under NumPy < 2.3, no
    number has a decimal point, an exponent, nan or inf (``_FLOAT_MARKS``; ``header_marks``:
    the header's own)."""
    commas = lines = marks = 0
    with open(path, "rb") as raw:
        tail = b""  # the line the last chunk ended inside
        for chunk in iter(lambda: raw.read(_CHUNK_BYTES), b""):
            commas += chunk.count(b",")
            marks += _float_marks(chunk) if _LOADTXT_TAKES_FLOATS else 0
            pieces = (tail + chunk).split(b"\n")
            tail = pieces.pop()
            if len(tail) > limit or (pieces and max(map(len, pieces)) > limit):
                return False
            # (a line of spaces alone is no data row either: the count then fails, and the
            # strict reader takes the file)
            lines += len(pieces) - pieces.count(b"") - pieces.count(b"\r")
    widths = commas == (lines + (tail.strip() != b"")) * n_separators
    return widths and (marks == header_marks or not _LOADTXT_TAKES_FLOATS)


def _read_csv_fast(path, n_features, labels=True):
    """(pixels, labels or None) of np.loadtxt over the data rows, views of its table; None when
    anything looks off."""
    limit = _line_limit(n_features + 1)
    with _open_csv(path) as file:
        first_line = ""
        while not first_line.strip():
            first_line = file.readline(limit + 1)
            if not first_line or len(first_line) > limit:
                return None  # empty, or a line too long: let the strict reader word the error
        first_cells = first_line.split(",")
        start = 0
        header_marks = 0
        last = False
        if not _is_header(first_cells):
            if labels and not _is_number(first_cells[0].strip()):
                return None  # a data row with a label that is not a number: the strict reader says where
            file.seek(0)
        elif len(first_cells) != n_features + 1:
            return None  # a header of the wrong width
        else:
            last = _label_last(path, first_cells)
            start = file.tell()
            header_marks = _float_marks(first_line.encode("utf-8", "replace"))
        # every row's width first (loadtxt reads whole lines; with labels=False it reads the
        # columns after the first alone, and would not see a row with more: a ragged row, or an
        # index column written before the label shifting every pixel)
        if not _widths_fit(path, n_features, limit, header_marks):
            return None
        file.seek(start)
        line = file.readline(limit + 1)
        while line and not line.strip():
            line = file.readline(limit + 1)
        if not line:
            # no data row: loadtxt would warn "input contained no data", and silencing that took
            # the whole process's warnings filters while the file was read (audit 51)
            return None
        file.seek(start)
        try:
            table = np.loadtxt(
                file, delimiter=",", dtype=np.int64, comments=None, ndmin=2,
                usecols=None if labels else range(0, n_features) if last else range(1, n_features + 1),
            )
        except (ValueError, OverflowError):
            return None
    if table.shape[0] == 0 or table.shape[1] != n_features + labels:
        return None
    read_labels = (table[:, -1] if last else table[:, 0]) if labels else None
    pixels = (table[:, :-1] if last else table[:, 1:]) if labels else table
    if (labels and read_labels.min() < 0) or pixels.min() < 0 or pixels.max() > 255:
        return None
    return pixels, read_labels


def _open_csv(path):
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: no such file. Check the path.") from None
    except IsADirectoryError:
        raise DataNotFoundError(f"{path} is a directory; expected a CSV file.") from None
    try:
        # one opening, looked at and rewound (a second one of a pipe waited for ever: audit 47)
        gzipped = raw.read(2) == b"\x1f\x8b"
        try:
            raw.seek(0)
        except OSError:  # (io.UnsupportedOperation: a pipe, a terminal)
            raise DataFormatError(f"{path} is not a file that can be read twice (a pipe?): read_csv reads it in "
                                  f"two passes; save it to a file first") from None
        if gzipped:  # (read as text it was "line 1: wrong column count: 1 columns")
            raise DataFormatError(f"{path} is gzip-compressed; CSV files are read as plain text: decompress it "
                                  f"first (gunzip -k {os.path.basename(path)})")
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first cell, which
        # would then look like a header and its row be dropped. errors="replace": binary junk then
        # fails as "not a number" with a line number instead of a UnicodeDecodeError that names
        # no line.
        return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace")
    except BaseException:
        raw.close()
        raise


def _read_csv_strict(path, n_features, read_labels=True):
    n_columns = n_features + 1
    layout = f"a label and {n_features} pixel values"
    labels = []
    pixel_rows = []
    seen_first_line = False
    columns = range(1, n_columns + 1)  # the cells' column numbers, label first (a header may say last)
    limit = _line_limit(n_columns)
    with _open_csv(path) as file:
        for line_number, line in enumerate(_lines(file, limit), start=1):
            if line is None:
                raise DataFormatError(f"{path}, line {line_number}: more than {limit:,} characters; a row of "
                                      f"{layout} is far shorter.")
            cells = [cell.strip() for cell in line.strip().split(",")]
            if cells == [""]:
                continue
            where = f"{path}, line {line_number}"
            if not seen_first_line:
                seen_first_line = True
                if _is_header(cells):
                    if len(cells) != n_columns:
                        raise DataFormatError(
                            f"{where}: header has {len(cells)} columns, expected {n_columns} "
                            f"({layout})."
                        )
                    if _label_last(path, cells):
                        columns = [n_columns, *range(1, n_columns)]
                    continue
            if len(cells) != n_columns:
                if not labels:
                    raise DataFormatError(
                        f"{where}: wrong column count: {len(cells)} columns, expected "
                        f"{n_columns} ({layout})."
                    )
                raise DataFormatError(
                    f"{where}: ragged row: {len(cells)} columns, but the rows before it have "
                    f"{n_columns} ({layout})."
                )
            if columns[0] != 1:  # the label last: put first
                cells.insert(0, cells.pop())
            if not read_labels:
                cells[0] = "0"  # not read
            values = [_cell_value(cell, where, column) for column, cell in zip(columns, cells)]
            if values[0] < 0:
                raise DataFormatError(
                    f"{where}: label {values[0]} is negative; labels must be non-negative "
                    "integers (class indices)."
                )
            if values[0] > np.iinfo(np.int64).max:
                raise DataFormatError(
                    f"{where}: label {values[0]} is too large; labels are class indices."
                )
            for column, value in zip(columns[1:], values[1:]):
                if not 0 <= value <= 255:
                    raise DataFormatError(
                        f"{where}, column {column}: pixel value {value} is outside 0..255."
                    )
            labels.append(values[0])
            pixel_rows.append(bytes(values[1:]))
    if not labels:
        what = "has a header but no data rows" if seen_first_line else "is empty"
        raise DataFormatError(f"{path}: file {what}; expected rows of {layout}.")
    images = np.frombuffer(bytearray().join(pixel_rows), dtype=np.uint8).reshape(len(labels), n_features)
    return (images, np.array(labels, dtype=np.int64)) if read_labels else (images, None)


def _cell_value(cell, where, column):
    shown = cell if len(cell) <= 20 else cell[:20] + "..."
    if _INTEGER.fullmatch(cell):
        try:
            return int(cell)
        except ValueError:  # more digits than int() accepts: certainly out of range
            raise DataFormatError(
                f"{where}, column {column}: number {shown!r} is far out of range."
            ) from None
    if _DECIMAL.fullmatch(cell):
        value = float(cell)
        if not math.isfinite(value):
            raise DataFormatError(f"{where}, column {column}: number {shown!r} is far out of range.")
        if value.is_integer():
            return int(value)
        raise DataFormatError(
            f"{where}, column {column}: {shown!r} is not an integer; labels and pixel "
            "values must be whole numbers."
        )
    raise DataFormatError(f"{where}, column {column}: {shown!r} is not a number.")
