"""The files of ``fastmlp predict``: samples in, predictions or probabilities out.

Inputs, by suffix: ``.npy`` (a NumPy array ``[N, D]`` or images ``[N, h, w]``: uint8 pixels or
floats, read with ``allow_pickle=False``), ``.csv`` (the MNIST CSV layout ``fastmlp.read_csv``
reads: a label, then D pixel values 0..255, optional header; the labels are ignored), anything
else an IDX file (``fastmlp.read_idx``, gzipped or not, such as ``t10k-images-idx3-ubyte.gz``).
Outputs, by suffix: ``.npy`` or ``.csv`` (a header row, then one row per sample), written
atomically.
"""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np

from ._atomic import atomic_write
from .checkpoint import _DAMAGED
from .data import DataFormatError, DataNotFoundError, read_csv, read_idx

OUTPUT_SUFFIXES = (".npy", ".csv")
# Digits that round-trip each float type through text.
FLOAT_FORMATS = {np.dtype(np.float32): "%.9g", np.dtype(np.float64): "%.17g"}


def read_input(path, n_features):
    """The samples in ``path`` as an array (``n_features`` is the width a CSV row must have
    after its label). The array is not checked against a model here: ``check_X`` does that."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix == ".csv":
        return read_csv(path, n_features=n_features, labels=False)[0]
    if suffix == ".npz":
        raise DataFormatError(f"{path}: an .npz archive; the samples must be one array in an .npy file (np.save), CSV or IDX")
    if suffix != ".npy":
        return read_idx(path)
    try:
        with open(path, "rb") as file:
            head = file.read(6)
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: no such file. Check the path.") from None
    if not head.startswith((b"\x93NUMPY", b"PK")):  # (a zip: np.load's own words, below)  # (np.load took it for a pickle and advised loading it unsafely)
        raise DataFormatError(f"{path}: not a NumPy .npy array file (it does not start with NumPy's magic bytes "
                              f"\\x93NUMPY); save the samples with np.save")
    try:
        # memory-mapped (copy-on-write: writable, so the kernels take it as any array): a file
        # larger than memory is predicted in batches, and a header declaring more rows than the
        # file holds is refused before anything is read (it was read whole: a 39 kB file declaring
        # 10**12 rows ended in a MemoryError traceback; audit 29)
        array = np.load(path, mmap_mode="c", allow_pickle=False)
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: no such file. Check the path.") from None
    except (*_DAMAGED, zipfile.BadZipFile) as error:  # (a damaged .npz: a zip; a header NumPy's tokenizer refuses)
        declared = _declared(path)
        if declared is not None and declared[0].hasobject:
            raise DataFormatError(f"{path}: holds Python objects (dtype {declared[0]}), which fastmlp never "
                                  f"unpickles; save the samples as numbers (X.astype(np.float32))") from None
        if declared is not None and "mmap length is greater than file size" in str(error):
            raise DataFormatError(f"{path}: its header declares {declared[0]} values of shape {declared[1]} "
                                  f"({declared[0].itemsize * math.prod(declared[1]):,} bytes), more than the file "
                                  f"holds: it is truncated or damaged") from None
        raise DataFormatError(f"{path}: not a NumPy .npy array file ({' '.join(str(error).split())})") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise DataFormatError(f"{path}: an .npz archive, not a single .npy array; save the samples with np.save")
    return array


def _declared(path):
    """(dtype, shape) an .npy file's header declares, or None when it has no readable header."""
    from .checkpoint import npy_header

    try:
        with open(path, "rb") as file:
            return npy_header(file)
    except _DAMAGED:  # (a damaged header: tokenize's and the parser's errors too)
        return None


def write_output(path, values, columns):
    """Write ``values`` (``[N]`` or ``[N, K]``) to ``path`` (``.npy`` or ``.csv``, atomically).
    ``columns`` names the CSV columns (the header row)."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"output file must end in {' or '.join(OUTPUT_SUFFIXES)}; got {os.fspath(path)!r}")
    if suffix == ".npy":
        with atomic_write(path, "wb") as file:
            np.save(file, values, allow_pickle=False)
        return
    table = values.reshape(len(values), -1)
    if len(columns) != table.shape[1]:
        raise ValueError(f"{len(columns)} column names for {table.shape[1]} columns")
    number_format = "%d" if np.issubdtype(values.dtype, np.integer) else FLOAT_FORMATS[values.dtype]
    with atomic_write(path, "w") as file:
        np.savetxt(file, table, fmt=number_format, delimiter=",", header=",".join(columns), comments="")
