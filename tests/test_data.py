"""Tests for fastmlp.data (file reading, discovery, named datasets, download) and fastmlp._atomic.

Every test writes its own small files into tmp_path; nothing touches the network: downloads
go through pooch to an HTTP server on 127.0.0.1 that the test starts, serving small IDX files
it generates, and the loaders that must not download run with pooch refused.
"""

import dataclasses
import gzip
import hashlib
import http.server
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pooch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastmlp import data
from fastmlp._atomic import atomic_write, check_target
from fastmlp.data import (
    CLASS_NAMES,
    DATASETS,
    DataFormatError,
    DataNotFoundError,
    default_data_dir,
    load_dataset,
    load_mnist,
    read_csv,
    read_idx,
    read_idx_images,
    read_idx_labels,
)

FILE_NAMES = data.IDX_FILES


# --------------------------------------------------------------------------------------
# Helpers: build IDX and CSV files with known content


def idx_bytes(array, type_code=0x08):
    """Serialise ``array`` as IDX: magic, big-endian dims, big-endian data."""
    dtype = data._IDX_TYPES[type_code][1]
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def known_images(n_images, rows=28, cols=28):
    return (np.arange(n_images * rows * cols) % 251).astype(np.uint8).reshape(n_images, rows, cols)


def known_labels(n_labels):
    return (np.arange(n_labels) * 7 % 10).astype(np.uint8)


def write(path, content, gz=False):
    path.write_bytes(gzip.compress(content) if gz else content)
    return path


def write_mnist_dir(directory, n_train=5, n_test=3, gz=True):
    """Write the four MNIST files; returns the expected arrays."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    arrays = {
        data.TRAIN_IMAGES: known_images(n_train),
        data.TRAIN_LABELS: known_labels(n_train),
        data.TEST_IMAGES: known_images(n_test)[::-1],
        data.TEST_LABELS: known_labels(n_test)[::-1],
    }
    for name, array in arrays.items():
        write(directory / (name + suffix), idx_bytes(array), gz=gz)
    return arrays


def csv_text(images, labels, header=True):
    lines = []
    if header:
        lines.append(",".join(["label"] + [f"{i // 28 + 1}x{i % 28 + 1}" for i in range(images.shape[1])]))
    for label, row in zip(labels, images):
        lines.append(",".join(map(str, [label, *row])))
    return "\n".join(lines) + "\n"


def leftovers(directory):
    """Temp files atomic_write would leave behind if cleanup failed."""
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(self, url, *args, **kwargs):
        raise AssertionError(f"test tried to download {url}")

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", refuse)  # what fastmlp.data downloads with


# --------------------------------------------------------------------------------------
# IDX reading


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_read_idx_round_trip(tmp_path, gz):
    images = known_images(5)
    labels = known_labels(5)
    image_path = write(tmp_path / "images", idx_bytes(images), gz=gz)
    label_path = write(tmp_path / "labels", idx_bytes(labels), gz=gz)

    raw = read_idx(image_path)
    assert raw.dtype == np.uint8 and raw.shape == (5, 28, 28)
    np.testing.assert_array_equal(raw, images)

    flat = read_idx_images(image_path)
    assert flat.dtype == np.uint8 and flat.shape == (5, 784) and flat.flags.c_contiguous
    assert flat.flags.writeable
    np.testing.assert_array_equal(flat, images.reshape(5, 784))

    read_labels = read_idx_labels(label_path)
    assert read_labels.dtype == np.int64 and read_labels.shape == (5,)
    np.testing.assert_array_equal(read_labels, labels)


def test_read_idx_images_any_size(tmp_path):
    images = known_images(3, rows=5, cols=7)
    flat = read_idx_images(write(tmp_path / "small", idx_bytes(images)))
    assert flat.shape == (3, 35)
    np.testing.assert_array_equal(flat, images.reshape(3, 35))


def test_read_idx_empty_dataset(tmp_path):
    assert read_idx_images(write(tmp_path / "none", idx_bytes(known_images(0)))).shape == (0, 784)


@pytest.mark.parametrize(
    "type_code, values",
    [
        (0x09, np.array([-128, -1, 0, 127], dtype=np.int8)),
        (0x0B, np.array([[-30000, 2], [3, 30000]], dtype=np.int16)),
        (0x0C, np.array([-(2**31), 1, 2**31 - 1], dtype=np.int32)),
        (0x0D, np.array([[[0.5, -1.25]]], dtype=np.float32)),
        (0x0E, np.array([np.pi, -np.e], dtype=np.float64)),
    ],
)
def test_read_idx_multibyte_types_come_back_native(tmp_path, type_code, values):
    result = read_idx(write(tmp_path / "values", idx_bytes(values, type_code)))
    assert result.dtype == values.dtype.newbyteorder("=")
    assert result.dtype.isnative
    np.testing.assert_array_equal(result, values)


def test_gzip_detected_by_content_not_name(tmp_path):
    images = known_images(2)
    gz_under_plain_name = write(tmp_path / "train-images-idx3-ubyte", idx_bytes(images), gz=True)
    plain_under_gz_name = write(tmp_path / "other.gz", idx_bytes(images), gz=False)
    np.testing.assert_array_equal(read_idx(gz_under_plain_name), images)
    np.testing.assert_array_equal(read_idx(plain_under_gz_name), images)


def valid_images_bytes():
    return idx_bytes(known_images(3, rows=4, cols=4))


CORRUPT_IDX_CASES = {
    # name: (file content, reader, words the message must contain)
    "labels-read-as-images": (idx_bytes(known_labels(3)), read_idx_images, ["expected 2051", "got 2049"]),
    "images-read-as-labels": (valid_images_bytes(), read_idx_labels, ["expected 2049", "got 2051"]),
    "not-idx": (b"\x12\x34\x08\x01" + bytes(8), read_idx, ["not an IDX file"]),
    "unsupported-type": (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"ab", read_idx, ["unsupported IDX data type 0x07"]),
    "zero-dimensions": (b"\x00\x00\x08\x00", read_idx, ["0 dimensions"]),
    "65-dimensions": (b"\x00\x00\x08\x41" + struct.pack(">65I", *[1] * 65) + b"a", read_idx, ["65 dimensions", "at most 64"]),
    "empty": (b"", read_idx, ["too short", "got 0"]),
    "short-magic": (b"\x00\x00", read_idx_labels, ["too short"]),
    "short-dims": (valid_images_bytes()[:9], read_idx_images, ["too short", "16 header bytes"]),
    "truncated-data": (valid_images_bytes()[:-5], read_idx_images, ["truncated", "48 bytes", "43"]),
    "trailing-bytes": (valid_images_bytes() + b"xyz", read_idx_images, ["trailing"]),
    "huge-declared-count": (
        b"\x00\x00\x08\x03" + struct.pack(">III", 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(10),
        read_idx_images,
        ["truncated"],
    ),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("case", list(CORRUPT_IDX_CASES))
def test_corrupt_idx_raises_data_format_error_naming_file(tmp_path, case, gz):
    content, reader, words = CORRUPT_IDX_CASES[case]
    path = write(tmp_path / f"corrupt-{case}-file", content, gz=gz)
    with pytest.raises(DataFormatError) as error:
        reader(path)
    message = str(error.value)
    assert f"corrupt-{case}-file" in message
    for word in words:
        assert word in message


def test_gzipped_twice(tmp_path):
    path = write(tmp_path / "twice.gz", gzip.compress(valid_images_bytes()), gz=True)
    with pytest.raises(DataFormatError, match="twice.gz: .*gzip-compressed twice"):
        read_idx(path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda gz_bytes: gz_bytes[: len(gz_bytes) // 2],  # cut mid-stream
        lambda gz_bytes: gz_bytes[:-4],  # lost the size trailer
        lambda gz_bytes: gz_bytes[:12] + bytes(b ^ 0xFF for b in gz_bytes[12:20]) + gz_bytes[20:],
        lambda gz_bytes: gz_bytes[:-8] + b"\x00\x00\x00\x00" + gz_bytes[-4:],  # wrong CRC
        lambda gz_bytes: gz_bytes + b"garbage!",
        lambda gz_bytes: gz_bytes[:5],  # inside the gzip header
    ],
    ids=["half", "no-size", "flipped", "bad-crc", "trailing-garbage", "header-only"],
)
def test_corrupt_gzip_raises_data_format_error(tmp_path, damage):
    gz_bytes = gzip.compress(valid_images_bytes())
    path = write(tmp_path / "damaged.gz", damage(gz_bytes))
    with pytest.raises(DataFormatError, match="damaged.gz"):
        read_idx(path)


@pytest.mark.parametrize("trailer", ["kept", "lying"])
def test_a_gzipped_idx_file_that_inflates_past_its_header_costs_no_memory(tmp_path, trailer):
    # a 70 kB .gz of a header declaring 2**31 images and 64 MB of zeros was read to its end, and
    # held twice (its chunks joined): a 1 MB file cost 2 GB before "truncated data" (audit 29)
    import tracemalloc

    content = b"\x00\x00\x08\x03" + struct.pack(">III", 2**31, 28, 28) + bytes(64 << 20)
    packed = bytearray(gzip.compress(content, compresslevel=1))
    if trailer == "lying":  # the size the trailer records made to agree with the header
        packed[-4:] = ((16 + 2**31 * 784) % 2**32).to_bytes(4, "little")
    path = write(tmp_path / "bomb.gz", bytes(packed))
    tracemalloc.start()
    try:
        # (lying: the buffer of the declared 1.7 TB cannot be had, or it fills as the data comes)
        with pytest.raises(DataFormatError, match=r"bomb.gz: (truncated data|the header declares 2147483648 x 28 x 28)"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if trailer == "kept":
        assert peak < (16 << 20)


def test_a_gzipped_idx_file_of_several_members_is_read(tmp_path):
    # (concatenated gzip members: the trailer records the last member's size alone)
    images = known_images(7)
    content = idx_bytes(images)
    path = write(tmp_path / "members.gz", gzip.compress(content[:100]) + gzip.compress(content[100:]))
    np.testing.assert_array_equal(read_idx(path), images)


@pytest.mark.parametrize("labels", [True, False], ids=["labels", "no-labels"])
@pytest.mark.parametrize("where", ["first", "later"])
def test_a_csv_line_far_too_long_is_refused_unread(tmp_path, labels, where):
    # a 100 MB line cost 2 GB (split into cells, parsed by loadtxt) before it was refused as the
    # wrong width (audit 29); 20 MB here, with the memory it may take bounded
    import tracemalloc

    row = "3," + ",".join(["7"] * 784) + "\n"
    long = "5," + "0," * 10_000_000 + "0\n"
    path = tmp_path / "long.csv"
    path.write_text(long + row if where == "first" else row * 3 + long)
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError, match=rf"long.csv, line {1 if where == 'first' else 4}: more than 65,536 "
                                                  r"characters; a row of a label and 784 pixel values is far shorter"):
            data.read_csv(path, labels=labels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (8 << 20)


def test_missing_file_raises_data_not_found(tmp_path):
    with pytest.raises(DataNotFoundError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here")
    with pytest.raises(DataNotFoundError, match="nothing-here"):
        read_csv(tmp_path / "nothing-here.csv")
    with pytest.raises(DataNotFoundError, match="is a directory"):
        read_idx(tmp_path)


# --------------------------------------------------------------------------------------
# CSV reading


def small_csv_rows():
    return np.array([[0, 1, 2, 3], [255, 254, 0, 7], [9, 9, 9, 9]]), np.array([3, 0, 11])


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
def test_read_csv_round_trip(tmp_path, header):
    images, labels = small_csv_rows()
    path = tmp_path / "small.csv"
    path.write_text(csv_text(images, labels, header=header))
    read_images, read_labels = read_csv(path, n_features=4)
    assert read_images.dtype == np.uint8 and read_images.shape == (3, 4)
    assert read_images.flags.c_contiguous
    assert read_labels.dtype == np.int64 and read_labels.shape == (3,)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
def test_a_byte_order_mark_is_not_part_of_the_first_row(tmp_path, header):
    """Excel's "CSV UTF-8" starts the file with U+FEFF: the first row must still be read (as the
    header or as data), not taken for a header because its first cell is not a number."""
    images, labels = small_csv_rows()
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + csv_text(images, labels, header=header).encode())
    read_images, read_labels = read_csv(path, n_features=4)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)


def label_last_text(images, labels, header):
    rows = [header] + [",".join(map(str, [*row, label])) for row, label in zip(images, labels)]
    return "\n".join(rows) + "\n"


OPENML_HEADER = "pixel1,pixel2,pixel3,pixel4,class"  # OpenML's mnist_784 (fetch_openml) layout


@pytest.mark.parametrize("reader", ["fast", "strict"])
@pytest.mark.parametrize("header", [OPENML_HEADER, "PIXEL1,pixel2,pixel3,pixel4,Digit", "a,b,c,d,label",
                                    '"pixel1","pixel2","pixel3","pixel4","class"', "1x1,1x2,2x1,2x2,whatever"])
def test_a_header_that_names_the_label_last_reads_it_last(tmp_path, monkeypatch, reader, header):
    """Audit 78: OpenML's CSV (``pixel1,...,pixel784,class``) was read label-first, every label
    pixel 1's value and the class taken for pixel 784: training "worked", on garbage."""
    if reader == "strict":
        monkeypatch.setattr(data, "_read_csv_fast", lambda *args: None)
    images, labels = small_csv_rows()
    path = tmp_path / "openml.csv"
    path.write_text(label_last_text(images, labels, header))
    read_images, read_labels = read_csv(path, n_features=4)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)
    read_images, no_labels = read_csv(path, n_features=4, labels=False)
    assert no_labels is None
    np.testing.assert_array_equal(read_images, images)


