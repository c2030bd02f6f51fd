"""Writes SageMaker RecordIO-protobuf files from NumPy arrays, for the example programs'
reference checks (examples/pca/pca_test.py, examples/kmeans/kmeans_test.py).

Each record is an aialgs.data.Record with a float32 feature "values", dense (values and shape)
or sparse (values, keys and shape [dim]), and optionally a float32 scalar label "values"
(include/pipemode/protobuf/record.proto). The framing is dmlc-core's RecordIO, including the
split of payloads at 4-byte-aligned magic words (docs/formats/recordio.md). Standard library
and NumPy only: no protobuf package is needed.
"""

import struct

import numpy as np

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number, wire_type, payload=b""):
    return _varint((number << 3) | wire_type) + payload


def _length_delimited(number, payload):
    return _field(number, 2, _varint(len(payload)) + payload)


def _float32_tensor(values, keys=None, shape=None):
    body = b""
    if len(values):
        body += _length_delimited(1, np.asarray(values, dtype="<f4").tobytes())
    if keys is not None and len(keys):
        body += _length_delimited(2, b"".join(_varint(int(k)) for k in keys))
    if shape is not None:
        body += _length_delimited(3, b"".join(_varint(int(s)) for s in shape))
    return body


def _map_entry(name, tensor):
    value = _length_delimited(2, tensor)  # Value.float32_tensor
    return _length_delimited(1, name.encode()) + _length_delimited(2, value)


def encode_record(values, keys=None, dim=None, label=None):
    """One Record: dense when `keys` is None, else sparse with shape [dim]."""
    if keys is None:
        tensor = _float32_tensor(values, shape=[len(values)])
    else:
        tensor = _float32_tensor(values, keys=keys, shape=[dim])
    record = _length_delimited(1, _map_entry("values", tensor))
    if label is not None:
        record += _length_delimited(2, _map_entry("values", _float32_tensor([label], shape=[1])))
    return record


def frame(payload):
    """RecordIO framing of one payload, split at 4-byte-aligned magic words."""
    out = bytearray()
    parts = []
    start = 0
    i = 0
    while i + 4 <= len(payload):
        if payload[i:i + 4] == MAGIC_BYTES:
            parts.append(payload[start:i])
            start = i + 4
        i += 4
    parts.append(payload[start:])
    for n, part in enumerate(parts):
        if len(parts) == 1:
            flag = 0
        elif n == 0:
            flag = 1
        elif n == len(parts) - 1:
            flag = 3
        else:
            flag = 2
        out += MAGIC_BYTES + struct.pack("<I", (flag << 29) | len(part)) + part
        out += b"\0" * ((4 - len(part) % 4) % 4)
    return bytes(out)


def write_dense(path, x, labels=None):
    """Writes the rows of `x` (n x d) as dense float32 records."""
    with open(path, "wb") as f:
        for r in range(x.shape[0]):
            label = None if labels is None else float(labels[r])
            f.write(frame(encode_record(x[r], label=label)))


def write_sparse(path, x, labels=None):
    """Writes the rows of `x` (n x d, zeros left out) as sparse float32 records."""
    with open(path, "wb") as f:
        for r in range(x.shape[0]):
            keys = np.nonzero(x[r])[0]
            label = None if labels is None else float(labels[r])
            f.write(frame(encode_record(x[r, keys], keys=keys, dim=x.shape[1], label=label)))


def write_parts(directory, x, files, sparse=False, labels=None):
    """Splits the rows of `x` into `files` consecutive parts part-00000.rec, ...; returns the
    paths."""
    import os
    os.makedirs(directory, exist_ok=True)
    paths = []
    bounds = np.linspace(0, x.shape[0], files + 1).astype(int)
    for i in range(files):
        path = os.path.join(directory, "part-%05d.rec" % i)
        rows = slice(bounds[i], bounds[i + 1])
        part_labels = None if labels is None else labels[rows]
        (write_sparse if sparse else write_dense)(path, x[rows], part_labels)
        paths.append(path)
    return paths
