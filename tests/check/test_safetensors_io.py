"""The safetensors reader: header parsing against the reference writer, and the streamed NaN/Inf scan."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from gate.safetensors_io import read_header, scan_nonfinite


def write_with_bf16(path: Path, arrays: dict[str, np.ndarray], bf16: dict[str, list[int]]) -> None:
    """A safetensors file with numpy arrays plus BF16 tensors given as raw 16-bit patterns."""
    header: dict[str, object] = {}
    blobs: list[bytes] = []
    offset = 0
    items = [(k, a.dtype, list(a.shape), a.tobytes()) for k, a in arrays.items()]
    items += [(k, "BF16", [len(v)], np.array(v, np.uint16).tobytes()) for k, v in bf16.items()]
    codes = {
        np.dtype(np.float32): "F32",
        np.dtype(np.float16): "F16",
        np.dtype(np.float64): "F64",
        np.dtype(np.int64): "I64",
    }
    for name, dtype, shape, data in items:
        header[name] = {
            "dtype": codes.get(dtype, dtype),
            "shape": shape,
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def test_header_matches_what_the_reference_writer_wrote(tmp_path: Path):
    arrays = {"a.lora_A.weight": np.zeros((8, 576), np.float32), "b": np.ones((3, 2, 1), np.float16)}
    save_file(arrays, str(tmp_path / "x.safetensors"), metadata={"format": "pt"})
    header = read_header(tmp_path / "x.safetensors")
    assert header.metadata == {"format": "pt"}
    assert {k: (v.dtype, v.shape) for k, v in header.tensors.items()} == {
        "a.lora_A.weight": ("F32", (8, 576)),
        "b": ("F16", (3, 2, 1)),
    }


def test_scan_counts_nan_and_inf_in_every_float_dtype(tmp_path: Path):
    f32 = np.array([1.0, np.nan, np.inf, -np.inf, 0.0, -0.0, 3e38], np.float32)
    f16 = np.array([np.nan, 65504.0, np.inf, 1e-8], np.float16)
    f64 = np.array([np.nan, 1e308, -np.inf], np.float64)
    ints = np.array([-1, 0x7FF0000000000000], np.int64)  # the NaN bit pattern in an integer tensor is data
    bf16 = [0x3F80, 0x7FC0, 0x7F80, 0xFF80, 0x7F7F, 0x0001]  # 1.0, NaN, +Inf, -Inf, max finite, subnormal
    path = tmp_path / "x.safetensors"
    write_with_bf16(path, {"f32": f32, "f16": f16, "f64": f64, "i64": ints}, {"bf16": bf16})
    assert scan_nonfinite(path) == {"f32": 3, "f16": 2, "f64": 2, "bf16": 3}


def test_scan_is_exact_across_chunk_boundaries(tmp_path: Path):
    rng = np.random.default_rng(0)
    big = rng.standard_normal(6_000_000).astype(np.float32)  # 24 MB: spans two 16 MiB chunks
    positions = [0, 4_194_303, 4_194_304, 5_999_999]
    big[positions] = [np.nan, np.inf, -np.inf, np.nan]
    odd = rng.standard_normal(7).astype(np.float16)  # puts the next tensor at an odd 2-byte offset
    odd[3] = np.nan
    path = tmp_path / "x.safetensors"
    save_file({"a": odd, "b": big, "c": np.array([np.inf], np.float64)}, str(path))
    assert scan_nonfinite(path) == {"a": 1, "b": 4, "c": 1}


def test_scan_memory_does_not_grow_with_the_file(tmp_path: Path):
    path = tmp_path / "x.safetensors"
    save_file({f"t{i}": np.full(5_000_000, 0.5, np.float32) for i in range(5)}, str(path))  # 100 MB
    tracemalloc.start()
    try:
        counts = scan_nonfinite(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(counts.values()) == 0
    assert peak < 48 << 20, f"peak {peak >> 20} MiB for a {path.stat().st_size >> 20} MiB file"