@pytest.mark.parametrize("reader", ["fast", "strict"])
@pytest.mark.parametrize("start", [0, 1])
def test_pandas_default_column_names_are_a_header(tmp_path, monkeypatch, reader, start):
    """Audit 79: ``pd.DataFrame(np.c_[labels, pixels]).to_csv(path, index=False)`` heads the file
    with 0, 1, ..., 784, which was read as a data row ("line 1, column 257: pixel value 256 is
    outside 0..255"). Numbers counting past 255 are a header (no row of pixels holds them); a
    first row 0, 1, 2, 3, 4 of a 4-pixel file is data, as before."""
    if reader == "strict":
        monkeypatch.setattr(data, "_read_csv_fast", lambda *args: None)
    images = known_images(3).reshape(3, 784)
    labels = known_labels(3)
    path = tmp_path / "pandas.csv"
    rows = [",".join(map(str, range(start, start + 785)))] + [",".join(map(str, [label, *row]))
                                                               for label, row in zip(labels, images)]
    path.write_text("\n".join(rows) + "\n")
    read_images, read_labels = read_csv(path)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)
    (tmp_path / "small.csv").write_text("0,1,2,3,4\n7,0,255,0,1\n")
    read_images, read_labels = read_csv(tmp_path / "small.csv", n_features=4)
    np.testing.assert_array_equal(read_labels, [0, 7])


@pytest.mark.parametrize("reader", ["fast", "strict"])
def test_a_label_last_file_names_the_column_of_a_bad_value(tmp_path, monkeypatch, reader):
    if reader == "strict":
        monkeypatch.setattr(data, "_read_csv_fast", lambda *args: None)
    images, labels = small_csv_rows()
    images[1, 2] = 300
    path = tmp_path / "openml.csv"
    path.write_text(label_last_text(images, labels, OPENML_HEADER))
    with pytest.raises(DataFormatError, match="line 3, column 3: pixel value 300 is outside 0..255"):
        read_csv(path, n_features=4)
    images[1, 2] = 0
    labels[2] = -1
    path.write_text(label_last_text(images, labels, OPENML_HEADER))
    with pytest.raises(DataFormatError, match="line 4: label -1 is negative"):
        read_csv(path, n_features=4)


@pytest.mark.parametrize("reader", ["fast", "strict"])
def test_a_header_of_pixels_alone_is_refused_as_having_no_label(tmp_path, monkeypatch, reader):
    if reader == "strict":
        monkeypatch.setattr(data, "_read_csv_fast", lambda *args: None)
    images, labels = small_csv_rows()
    path = tmp_path / "pixels.csv"
    path.write_text(label_last_text(images, labels, "pixel0,pixel1,pixel2,pixel3,pixel4"))
    with pytest.raises(DataFormatError, match="line 1: the header names pixels in the first and the last column "
                                              "\\('pixel0', 'pixel4'\\): no label column"):
        read_csv(path, n_features=4)


def test_read_csv_default_784_columns(tmp_path):
    images = known_images(3).reshape(3, 784)
    labels = known_labels(3)
    path = tmp_path / "mnist_like.csv"
    path.write_text(csv_text(images, labels))
    read_images, read_labels = read_csv(path)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)


