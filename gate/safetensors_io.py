"""Read safetensors files without trusting them and without torch.

:func:`read_header` parses only the JSON header (bounded in size) and checks
that every tensor's byte range is consistent with its dtype and shape and that
the ranges tile the data section exactly, so a truncated or forged file is an
:class:`~gate.errors.InputError`, not a crash later. :func:`scan_nonfinite`
streams the data section once in fixed-size chunks into one reused buffer and
counts NaN/Inf values per tensor: ``np.isfinite`` on F16/F32/F64, an exponent-
bits test on an unsigned view for BF16 and FP8 (no conversion, bounded memory).

Example::

    header = read_header(Path("adapter_model.safetensors"))
    for name, info in header.tensors.items():
        print(name, info.dtype, info.shape)
    bad = {k: n for k, n in scan_nonfinite(path).items() if n}
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from gate.errors import InputError
from gate.validation import LimitError, loads_json, open_regular

__all__ = [
    "DTYPE_SIZES",
    "MAX_HEADER_BYTES",
    "SafetensorsHeader",
    "TensorInfo",
    "open_nofollow",
    "read_header",
    "read_tensor",
    "scan_nonfinite",
]

#: Bytes per element of every dtype the safetensors format defines.
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}

#: Header size limit. The safetensors library allows 100 MB; an adapter's header is tens of KB
#: (a 70B all-module adapter has ~1,100 tensors, ~150 KB), and parsing 100 MB of JSON costs GBs.
MAX_HEADER_BYTES = 16 << 20
_CHUNK = 16 << 20  # a multiple of every item size

# IEEE types numpy knows are tested with np.isfinite (one vectorised pass); the others on an
# unsigned view: an element is NaN or Inf when ``bits & mask == mask`` (exponent all ones).
# F8_E4M3 (the "fn" variant) has no Inf; its NaN is S.1111.111.
_NUMPY_FLOATS: dict[str, type[np.floating[Any]]] = {"F16": np.float16, "F32": np.float32, "F64": np.float64}
_BIT_PATTERNS: dict[str, tuple[type[np.unsignedinteger[Any]], int]] = {
    "BF16": (np.uint16, 0x7F80),
    "F8_E5M2": (np.uint8, 0x7C),
    "F8_E4M3": (np.uint8, 0x7F),
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in the header."""

    dtype: str
    shape: tuple[int, ...]
    data_offsets: tuple[int, int]

    @property
    def nbytes(self) -> int:
        """Size of the tensor's data in bytes."""
        return self.data_offsets[1] - self.data_offsets[0]


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated safetensors header."""

    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    header_size: int
    file_size: int

    @property
    def data_start(self) -> int:
        """File offset of the data section (``8 + header_size``)."""
        return 8 + self.header_size


def open_nofollow(path: Path) -> BinaryIO:
    """Open ``path`` for reading: a regular file only, never a symlink, never blocking on a FIFO."""
    return open_regular(path, what="file")


def _fail(path: Path, what: str) -> InputError:
    return InputError(f"{path}: not a valid safetensors file: {what}")


def read_header(path: Path, *, max_header_bytes: int = MAX_HEADER_BYTES) -> SafetensorsHeader:
    """Parse and validate the header of a safetensors file (data is not read)."""
    with open_nofollow(path) as fh:
        file_size = os.fstat(fh.fileno()).st_size
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise _fail(path, f"{file_size} bytes is too short for the 8-byte header length")
        (n,) = struct.unpack("<Q", prefix)
        if n > max_header_bytes:
            raise _fail(path, f"header length {n} exceeds the {max_header_bytes}-byte limit")
        if 8 + n > file_size:
            raise _fail(
                path, f"header length {n} runs past the end of the file ({file_size} bytes): truncated?"
            )
        raw = fh.read(n)
    try:
        doc = loads_json(raw.decode("utf-8"), max_depth=None, strict_ints=False)
    except LimitError as e:
        raise _fail(path, f"the header is refused: {e}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise _fail(path, f"the header is not UTF-8 JSON ({e})") from None
    if not isinstance(doc, dict):
        raise _fail(path, "the header is not a JSON object")
    metadata = doc.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _fail(path, "__metadata__ must map strings to strings")
    tensors = {name: _tensor_info(path, name, entry) for name, entry in doc.items()}
    _check_tiling(path, tensors, file_size - 8 - n)
    return SafetensorsHeader(
        path=path, tensors=tensors, metadata=metadata, header_size=n, file_size=file_size
    )


def _tensor_info(path: Path, name: str, entry: Any) -> TensorInfo:
    if not isinstance(entry, dict):
        raise _fail(path, f"tensor {name!r}: entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise _fail(path, f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _fail(path, f"tensor {name!r}: shape must be a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise _fail(path, f"tensor {name!r}: data_offsets must be [begin, end] with 0 <= begin <= end")
    expected = math.prod(shape) * DTYPE_SIZES[dtype]
    if offsets[1] - offsets[0] != expected:
        raise _fail(
            path, f"tensor {name!r}: {offsets[1] - offsets[0]} bytes for {dtype}{shape} (needs {expected})"
        )
    return TensorInfo(dtype=dtype, shape=tuple(shape), data_offsets=(offsets[0], offsets[1]))


def _check_tiling(path: Path, tensors: dict[str, TensorInfo], data_size: int) -> None:
    """Tensors must cover the data section exactly once, with no gaps or overlaps."""
    end = 0
    for name, info in sorted(tensors.items(), key=lambda kv: kv[1].data_offsets):
        begin = info.data_offsets[0]
        if begin != end:
            what = "overlaps the previous tensor" if begin < end else f"leaves a gap of {begin - end} bytes"
            raise _fail(path, f"tensor {name!r} at offset {begin} {what}")
        end = info.data_offsets[1]
    if end > data_size:
        raise _fail(path, f"data section has {data_size} bytes but the tensors need {end}: truncated")
    if end < data_size:
        raise _fail(path, f"{data_size - end} trailing bytes after the last tensor")


def scan_nonfinite(
    path: Path, header: SafetensorsHeader | None = None, *, only: Collection[str] | None = None
) -> dict[str, int]:
    """Count NaN/Inf values per floating-point tensor, reading the data once in 16 MiB chunks.

    Integer tensors are skipped (they cannot hold NaN), and so are tensors not in
    ``only`` when it is given. Memory stays bounded by the chunk size whatever the file size.
    """
    header = header or read_header(path)
    selected = header.tensors if only is None else {k: v for k, v in header.tensors.items() if k in only}
    counts: dict[str, int] = {}
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    flags = np.empty(_CHUNK, dtype=bool)  # reused output buffer: no allocation per chunk
    with open_nofollow(path) as fh:
        pos = header.data_start
        fh.seek(pos)
        for name, info in sorted(selected.items(), key=lambda kv: kv[1].data_offsets):
            begin, end = (header.data_start + o for o in info.data_offsets)
            if pos != begin:  # tensors tile the data section, so this only happens after a skip
                fh.seek(begin)
            if info.dtype not in _NUMPY_FLOATS and info.dtype not in _BIT_PATTERNS:
                fh.seek(end)
                pos = end
                continue
            itemsize = DTYPE_SIZES[info.dtype]
            found = 0
            left = end - begin
            while left:
                want = min(left, _CHUNK)
                if _read_full(fh, view[:want]) != want:
                    raise _fail(path, f"tensor {name!r}: file ended early (truncated while reading)")
                found += _count_nonfinite(buf, info.dtype, want // itemsize, flags)
                left -= want
            counts[name] = found
            pos = end
    return counts


def read_tensor(path: Path, header: SafetensorsHeader, name: str) -> np.ndarray:
    """One floating-point tensor of ``path`` as float64 (BF16 widened exactly); refuses symlinks.

    ``header`` is :func:`read_header`'s, which has already bounded the offsets by the file size.
    """
    info = header.tensors[name]
    begin, end = (header.data_start + o for o in info.data_offsets)
    buf = bytearray(end - begin)
    with open_nofollow(path) as fh:
        fh.seek(begin)
        if _read_full(fh, memoryview(buf)) != len(buf):
            raise _fail(path, f"tensor {name!r}: file ended early (truncated while reading)")
    numpy_type = _NUMPY_FLOATS.get(info.dtype)
    if numpy_type is not None:
        return np.frombuffer(buf, dtype=numpy_type).astype(np.float64)
    if info.dtype == "BF16":  # the upper half of a float32
        widened = np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16
        return widened.view(np.float32).astype(np.float64)
    raise _fail(path, f"tensor {name!r}: dtype {info.dtype} is not a float type gate can compare")


def _count_nonfinite(buf: bytearray, dtype: str, count: int, flags: np.ndarray) -> int:
    out = flags[:count]
    numpy_type = _NUMPY_FLOATS.get(dtype)
    if numpy_type is not None:
        np.isfinite(np.frombuffer(buf, dtype=numpy_type, count=count), out=out)
        return count - int(np.count_nonzero(out))
    utype, mask = _BIT_PATTERNS[dtype]
    words = np.frombuffer(buf, dtype=utype, count=count)
    np.equal(words & utype(mask), utype(mask), out=out)
    return int(np.count_nonzero(out))


def _read_full(fh: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``fh``; fewer bytes only at end of file."""
    done = 0
    while done < len(view):
        got = fh.readinto(view[done:])  # type: ignore[attr-defined]
        if not got:
            break
        done += got
    return done