def test_read_csv_leaves_the_process_warning_filters_alone(tmp_path, monkeypatch):
    # it silenced loadtxt's "no data" warning with catch_warnings + simplefilter("ignore"): the
    # whole process's filters (not thread-safe), and another thread's warnings were lost meanwhile
    # (audit 51)
    import warnings

    filters = list(warnings.filters)
    real_loadtxt, calls = np.loadtxt, []

    def loadtxt(*args, **kwargs):
        calls.append(warnings.filters == filters)
        return real_loadtxt(*args, **kwargs)

    monkeypatch.setattr(np, "loadtxt", loadtxt)
    header = "label," + ",".join(f"p{i}" for i in range(4))
    (tmp_path / "rows.csv").write_text(header + "\n1,0,255,3,0\n\n2,9,0,0,1\n")
    (tmp_path / "header.csv").write_text(header + "\n\n  \n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        filters = list(warnings.filters)
        X, y = data.read_csv(tmp_path / "rows.csv", n_features=4)
        assert X.shape == (2, 4) and list(y) == [1, 2]
        with pytest.raises(data.DataFormatError, match="header but no data rows"):
            data.read_csv(tmp_path / "header.csv", n_features=4)
    assert calls and all(calls), calls


def test_read_csv_tolerates_blank_lines_crlf_and_integral_floats(tmp_path):
    path = tmp_path / "loose.csv"
    path.write_bytes(b"\r\nlabel,a,b\r\n1, 2 ,3\r\n\r\n   \r\n4.0,5.,+6\r\n")
    images, labels = read_csv(path, n_features=2)
    np.testing.assert_array_equal(images, [[2, 3], [5, 6]])
    np.testing.assert_array_equal(labels, [1, 4])


CORRUPT_CSV_CASES = {
    # name: (file text, words the message must contain)
    "wrong-column-count": ("1,2,3\n4,5,6\n", ["line 1", "3 columns", "expected 5"]),
    "ragged-row": ("1,2,3,4,5\n1,2,3,4,5\n1,2,3,4\n", ["line 3", "ragged", "4 columns"]),
    "header-wrong-width": ("label,a,b\n1,2,3,4,5\n", ["line 1", "header has 3 columns"]),
    "non-numeric": ("label,a,b,c,d\n1,2,3,4,5\n1,2,x7,4,5\n", ["line 3", "column 3", "'x7' is not a number"]),
    "empty-cell": ("1,2,3,4,5\n1,2,,4,5\n", ["line 2", "column 3"]),
    "pixel-too-big": ("1,2,3,4,5\n1,2,3,256,5\n", ["line 2", "column 4", "256", "0..255"]),
    "pixel-negative": ("1,-2,3,4,5\n", ["line 1", "column 2", "-2"]),
    "pixel-not-integer": ("1,2,3,4.5,5\n", ["line 1", "column 4", "not an integer"]),
    "label-negative": ("\n\n-1,2,3,4,5\n", ["line 3", "label -1", "non-negative"]),
    "label-not-integer": ("1.5,2,3,4,5\n", ["line 1", "not an integer"]),
    "label-infinite": ("1e400,2,3,4,5\n", ["line 1", "column 1", "far out of range"]),
    "label-huge": ("1,2,3,4,5\n99999999999999999999,2,3,4,5\n", ["line 2", "label 99999999999999999999", "too large"]),
    "huge-number": ("1,2,3,4," + "9" * 5000 + "\n", ["line 1", "column 5"]),
    "empty-file": ("", ["is empty"]),
    "blank-file": ("\n  \n\n", ["is empty"]),
    "header-only": ("label,a,b,c,d\n", ["header but no data rows"]),
}


@pytest.mark.parametrize("case", list(CORRUPT_CSV_CASES))
def test_corrupt_csv_raises_data_format_error_with_line(tmp_path, case):
    text, words = CORRUPT_CSV_CASES[case]
    path = tmp_path / f"bad-{case}.csv"
    path.write_text(text)
    with pytest.raises(DataFormatError) as error:
        read_csv(path, n_features=4)
    message = str(error.value)
    assert f"bad-{case}.csv" in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("case", [name for name in CORRUPT_CSV_CASES if "not-integer" in name or "infinite" in name])
def test_a_number_that_is_not_an_integer_is_refused_where_loadtxt_takes_it(tmp_path, monkeypatch, case):
    # NumPy's loadtxt before 2.3 parsed "4.5" as the integer 4 (a DeprecationWarning), so the fast
    # reader took the file: on numpy 1.24, the package's lowest, "pixel-not-integer" read as 4
    text, words = CORRUPT_CSV_CASES[case]
    real = np.loadtxt

    def lenient_loadtxt(*args, dtype=float, **kwargs):
        if dtype is np.int64:  # parsed as floats, then truncated
            return real(*args, dtype=float, **kwargs).astype(dtype)
        return real(*args, dtype=dtype, **kwargs)

    monkeypatch.setattr(data.np, "loadtxt", lenient_loadtxt)
    monkeypatch.setattr(data, "_LOADTXT_TAKES_FLOATS", True)
    (tmp_path / "a.csv").write_text(text)
    with pytest.raises(DataFormatError, match=words[-1]):
        read_csv(tmp_path / "a.csv", n_features=4)


def test_a_header_with_points_and_es_still_reads_fast(tmp_path, monkeypatch):
    calls = []
    real = np.loadtxt
    monkeypatch.setattr(data.np, "loadtxt", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    monkeypatch.setattr(data, "_LOADTXT_TAKES_FLOATS", True)  # (the check is for NumPy < 2.3)
    (tmp_path / "a.csv").write_text("label,pixel.1,e,E,e.EnN\n1,2,3,4,5\n7,0,255,0,1\n")
    images, labels = read_csv(tmp_path / "a.csv", n_features=4)
    assert calls == [1]  # the fast reader took it
    np.testing.assert_array_equal(images, [[2, 3, 4, 5], [0, 255, 0, 1]])
    np.testing.assert_array_equal(labels, [1, 7])
    (tmp_path / "b.csv").write_text("label,pixel.1,e,E,e.E\n1,2,3,4,5\n7,0,2.55e1,0,1\n")
    with pytest.raises(DataFormatError, match="line 3, column 3: '2.55e1' is not an integer"):
        read_csv(tmp_path / "b.csv", n_features=4)


@pytest.mark.parametrize("lenient", [True, False])
def test_an_id_column_labels_false_skips_reads_fast_where_loadtxt_refuses_floats(tmp_path, monkeypatch, lenient):
    # "img_1.png" holds a point: from NumPy 2.3 on (loadtxt refuses "4.5" itself) it read by the
    # strict reader all the same, ten times slower (audit 55); before 2.3 it must, to be right
    calls = []
    real = np.loadtxt
    monkeypatch.setattr(data.np, "loadtxt", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    monkeypatch.setattr(data, "_LOADTXT_TAKES_FLOATS", lenient)
    (tmp_path / "a.csv").write_text("img_1.png,2,3,4,5\nimg_2.png,0,255,0,1\n")
    images, _ = read_csv(tmp_path / "a.csv", n_features=4, labels=False)
    np.testing.assert_array_equal(images, [[2, 3, 4, 5], [0, 255, 0, 1]])
    assert calls == ([] if lenient else [1])


def test_a_first_row_of_pixels_is_data_even_when_its_label_is_not_a_number(tmp_path):
    images, labels = known_images(3).reshape(3, 784), known_labels(3)
    text = csv_text(images, labels, header=False).replace(f"{labels[0]},", "?,", 1)
    (tmp_path / "a.csv").write_text(text)
    with pytest.raises(DataFormatError, match=r"a.csv, line 1, column 1"):  # it was taken for a header
        read_csv(tmp_path / "a.csv")
    pixels, none = read_csv(tmp_path / "a.csv", labels=False)
    np.testing.assert_array_equal(pixels, images)
    assert none is None
    # a header of numbered columns is still a header: its numbers are not all pixel values
    numbered = ",".join(["label", *map(str, range(784))]) + "\n" + csv_text(images, labels, header=False)
    (tmp_path / "b.csv").write_text(numbered)
    for reader in (read_csv, data._read_csv_strict):
        got_images, got_labels = reader(tmp_path / "b.csv", n_features=784)
        np.testing.assert_array_equal(got_images, images)
        np.testing.assert_array_equal(got_labels, labels)


def test_read_csv_binary_junk(tmp_path):
    path = write(tmp_path / "junk.csv", bytes(range(256)) * 3)
    with pytest.raises(DataFormatError, match="junk.csv"):
        read_csv(path)


def test_a_gzipped_csv_is_refused_as_such(tmp_path):
    """Read as text it was "line 1: wrong column count: 1 columns" (audit 46)."""
    path = write(tmp_path / "train.csv", gzip.compress(b"5,0,0,255\n"))
    with pytest.raises(DataFormatError, match=r"train.csv is gzip-compressed; .*gunzip -k train.csv"):
        read_csv(path, n_features=3)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX's")
def test_a_csv_from_a_pipe_is_refused_at_once(tmp_path):
    """The gzip check opened the file, then opened it again: on a named pipe the second opening
    waited for a writer for ever (audit 47)."""
    import threading

    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)

    def write():
        try:
            with open(fifo, "wb") as pipe:
                pipe.write(b"5,0,0,255\n" * 100)
        except OSError:  # (the reader went away)
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    outcome = []

    def read():
        try:
            read_csv(fifo, n_features=3)
        except DataFormatError as error:
            outcome.append(str(error))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), "read_csv hung on a pipe"
    assert outcome and "not a file that can be read twice (a pipe?)" in outcome[0]


def test_a_csv_path_that_is_a_directory_says_csv(tmp_path):
    with pytest.raises(DataNotFoundError, match="is a directory; expected a CSV file"):
        read_csv(tmp_path)


@pytest.mark.parametrize("n_features", [0, -3, 2.5, True, "784"])
def test_read_csv_rejects_bad_n_features(tmp_path, n_features):
    with pytest.raises(ValueError, match="n_features must be a positive integer"):
        read_csv(tmp_path / "unused.csv", n_features=n_features)


# --------------------------------------------------------------------------------------
# load_mnist: directory resolution, validation


def assert_matches(loaded, arrays):
    train_images, train_labels, test_images, test_labels = loaded
    for images in (train_images, test_images):
        assert images.dtype == np.uint8 and images.ndim == 2 and images.shape[1] == 784
        assert images.flags.c_contiguous
    for labels in (train_labels, test_labels):
        assert labels.dtype == np.int64 and labels.ndim == 1
    np.testing.assert_array_equal(train_images, arrays[data.TRAIN_IMAGES].reshape(-1, 784))
    np.testing.assert_array_equal(train_labels, arrays[data.TRAIN_LABELS])
    np.testing.assert_array_equal(test_images, arrays[data.TEST_IMAGES].reshape(-1, 784))
    np.testing.assert_array_equal(test_labels, arrays[data.TEST_LABELS])


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_load_mnist_from_data_dir(tmp_path, gz, no_network):
    arrays = write_mnist_dir(tmp_path / "mnist", gz=gz)
    assert_matches(load_mnist(tmp_path / "mnist"), arrays)
    assert_matches(load_mnist(str(tmp_path / "mnist")), arrays)


def test_load_mnist_from_environment(tmp_path, monkeypatch, no_network):
    arrays = write_mnist_dir(tmp_path / "from-env")
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "from-env"))
    assert_matches(load_mnist(), arrays)


def test_data_dir_argument_beats_environment(tmp_path, monkeypatch, no_network):
    arrays = write_mnist_dir(tmp_path / "argument", n_train=4)
    write_mnist_dir(tmp_path / "env", n_train=6)
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "env"))
    assert_matches(load_mnist(tmp_path / "argument"), arrays)


def test_load_mnist_csv_layout(tmp_path, no_network):
    images, labels = known_images(4).reshape(4, 784), known_labels(4)
    (tmp_path / "mnist_train.csv").write_text(csv_text(images, labels))
    (tmp_path / "mnist_test.csv").write_text(csv_text(images[:2], labels[:2], header=False))
    train_images, train_labels, test_images, test_labels = load_mnist(tmp_path)
    np.testing.assert_array_equal(train_images, images)
    np.testing.assert_array_equal(train_labels, labels)
    np.testing.assert_array_equal(test_images, images[:2])
    np.testing.assert_array_equal(test_labels, labels[:2])


def test_a_failed_download_names_what_is_still_missing(tmp_path, monkeypatch):
    """The files fetched before the one no mirror served are there: the message lists the rest."""
    from fastmlp import data

    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def first_then_fail(dataset, directory, missing, progress):
        directory.mkdir(parents=True, exist_ok=True)
        write(directory / (missing[0] + ".gz"), b"fetched")
        return f"no mirror could serve {missing[1]}.gz (checksum mismatch)"

    monkeypatch.setattr(data, "_download", first_then_fail)
    with pytest.raises(DataNotFoundError) as error:
        load_mnist(progress=False)
    message = str(error.value)
    assert "none of them is there" not in message
    assert "missing: train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte" in message


def test_an_empty_data_dir_is_refused_not_the_current_directory(tmp_path, monkeypatch, no_network):
    monkeypatch.chdir(tmp_path)
    write_mnist_dir(tmp_path, n_train=2)
    for empty in ("", b""):  # (bytes failed inside pathlib, past this check; audit 61)
        with pytest.raises(ValueError, match="data_dir is an empty string"):
            load_mnist(empty)


def test_a_data_dir_given_as_bytes_is_read(tmp_path, no_network):
    # "argument should be a str object or an os.PathLike object returning str, not <class 'bytes'>",
    # from pathlib, where the message of a path that is not one says bytes are taken (audit 61)
    write_mnist_dir(tmp_path, n_train=2)
    X_train, *_ = load_mnist(os.fsencode(tmp_path), progress=False)
    assert len(X_train) == 2


def test_half_a_csv_set_says_which_file_is_missing(tmp_path, no_network):
    # it said only "none of them is there", naming the four IDX files
    (tmp_path / "mnist_train.csv").write_text(csv_text(known_images(3), known_labels(3)))
    with pytest.raises(DataNotFoundError, match="mnist_train.csv is there, but not mnist_test.csv: the CSV layout needs both"):
        load_mnist(tmp_path)


def test_the_test_set_alone_loads_from_its_own_files(tmp_path, no_network):
    from fastmlp.data import load_test_set

    images, labels = known_images(4).reshape(4, 784), known_labels(4)
    (tmp_path / "mnist_test.csv").write_text(csv_text(images[:2], labels[:2], header=False))
    test_images, test_labels = load_test_set("mnist", tmp_path)
    np.testing.assert_array_equal(test_images, images[:2])
    np.testing.assert_array_equal(test_labels, labels[:2])
    with pytest.raises(DataNotFoundError, match="mnist_train.csv"):  # the whole dataset needs both
        load_mnist(tmp_path)


def test_load_mnist_loads_other_idx_datasets(tmp_path, no_network):
    # Fashion-MNIST ships under the same names; the loader only cares about the layout.
    arrays = write_mnist_dir(tmp_path / "fashion", n_train=7, n_test=2, gz=False)
    assert_matches(load_mnist(tmp_path / "fashion"), arrays)


def test_load_mnist_counts_disagree_names_both_files(tmp_path, no_network):
    write_mnist_dir(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(known_labels(4)), gz=True)
    with pytest.raises(DataFormatError) as error:
        load_mnist(tmp_path)
    message = str(error.value)
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message
    assert "5 images" in message and "4 labels" in message


def test_load_mnist_wrong_image_size(tmp_path, no_network):
    write_mnist_dir(tmp_path)
    write(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(known_images(3, 32, 32)), gz=True)
    with pytest.raises(DataFormatError, match=r"t10k-images-idx3-ubyte.gz: images are 32x32.*28x28"):
        load_mnist(tmp_path)


def test_load_mnist_swapped_files(tmp_path, no_network):
    write_mnist_dir(tmp_path, gz=False)
    images_path = tmp_path / "train-images-idx3-ubyte"
    labels_path = tmp_path / "train-labels-idx1-ubyte"
    images_bytes, labels_bytes = images_path.read_bytes(), labels_path.read_bytes()
    images_path.write_bytes(labels_bytes)
    labels_path.write_bytes(images_bytes)
    with pytest.raises(DataFormatError, match="swapped"):
        load_mnist(tmp_path)


def test_missing_files_in_explicit_dir(tmp_path, no_network):
    with pytest.raises(DataNotFoundError) as error:
        load_mnist(tmp_path / "empty")
    assert isinstance(error.value, FileNotFoundError)
    message = str(error.value)
    for name in FILE_NAMES:
        assert name in message
    assert str(tmp_path / "empty") in message
    assert "FASTMLP_DATA" in message and "--data DIR" in message and "data_dir" in message


def test_partly_missing_files_are_named(tmp_path, no_network):
    write_mnist_dir(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataNotFoundError, match="missing: t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_a_directory_named_like_a_data_file_is_called_a_directory(tmp_path, no_network):
    write_mnist_dir(tmp_path)
    os.remove(tmp_path / "train-images-idx3-ubyte.gz")
    os.mkdir(tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(DataNotFoundError, match=r"missing: train-images-idx3-ubyte\. "
                                                r"\(train-images-idx3-ubyte\.gz is a directory, not a file\.\)"):
        load_mnist(tmp_path)


def test_a_twice_gzipped_file_is_named_so_by_load_mnist(tmp_path, no_network):
    write_mnist_dir(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(DataFormatError, match="train-labels-idx1-ubyte.gz: wrong magic number.*gzip-compressed twice"):
        load_mnist(tmp_path)


def test_a_full_csv_set_is_read_beside_a_stray_idx_file(tmp_path, no_network):
    images, labels = known_images(4).reshape(4, 784), known_labels(4)
    (tmp_path / "mnist_train.csv").write_text(csv_text(images, labels))
    (tmp_path / "mnist_test.csv").write_text(csv_text(images[:2], labels[:2]))
    write_mnist_dir(tmp_path / "idx")
    os.replace(tmp_path / "idx" / "t10k-labels-idx1-ubyte.gz", tmp_path / "t10k-labels-idx1-ubyte.gz")
    train_images, train_labels, test_images, test_labels = load_mnist(tmp_path)
    np.testing.assert_array_equal(train_images, images)
    np.testing.assert_array_equal(test_labels, labels[:2])


def test_the_test_set_alone_comes_from_where_a_full_load_takes_it(tmp_path, no_network):
    # both CSV files and the two t10k IDX files: train (load_dataset) scored the CSV test set,
    # evaluate (load_test_set) the IDX one
    images, labels = known_images(4).reshape(4, 784), known_labels(4)
    (tmp_path / "mnist_train.csv").write_text(csv_text(images, labels))
    (tmp_path / "mnist_test.csv").write_text(csv_text(images[:2], labels[:2]))
    expected = write_mnist_dir(tmp_path / "idx")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        os.replace(tmp_path / "idx" / name, tmp_path / name)
    *_, test_images, test_labels = load_mnist(tmp_path)
    alone_images, alone_labels = data.load_test_set("mnist", tmp_path)
    np.testing.assert_array_equal(alone_images, test_images)
    np.testing.assert_array_equal(alone_labels, test_labels)
    np.testing.assert_array_equal(alone_labels, labels[:2])
    (tmp_path / "mnist_train.csv").unlink()  # no full CSV set: the complete t10k pair
    np.testing.assert_array_equal(data.load_test_set("mnist", tmp_path)[1], expected[data.TEST_LABELS])


def test_missing_files_in_environment_dir(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataNotFoundError) as error:
        load_mnist()
    message = str(error.value)
    assert "FASTMLP_DATA environment variable" in message and str(tmp_path / "nope") in message


def test_data_dir_that_is_a_file(tmp_path, no_network):
    path = write(tmp_path / "not-a-dir", b"")
    with pytest.raises(DataNotFoundError, match="not a directory"):
        load_mnist(path)


def test_default_data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "fastmlp" / "mnist"
    assert default_data_dir("fashion-mnist") == tmp_path / "xdg" / "fastmlp" / "fashion-mnist"
    assert default_data_dir("kmnist") == tmp_path / "xdg" / "fastmlp" / "kmnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "fastmlp" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_dir() == tmp_path / "home" / ".cache" / "fastmlp" / "mnist"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert default_data_dir() == tmp_path / "local" / "fastmlp" / "mnist"
    assert default_data_dir("kmnist") == tmp_path / "local" / "fastmlp" / "kmnist"


# --------------------------------------------------------------------------------------
# Named datasets


def test_each_named_dataset_has_a_registry_of_four_checksummed_files():
    assert set(DATASETS) == {"mnist", "fashion-mnist", "kmnist"}
    all_sums = []
    for name, dataset in DATASETS.items():
        assert dataset.name == name
        assert set(dataset.registry) == {file_name + ".gz" for file_name in FILE_NAMES}
        for known_hash in dataset.registry.values():
            assert re.fullmatch(r"md5:[0-9a-f]{32}", known_hash), (name, known_hash)
        all_sums += dataset.registry.values()
        assert dataset.mirrors and all(re.fullmatch(r"https?://[^ ]+/", url) for url in dataset.mirrors)
        assert len(dataset.class_names) == 10 and len(set(dataset.class_names)) == 10
        assert CLASS_NAMES[name] == dataset.class_names
    assert len(set(all_sums)) == 12  # no checksum copied from one dataset to another
    assert DATASETS["mnist"].registry["train-images-idx3-ubyte.gz"] == "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert CLASS_NAMES["fashion-mnist"][9] == "Ankle boot" and CLASS_NAMES["kmnist"][0] == "o"


@pytest.mark.parametrize("call", [lambda: load_dataset("cifar10"), lambda: load_dataset(None),
                                  lambda: default_data_dir("Fashion-MNIST")])
def test_unknown_dataset_name_lists_the_names(call, no_network):
    with pytest.raises(ValueError) as error:
        call()
    message = str(error.value)
    assert "unknown dataset" in message and "mnist, fashion-mnist, kmnist" in message


@pytest.mark.parametrize("options, words", [({"download": "yes"}, "download must be True or False; got 'yes'"),
                                             ({"progress": 1}, "progress must be None")])
def test_load_dataset_checks_its_switches(tmp_path, no_network, options, words):
    write_mnist_dir(tmp_path)
    with pytest.raises(TypeError, match=words):
        load_dataset("mnist", tmp_path, **options)


def test_load_dataset_from_data_dir_names_the_dataset_when_missing(tmp_path, no_network):
    arrays = write_mnist_dir(tmp_path / "kmnist-copy", n_train=6)
    assert_matches(load_dataset("kmnist", tmp_path / "kmnist-copy"), arrays)
    with pytest.raises(DataNotFoundError) as error:
        load_dataset("fashion-mnist", tmp_path / "empty")
    message = str(error.value)
    assert message.startswith("Fashion-MNIST data not found")
    assert str(tmp_path / "empty") in message and "load_dataset('fashion-mnist', data_dir=...)" in message
    assert "--data DIR" in message and "FASTMLP_DATA" not in message  # it points at MNIST only


def test_fastmlp_data_points_at_mnist_only(cache_dir, tmp_path, monkeypatch, no_network):
    mnist = write_mnist_dir(tmp_path / "env", n_train=4)
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "env"))
    fashion = write_mnist_dir(cache_dir.parent / "fashion-mnist", n_train=7)
    assert_matches(load_dataset("mnist"), mnist)
    assert_matches(load_dataset("fashion-mnist"), fashion)


# --------------------------------------------------------------------------------------
# Download, through pooch, from an HTTP server on 127.0.0.1


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "fastmlp" / "mnist"


class Truncated(bytes):
    """A response that announces its full length but closes the connection halfway."""


class Trickle(bytes):
    """A response that announces its full length, then sends a byte every 0.2 s."""


class MirrorServer:
    """Serves two mirrors, /one/ and /two/, on 127.0.0.1. Each path answers what ``responses``
    says (bytes, ``Truncated`` bytes, or an HTTP error status) and 404 otherwise; ``requests``
    records every path asked for. ``use_for(name)`` points dataset ``name`` at the mirrors,
    with the MD5 sums of the files served."""

    def __init__(self):
        self.arrays = {
            data.TRAIN_IMAGES: known_images(5),
            data.TRAIN_LABELS: known_labels(5),
            data.TEST_IMAGES: known_images(3)[::-1],
            data.TEST_LABELS: known_labels(3)[::-1],
        }
        self.files = {name + ".gz": gzip.compress(idx_bytes(array)) for name, array in self.arrays.items()}
        self.responses = {}
        self.requests = []
        self.send_length = True  # False: no Content-Length header, as some servers send
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                response = server.responses.get(self.path, 404)
                if isinstance(response, int):
                    self.send_error(response)
                    return
                self.send_response(200)
                if server.send_length:
                    self.send_header("Content-Length", str(len(response)))
                else:
                    self.send_header("Connection", "close")  # the end of the body is the end of the connection
                self.end_headers()
                if isinstance(response, Trickle):
                    try:
                        for i in range(len(response)):
                            self.wfile.write(response[i : i + 1])
                            self.wfile.flush()
                            time.sleep(0.2)
                    except OSError:  # the client gave up
                        pass
                    return
                self.wfile.write(response[: len(response) // 2] if isinstance(response, Truncated) else response)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.mirrors = (base + "/one/", base + "/two/")

    def serve(self, mirror_index, response=None):
        """Make one mirror serve every file correctly, or answer ``response`` for all."""
        prefix = ("/one/", "/two/")[mirror_index]
        for name, content in self.files.items():
            self.responses[prefix + name] = content if response is None else response

    def use_for(self, monkeypatch, name="mnist", mirrors=None):
        registry = {file_name: "md5:" + hashlib.md5(content).hexdigest() for file_name, content in self.files.items()}
        dataset = dataclasses.replace(DATASETS[name], mirrors=mirrors or self.mirrors, registry=registry)
        monkeypatch.setitem(DATASETS, name, dataset)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a proxy set in the environment must not see these
    mirror_server = MirrorServer()
    mirror_server.use_for(monkeypatch)
    yield mirror_server
    mirror_server.close()


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens: the connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone/"


def test_download_into_cache(cache_dir, server):
    server.serve(0)
    loaded = load_mnist(progress=False)
    assert_matches(loaded, server.arrays)
    assert sorted(os.listdir(cache_dir)) == sorted(name + ".gz" for name in FILE_NAMES)
    assert len(server.requests) == 4 and all(path.startswith("/one/") for path in server.requests)
    assert (cache_dir / "train-images-idx3-ubyte.gz").read_bytes() == server.files["train-images-idx3-ubyte.gz"]

    # Downloaded once: the next call reads the cached files.
    assert_matches(load_mnist(progress=False), server.arrays)
    assert len(server.requests) == 4


@pytest.mark.parametrize("name", ["fashion-mnist", "kmnist"])
def test_named_dataset_downloads_into_its_own_subdirectory(cache_dir, server, monkeypatch, name):
    server.use_for(monkeypatch, name)
    server.serve(1)
    assert_matches(load_dataset(name, progress=False), server.arrays)
    assert sorted(os.listdir(cache_dir.parent / name)) == sorted(name + ".gz" for name in FILE_NAMES)
    assert not cache_dir.exists()  # MNIST's directory untouched
    assert_matches(load_dataset(name, download=False), server.arrays)
    assert len(server.requests) == 8  # 404 from /one/, then /two/, for each file; nothing on the second load


def test_a_damaged_file_in_the_cache_says_that_deleting_it_downloads_it_again(cache_dir, server):
    server.serve(0)
    load_mnist(progress=False)
    path = cache_dir / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])  # cut short, as by a full disk
    with pytest.raises(DataFormatError, match="corrupt or truncated") as error:
        load_mnist(progress=False)
    assert "download cache" in str(error.value) and "delete it, and the next load downloads it again" in str(error.value)
    path.unlink()
    assert_matches(load_mnist(progress=False), server.arrays)  # as it says


def test_download_only_missing_files(cache_dir, server):
    server.serve(0)
    cache_dir.mkdir(parents=True)
    (cache_dir / "train-images-idx3-ubyte.gz").write_bytes(server.files["train-images-idx3-ubyte.gz"])
    load_mnist(progress=False)
    assert len(server.requests) == 3 and not any("train-images" in path for path in server.requests)


def test_bad_checksum_moves_on_to_next_mirror(cache_dir, server):
    server.serve(0, gzip.compress(idx_bytes(known_labels(9))))  # a valid file, but not the one registered
    server.serve(1)
    assert_matches(load_mnist(progress=False), server.arrays)
    assert len(server.requests) == 8
    assert sorted(os.listdir(cache_dir)) == sorted(name + ".gz" for name in FILE_NAMES)  # no temporary files


def test_corrupted_download_is_rejected_and_not_kept(cache_dir, server, monkeypatch):
    server.use_for(monkeypatch, mirrors=server.mirrors[:1])
    corrupted = bytearray(server.files["train-images-idx3-ubyte.gz"])
    corrupted[len(corrupted) // 2] ^= 0xFF
    server.serve(0)
    server.responses["/one/train-images-idx3-ubyte.gz"] = bytes(corrupted)
    with pytest.raises(DataNotFoundError) as error:
        load_mnist(progress=False)
    message = str(error.value)
    expected = DATASETS["mnist"].registry["train-images-idx3-ubyte.gz"]
    assert "checksum mismatch" in message and expected in message
    assert hashlib.md5(corrupted).hexdigest() in message
    assert "/one/train-images-idx3-ubyte.gz" in message
    assert not cache_dir.exists() and not cache_dir.parent.parent.exists()  # (the folders it made are gone)
    # Nothing was kept that a later load could take for the real file.
    with pytest.raises(DataNotFoundError, match="download=False"):
        load_mnist(download=False)


def test_all_mirrors_fail(cache_dir, server, monkeypatch):
    server.use_for(monkeypatch, mirrors=(closed_port_url(), server.mirrors[1]))
    server.serve(1, b"<html>Access denied</html>")
    with pytest.raises(DataNotFoundError) as error:
        load_mnist(progress=False)
    message = str(error.value)
    for name in FILE_NAMES:
        assert name in message
    assert str(cache_dir) in message
    assert "Connection refused" in message and "checksum mismatch" in message
    assert "Max retries" not in message  # requests' wrappers peeled off: the URL is named once
    assert "no mirror could serve train-images-idx3-ubyte.gz" in message
    assert "FASTMLP_DATA" in message and "--data DIR" in message
    assert "fetched by hand from http://127.0.0.1" in message
    # Stops after the first file no mirror serves; leaves nothing behind.
    assert server.requests == ["/two/train-images-idx3-ubyte.gz"]
    assert not cache_dir.exists() and not cache_dir.parent.parent.exists()  # (the folders it made are gone)


def test_http_errors_and_cut_connections_leave_nothing(cache_dir, server):
    server.serve(0, 503)
    server.serve(1, Truncated(server.files["train-images-idx3-ubyte.gz"]))
    with pytest.raises(DataNotFoundError) as error:
        load_mnist(progress=False)
    message = str(error.value)
    assert "503" in message and "/one/train-images-idx3-ubyte.gz" in message
    assert "/two/train-images-idx3-ubyte.gz: Connection broken" in message
    assert len(server.requests) == 2
    assert not cache_dir.exists() and not cache_dir.parent.parent.exists()  # (the folders it made are gone)


def test_a_server_that_sends_a_trickle_fails_at_the_deadline(cache_dir, server, monkeypatch):
    # one byte every few seconds never trips the read timeout: the download hung for ever
    server.use_for(monkeypatch, mirrors=server.mirrors[:1])
    server.serve(0)
    server.responses["/one/train-images-idx3-ubyte.gz"] = Trickle(server.files["train-images-idx3-ubyte.gz"])
    monkeypatch.setattr(data, "DOWNLOAD_DEADLINE_SECONDS", 1)
    # (the message is the deadline's alone: a download the deadline did not cut would have ended,
    # long after, with the file whole and no error)
    with pytest.raises(DataNotFoundError, match="train-images-idx3-ubyte.gz: the download took more than 1 s"):
        load_mnist(progress=False)
    assert not cache_dir.exists() and not cache_dir.parent.parent.exists()  # (the folders it made are gone)


def test_a_failed_download_removes_only_the_folders_it_made_and_left_empty(cache_dir, server):
    # a first load that failed left an empty $XDG_CACHE_HOME/fastmlp/mnist behind (audit 30)
    server.serve(0)
    server.responses["/one/train-labels-idx1-ubyte.gz"] = 503  # the second file fails on both mirrors
    with pytest.raises(DataNotFoundError, match="no mirror could serve train-labels-idx1-ubyte.gz"):
        load_mnist(progress=False)
    assert os.listdir(cache_dir) == ["train-images-idx3-ubyte.gz"]  # what came before the failure stays
    server.serve(0, 503)
    for name in os.listdir(cache_dir):
        os.remove(cache_dir / name)
    with pytest.raises(DataNotFoundError):
        load_mnist(progress=False)
    assert cache_dir.is_dir()  # a folder it did not make stays, empty
    os.rmdir(cache_dir)
    with pytest.raises(DataNotFoundError):
        load_mnist(progress=False)
    assert not cache_dir.exists() and cache_dir.parent.is_dir()  # (the cache above it was there)


def test_other_os_errors_are_worded_as_they_are():
    assert data._network_failure(PermissionError(13, "Permission denied")) == "[Errno 13] Permission denied"


def test_interrupted_download_leaves_nothing(cache_dir, server, monkeypatch):
    server.serve(0)

    def interrupted(self, url, output_file, pooch_instance, check_only=False):
        output_file.write(b"partial bytes before Ctrl-C")
        raise KeyboardInterrupt

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_mnist(progress=False)
    assert not cache_dir.exists() and not cache_dir.parent.parent.exists()  # (the folders it made are gone)


def test_downloaded_files_get_the_umasks_permissions_and_a_killed_downloads_leftover_goes(cache_dir, server):
    # pooch's temporary files are 0600 and kept that mode when renamed: a cache filled by root (a
    # container's build) or shared on a cluster was unreadable to everyone else; and a download
    # killed (SIGKILL, the OOM killer) left its temporary file in the cache for good
    server.serve(0)
    cache_dir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = cache_dir / f".t10k-images-idx3-ubyte.gz.0badc0de.{dead.pid}@{socket.gethostname()}.tmp"
    stale.write_bytes(b"half a download")
    old = os.umask(0o022)
    try:
        load_mnist(progress=False)
    finally:
        os.umask(old)
    assert {name: stat.S_IMODE((cache_dir / name).stat().st_mode) for name in os.listdir(cache_dir)} == {
        name + ".gz": 0o644 for name in FILE_NAMES}


def test_a_download_beside_another_leaves_no_killed_downloads_leftover(cache_dir, server):
    # one of two first loads killed while the other downloaded the same file: the survivor had
    # written that file already, so no later download of it came to remove the leftover (audit 34)
    server.serve(0)
    cache_dir.mkdir(parents=True)
    (cache_dir / "train-images-idx3-ubyte.gz").write_bytes(server.files["train-images-idx3-ubyte.gz"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = cache_dir / f".train-images-idx3-ubyte.gz.0badc0de.{dead.pid}@{socket.gethostname()}.tmp"
    stale.write_bytes(b"half a download")
    alive = cache_dir / f".train-images-idx3-ubyte.gz.0badc0de.{os.getppid()}@{socket.gethostname()}.tmp"
    alive.write_bytes(b"another process's download, going on")
    load_mnist(progress=False)
    assert sorted(os.listdir(cache_dir)) == sorted([alive.name] + [name + ".gz" for name in FILE_NAMES])
    assert "/one/train-images-idx3-ubyte.gz" not in server.requests


def test_a_download_whose_folder_another_one_removed_makes_it_again(cache_dir, server, monkeypatch):
    # two first loads: the one interrupted removes the (empty) folders it made, after the other
    # found them made and before it opened its file there: that one then failed, blaming the
    # mirrors ("no mirror could serve ...: directory ... does not exist"; audit 34)
    server.serve(0)
    retrieve = data._retrieve

    def after_the_other_removed_it(url, known_hash, directory, file_name, progress):
        if os.path.isdir(directory) and not os.listdir(directory):
            os.rmdir(directory)
        return retrieve(url, known_hash, directory, file_name, progress)

    monkeypatch.setattr(data, "_retrieve", after_the_other_removed_it)
    assert_matches(load_mnist(progress=False), server.arrays)


def test_a_cache_it_cannot_write_to_is_said_so_and_no_mirror_is_asked(cache_dir, server, monkeypatch):
    # it said "no mirror could serve ... (<mirror>: [Errno 30] Read-only file system: '<cache>/tmpz16e57k8'; ...)"
    from fastmlp import _atomic

    server.serve(0)
    cache_dir.mkdir(parents=True)
    monkeypatch.setattr(_atomic, "target_problem", lambda path: (30, f"directory {str(cache_dir)!r} is not writable"))
    with pytest.raises(DataNotFoundError) as error:
        load_mnist(progress=False)
    assert f"Download failed: cannot write into {cache_dir} (directory {str(cache_dir)!r} is not writable)" in str(error.value)
    assert server.requests == [] and "no mirror" not in str(error.value)


def test_no_download_when_disabled(cache_dir, server):
    server.serve(0)
    with pytest.raises(DataNotFoundError, match="download=False"):
        load_mnist(download=False)
    assert server.requests == []


def test_no_download_into_explicit_dirs(tmp_path, monkeypatch, server):
    server.serve(0)
    with pytest.raises(DataNotFoundError):
        load_mnist(tmp_path / "mine")
    with pytest.raises(DataNotFoundError):
        load_dataset("kmnist", tmp_path / "mine")
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "env"))
    with pytest.raises(DataNotFoundError):
        load_mnist()
    assert server.requests == []


def test_download_progress_is_a_tqdm_bar_per_file(cache_dir, server, capsys):
    server.serve(0)
    load_mnist(progress=True)
    err = capsys.readouterr().err
    for name in FILE_NAMES:
        assert f"\r{name}.gz: 100%|" in err, err
    assert err.count("\n") == 4 and err.endswith("B/s]\n")  # one finished bar left per file

    # Without a Content-Length, each bar counts the bytes received (it ended at "0.00B")
    for name in os.listdir(cache_dir):
        os.remove(cache_dir / name)
    server.send_length = False
    load_mnist(progress=True)
    err = capsys.readouterr().err
    lines = err.rstrip("\n").split("\n")  # (splitlines would split at the bars' carriage returns)
    assert len(lines) == 4, err  # one finished bar per file
    for name, line in zip(FILE_NAMES, lines):
        size = len(server.files[name + ".gz"])
        assert re.search(rf"\r{name}.gz: {size}(\.0)?B \[[^\r]*$", line), (size, line)  # the bar ends at the file's size
    server.send_length = True

    # Silent when asked, and by default when stderr is not a terminal.
    for progress in (False, None):
        for name in os.listdir(cache_dir):
            os.remove(cache_dir / name)
        load_mnist(progress=progress)
        assert capsys.readouterr().err == ""
    assert len(server.requests) == 16


# --------------------------------------------------------------------------------------
# Property tests: corrupt input only ever raises DataFormatError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
IDX_READERS = [read_idx, read_idx_images, read_idx_labels]


def check_idx_readers(path):
    for reader in IDX_READERS:
        try:
            array = reader(path)
        except DataFormatError as error:
            assert str(path) in str(error)
        else:  # accepted: then an array of what the reader promises
            assert isinstance(array, np.ndarray) and array.ndim >= 1
            if reader is read_idx_images:
                assert array.ndim == 2 and array.dtype == np.uint8
            elif reader is read_idx_labels:
                assert array.ndim == 1 and array.dtype == np.int64


@FUZZ
@given(content=st.binary(max_size=600), gz=st.booleans())
def test_random_bytes_idx(tmp_path, content, gz):
    check_idx_readers(write(tmp_path / "fuzz", content, gz=gz))


@FUZZ
@given(
    content=st.binary(max_size=64),
    prefix=st.sampled_from([b"\x00\x00\x08\x01", b"\x00\x00\x08\x03", b"\x00\x00\x0c\x02", b"\x1f\x8b"]),
)
def test_random_bytes_after_plausible_header(tmp_path, content, prefix):
    check_idx_readers(write(tmp_path / "fuzz", prefix + content))


@FUZZ
@given(labels=st.binary(max_size=64), gz=st.booleans())
def test_well_formed_label_files_of_random_bytes(tmp_path, labels, gz):
    # the label reader's accepted branch: the random bytes above (practically) never form one
    path = write(tmp_path / "labels", b"\x00\x00\x08\x01" + len(labels).to_bytes(4, "big") + labels, gz=gz)
    check_idx_readers(path)
    np.testing.assert_array_equal(read_idx_labels(path), np.frombuffer(labels, np.uint8))


@FUZZ
@given(data_strategy=st.data(), gz=st.booleans())
def test_truncated_idx(tmp_path, data_strategy, gz):
    valid = idx_bytes(known_images(2, rows=3, cols=3))
    valid = gzip.compress(valid) if gz else valid
    cut = data_strategy.draw(st.integers(0, len(valid) - 1))
    path = write(tmp_path / "cut", valid[:cut])
    for reader in IDX_READERS:
        with pytest.raises(DataFormatError, match="cut"):
            reader(path)


@FUZZ
@given(data_strategy=st.data())
def test_flipped_bytes_in_gzip_idx(tmp_path, data_strategy):
    valid = bytearray(gzip.compress(idx_bytes(known_images(2, rows=3, cols=3))))
    position = data_strategy.draw(st.integers(0, len(valid) - 1))
    valid[position] ^= data_strategy.draw(st.integers(1, 255))
    check_idx_readers(write(tmp_path / "flipped", bytes(valid)))


def check_csv(path, n_features):
    try:
        images, labels = read_csv(path, n_features=n_features)
    except DataFormatError as error:
        assert str(path) in str(error)
        return
    assert images.dtype == np.uint8 and images.shape == (len(labels), n_features)
    assert labels.dtype == np.int64 and (labels >= 0).all()
    # The fast reader and the strict one must agree on everything the fast one accepts.
    strict_images, strict_labels = data._read_csv_strict(path, n_features)
    np.testing.assert_array_equal(images, strict_images)
    np.testing.assert_array_equal(labels, strict_labels)


@FUZZ
@given(content=st.binary(max_size=400))
def test_random_bytes_csv(tmp_path, content):
    check_csv(write(tmp_path / "fuzz.csv", content), n_features=3)


@FUZZ
@given(text=st.text(alphabet="0123456789,,,\n\n -+.eax\t\r", max_size=80))
def test_random_text_csv(tmp_path, text):
    path = tmp_path / "fuzz.csv"
    path.write_bytes(text.encode())
    check_csv(path, n_features=2)


@FUZZ
@given(data_strategy=st.data(), header=st.booleans())
def test_truncated_csv(tmp_path, data_strategy, header):
    images, labels = small_csv_rows()
    valid = csv_text(images, labels, header=header).encode()
    cut = data_strategy.draw(st.integers(0, len(valid)))
    check_csv(write(tmp_path / "cut.csv", valid[:cut]), n_features=4)


# --------------------------------------------------------------------------------------
# atomic_write


def test_atomic_write_creates_and_replaces(tmp_path):
    target = tmp_path / "result.json"
    with atomic_write(target, "w") as file:
        file.write('{"a": "ü"}')
        assert not target.exists()  # invisible until the block succeeds
    assert target.read_text(encoding="utf-8") == '{"a": "ü"}'
    with atomic_write(str(target)) as file:
        file.write(b"new")
    assert target.read_bytes() == b"new"
    assert leftovers(tmp_path) == []


def test_atomic_write_syncs_the_whole_file_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    # Without the first sync a crash just after the rename can leave an empty file (ext4's
    # delayed allocation); without the second, the old one
    import fastmlp._atomic as atomic

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        real_fsync(descriptor)
        path = os.readlink(f"/proc/self/fd/{descriptor}") if os.path.exists("/proc/self/fd") else "?"
        events.append(("fsync", os.path.basename(path), os.fstat(descriptor).st_size))

    def replace(source, target):
        events.append(("replace", os.path.basename(target)))
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    target = tmp_path / "model.npz"
    with atomic_write(target) as file:
        file.write(b"x" * 100_000)
    assert [event[0] for event in events] == ["fsync", "replace", "fsync"]
    assert events[0][2] == 100_000 and events[0][1].endswith(".tmp")  # the whole temporary file
    if os.path.exists("/proc/self/fd"):
        assert events[2][1] == tmp_path.name  # then the directory that holds the new name
    assert target.read_bytes() == b"x" * 100_000


@pytest.mark.parametrize("exception", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_write_failure_keeps_old_file(tmp_path, exception):
    target = write(tmp_path / "plot.png", b"old")
    with pytest.raises(type(exception)):
        with atomic_write(target) as file:
            file.write(b"half of the new")
            raise exception
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["plot.png"]


@pytest.mark.parametrize("where, error, words", [
    ("folder", IsADirectoryError, "is a directory"),
    ("missing/x.npz", FileNotFoundError, "does not exist"),
    ("file/x.npz", NotADirectoryError, "is a file, not a directory"),
])
def test_atomic_write_errors_name_the_target_not_the_temporary_file(tmp_path, where, error, words):
    (tmp_path / "folder").mkdir()
    write(tmp_path / "file", b"")
    target = tmp_path / where
    with pytest.raises(error) as raised:
        with atomic_write(target) as file:
            file.write(b"never written")
    message = str(raised.value)
    assert str(target) in message and words in message and ".tmp" not in message
    assert sorted(os.listdir(tmp_path)) == ["file", "folder"] and os.listdir(tmp_path / "folder") == []


def test_a_directory_nothing_can_be_written_to_is_said_before_the_work(tmp_path, monkeypatch):
    # root passes os.access for /proc and /sys: train --save /proc/m.npz trained to the end, then
    # failed naming the temporary file; the check now tries an unnamed file there
    import fastmlp._atomic as atomic

    monkeypatch.setattr(atomic.os, "access", lambda *args, **kwargs: True)  # as root sees any directory
    (tmp_path / "ok").mkdir()
    assert atomic.target_problem(tmp_path / "ok" / "m.npz") is None and os.listdir(tmp_path / "ok") == []
    if os.path.isdir("/proc/self"):
        _, message = atomic.target_problem("/proc/m.npz")
        # (its error is ENOENT: "not writable (No such file or directory)" misled; audit 51)
        assert "directory '/proc' is not writable (creating a file there failed: " in message


def test_atomic_write_removes_what_a_killed_writer_left(tmp_path):
    # a process killed mid-write (SIGKILL, MPI_Abort of the rank writing a checkpoint) left its
    # hidden temporary file next to the target for ever
    import signal
    import socket
    import subprocess
    import sys

    target = tmp_path / "run.npz"
    code = ("import os, sys; from fastmlp._atomic import atomic_write\n"
            "with atomic_write(sys.argv[1]) as f:\n    f.write(b'half'); f.flush(); print('writing', flush=True); "
            "os.kill(os.getpid(), 9)")
    # (cwd: not the source tree, whose fastmlp/ has no kernels/ beside it: the installed package is the one to import)
    writer = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True,
                              cwd=tmp_path)
    assert writer.stdout.readline() == "writing\n"
    assert writer.wait(timeout=60) == -signal.SIGKILL
    stale = leftovers(tmp_path)
    assert len(stale) == 1 and not target.exists()
    from fastmlp._atomic import _pid_namespace

    if _pid_namespace():  # the writer's name says its PID namespace, in which alone its pid means a process
        assert f".{writer.pid}-{_pid_namespace()}@" in stale[0], stale
    host = socket.gethostname()
    kept = [f".run.npz.0badc0de.{os.getpid()}@{host}.tmp",  # a live writer (this process)
            f".run.npz.0badc0de.{writer.pid}@another-host.tmp",  # another host's, on a shared filesystem
            ".run.npz.0badc0de.tmp",  # a name it does not know
            f".other.npz.0badc0de.{writer.pid}-1@{host}.tmp",  # another target's
            # another PID namespace's (a container sharing the host's name): a live writer's
            # temporary was taken for a dead one's and removed, and its save failed (audit 24)
            f".run.npz.0badc0de.{writer.pid}-1@{host}.tmp"]
    for name in kept:
        (tmp_path / name).write_bytes(b"")
    with atomic_write(target) as file:
        file.write(b"whole")
    assert target.read_bytes() == b"whole"
    assert sorted(leftovers(tmp_path)) == sorted(kept)


def test_atomic_write_normal_permissions(tmp_path):
    reference = write(tmp_path / "reference", b"")
    with atomic_write(tmp_path / "atomic") as file:
        file.write(b"x")
    assert stat.S_IMODE(os.stat(tmp_path / "atomic").st_mode) == stat.S_IMODE(reference.stat().st_mode)


def test_atomic_write_keeps_the_permissions_of_the_file_it_replaces(tmp_path):
    # a model kept private (chmod 600) became readable by all at its next save (audit 24)
    target = write(tmp_path / "m.npz", b"old")
    os.chmod(target, 0o600)
    with atomic_write(target) as file:
        file.write(b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(os.stat(target).st_mode) == 0o600


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_atomic_write_refuses_a_target_that_is_not_a_regular_file(tmp_path):
    # the write renamed a new file onto whatever was there: as root, MLP.save("/dev/null") made
    # /dev/null a model file; a named pipe stands in for a device here (audit 24)
    from fastmlp._atomic import target_problem

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    (tmp_path / "link.npz").symlink_to(pipe)
    for target in (pipe, tmp_path / "link.npz"):
        assert "is a named pipe, not a regular file" in target_problem(target)[1]
        with pytest.raises(OSError, match="is a named pipe, not a regular file"):
            with atomic_write(target) as file:
                file.write(b"model")
        assert stat.S_ISFIFO(os.stat(pipe).st_mode)
    if os.path.exists("/dev/null"):
        assert "is a character device" in target_problem("/dev/null")[1]


def test_atomic_write_refuses_a_file_write_protected_from_this_user(tmp_path, monkeypatch):
    # the rename needs only the directory: a user's chmod 444 file was replaced without a word, where
    # `echo x > file` is refused (audit 29); root may write any file, so os.access says it here
    from fastmlp import _atomic

    target = tmp_path / "model.npz"
    target.write_bytes(b"precious")
    target.chmod(0o444)
    real_access = os.access
    monkeypatch.setattr(_atomic.os, "access",
                        lambda path, mode: os.fspath(path) != str(target) and real_access(path, mode))
    assert _atomic.target_problem(target)[1] == \
        f"{str(target)!r} is write-protected; make it writable (chmod u+w) or give another name"
    with pytest.raises(OSError, match="is write-protected"):
        with atomic_write(target) as file:
            file.write(b"model")
    assert target.read_bytes() == b"precious"


def test_atomic_write_saves_a_name_as_long_as_the_filesystem_allows(tmp_path):
    # the temporary's name is the target's and 23-50 bytes more: a 240-byte name passed every
    # check, the run trained, and its save failed "File name too long" (audit 24)
    from fastmlp import _atomic

    try:
        limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    if limit != _atomic.NAME_MAX:
        pytest.skip(f"this filesystem's names hold {limit} bytes")
    long_name = "m" * (limit - 4) + ".npz"
    target = tmp_path / long_name
    with atomic_write(target) as file:
        file.write(b"whole")
    assert target.read_bytes() == b"whole" and os.listdir(tmp_path) == [long_name]


def test_atomic_write_names_the_target_when_a_write_fails(tmp_path, monkeypatch):
    # "No space left on device" named no file (the write's own error, not open's or rename's)
    import errno

    from fastmlp import _atomic

    target = write(tmp_path / "m.npz", b"old")

    def full(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_atomic.os, "fsync", full)
    with pytest.raises(OSError, match=r"cannot write '.*m\.npz': No space left on device") as raised:
        with atomic_write(target) as file:
            file.write(b"new")
    assert raised.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.parametrize("mode", ["a", "r", "rb", "ab"])
def test_atomic_write_rejects_non_write_modes(tmp_path, mode):
    with pytest.raises(ValueError, match="write mode"):
        with atomic_write(tmp_path / "x", mode):
            pass


def test_atomic_write_takes_a_bytes_path_as_open_does(tmp_path, rng, synth):
    # MLP.load(b"m.npz") worked while MLP.save(b"m.npz") failed inside the stale-temporary
    # cleanup (a bytes directory listing compared with a str prefix)
    import fastmlp

    X, y = synth.blobs(rng, 20, 3, 2)
    model = fastmlp.MLP([3, 2, 2], backend="numpy", seed=0)
    model.fit(X, y, epochs=1, batch_size=4)
    target = os.fsencode(tmp_path / "m.npz")
    model.save(target)
    model.save(target)  # over the first, with the cleanup's listing of the directory
    np.testing.assert_array_equal(fastmlp.MLP.load(target).params_, model.params_)
    with atomic_write(os.fsencode(tmp_path / "notes.txt"), "w") as file:
        file.write("bytes")
    assert (tmp_path / "notes.txt").read_text() == "bytes" and leftovers(tmp_path) == []
    with pytest.raises(ValueError, match=r"path '.*missing/m.npz': directory .* does not exist"):
        check_target(os.fsencode(tmp_path / "missing" / "m.npz"))  # named as text, not b'...'


def test_atomic_write_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    # latest.npz -> runs/run5.npz: renaming onto the link made it a regular file and left
    # runs/run5.npz with the old model
    (tmp_path / "runs").mkdir()
    target = write(tmp_path / "runs" / "run5.npz", b"old")
    link = tmp_path / "latest.npz"
    link.symlink_to(os.path.join("runs", "run5.npz"))
    with atomic_write(link) as file:
        file.write(b"new")
        # the temporary file is beside the target, so that the rename stays on its filesystem
        assert leftovers(tmp_path / "runs") != [] and leftovers(tmp_path) == []
    assert link.is_symlink() and os.readlink(link) == os.path.join("runs", "run5.npz")
    assert target.read_bytes() == b"new"
    assert leftovers(tmp_path / "runs") == []


def test_atomic_write_through_a_dangling_symlink_creates_its_target(tmp_path):
    (tmp_path / "runs").mkdir()
    link = tmp_path / "latest.npz"
    link.symlink_to(tmp_path / "runs" / "run6.npz")
    with atomic_write(link) as file:
        file.write(b"first")
    assert link.is_symlink() and (tmp_path / "runs" / "run6.npz").read_bytes() == b"first"

    # a target whose directory is missing is refused, naming the link and where it points
    (tmp_path / "gone.npz").symlink_to(tmp_path / "nowhere" / "run.npz")
    with pytest.raises(FileNotFoundError) as raised:
        with atomic_write(tmp_path / "gone.npz") as file:
            file.write(b"never written")
    message = str(raised.value)
    assert "gone.npz" in message and "nowhere" in message and "does not exist" in message
    assert (tmp_path / "gone.npz").is_symlink() and not (tmp_path / "nowhere").exists()


def test_atomic_write_refuses_a_symlink_to_a_directory_or_a_loop(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "to-folder").symlink_to(tmp_path / "folder")
    with pytest.raises(IsADirectoryError, match="to-folder' is a directory"):
        with atomic_write(tmp_path / "to-folder"):
            pass
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(OSError, match="loop of symbolic links"):
        with atomic_write(tmp_path / "a"):
            pass
    assert (tmp_path / "a").is_symlink() and (tmp_path / "b").is_symlink()
    assert os.listdir(tmp_path / "folder") == [] and leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------
# The real MNIST, when available


@pytest.mark.mnist
def test_real_mnist():
    directory = os.environ.get("FASTMLP_DATA")
    if not directory or not any(os.path.exists(os.path.join(directory, name + suffix))
                                for name in FILE_NAMES for suffix in ("", ".gz")):
        pytest.skip("MNIST not found: set FASTMLP_DATA to a directory with the four MNIST files "
                    "(e.g. /work/shared/data/mnist)")
    train_images, train_labels, test_images, test_labels = load_mnist(download=False)
    assert train_images.shape == (60000, 784) and test_images.shape == (10000, 784)
    assert train_images.dtype == np.uint8 and test_images.dtype == np.uint8
    assert train_labels.shape == (60000,) and test_labels.shape == (10000,)
    assert train_labels.dtype == np.int64
    assert train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_a_killed_writers_leftover_goes_on_windows_too(tmp_path, monkeypatch):
    # removed on POSIX only, with os.kill(pid, 0) (which would end the process on Windows): there
    # every killed download's and checkpoint's temporary stayed (audit 41). Windows is simulated:
    # os.name, and the Win32 question answered by a table
    from fastmlp import _atomic

    host = socket.gethostname()
    dead = tmp_path / f".m.npz.0badc0de.4000001@{host}.tmp"
    alive = tmp_path / f".m.npz.0badc0de.4000002@{host}.tmp"
    for leftover in (dead, alive):
        leftover.write_bytes(b"half a checkpoint")
    monkeypatch.setattr(_atomic, "_windows_process_exists", lambda pid: pid == 4000002)
    monkeypatch.setattr(_atomic, "_pid_namespace", lambda: "")
    monkeypatch.setattr(os, "name", "nt")
    try:
        _atomic._remove_stale_temporaries(str(tmp_path), "m.npz")
    finally:
        monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == [alive.name]


def test_a_leftover_named_with_a_pid_no_process_can_have_is_left_and_the_write_goes_on(tmp_path):
    # os.kill(2**70, 0) raised OverflowError, and every save into that folder with it (audit 44)
    from fastmlp import _atomic

    host = socket.gethostname()
    odd = tmp_path / f".m.npz.0badc0de.{2 ** 70}@{host}.tmp"
    odd.write_bytes(b"not ours")
    _atomic._remove_stale_temporaries(str(tmp_path), "m.npz")
    assert odd.exists() and _atomic._process_exists(2 ** 70)
