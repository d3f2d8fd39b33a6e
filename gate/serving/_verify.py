"""Verify a vLLM server gate did not start, before any probe trusts it.

An attached server is somebody else's process: it may run another vLLM, another
base, other LoRA limits, or no runtime LoRA loading at all, and every verdict
obtained from it would then describe a deployment that does not exist. So
attaching proves, from the server's own answers:

* **version**: ``GET /version`` lies in the contract's ``serving.vllm_version`` range;
* **base**: the served model's root (``GET /v1/models``) is a model directory on this
  host whose :func:`~gate.base_model.base_identity` is the contract's identity (the
  adapter path must be visible to the server anyway, so the two share a filesystem),
  and its ``max_model_len`` is the contract's;
* **max_loras**: the ``max_lora`` label of ``vllm:lora_requests_info`` in ``/metrics``;
* **max_lora_rank and runtime LoRA loading**: a zero-weight probe adapter of rank
  ``max_lora_rank + 1`` is hot-loaded; vLLM refuses it naming its own
  ``max_lora_rank`` (a 404 means runtime loading is off; acceptance means the
  server allows larger ranks than the contract). Zero ``lora_B`` weights change
  nothing, and the adapter is unloaded at once when it did load.

Every difference is listed in one :class:`ServerError`.
"""

from __future__ import annotations

import json
import re
import struct
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.version import InvalidVersion, Version

from gate.contract import Contract
from gate.errors import InputError, ServerError
from gate.serving._runtime import ServerFacts

if TYPE_CHECKING:
    from gate.serving._server import VLLMServer

__all__ = ["parse_max_loras", "verify_server", "write_probe_adapter"]

_RANK_REFUSAL = re.compile(r"greater than max_lora_rank\D{0,4}(\d{1,6})")
_MAX_LORA_LABEL = re.compile(r'^vllm:lora_requests_info\{[^}\n]{0,4096}max_lora="(\d{1,6})"', re.MULTILINE)


def parse_max_loras(metrics: str) -> int | None:
    """``max_loras`` from vLLM's Prometheus text (the ``max_lora`` label), if present."""
    found = _MAX_LORA_LABEL.search(metrics[: 4 << 20])
    return int(found.group(1)) if found else None


def write_probe_adapter(out: Path, contract: Contract, *, rank: int) -> Path:
    """A PEFT adapter of ``rank`` on one module of layer 0 with zero ``lora_B`` (it changes nothing).

    Written as safetensors by hand (8-byte header length, JSON header, little-endian
    float32 zeros): the core package has no numpy or torch.
    """
    base = contract.base_model
    module = sorted(base.linear_shapes)[0]
    out_f, in_f = base.linear_shapes[module]
    name = "base_model.model." + base.module_path(module, 0)
    shapes = {f"{name}.lora_A.weight": (rank, in_f), f"{name}.lora_B.weight": (out_f, rank)}
    header: dict[str, object] = {}
    offset = 0
    for key, (rows, cols) in shapes.items():
        size = rows * cols * 4
        header[key] = {"dtype": "F32", "shape": [rows, cols], "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "adapter_model.safetensors", "wb") as fh:
        fh.write(struct.pack("<Q", len(encoded)))
        fh.write(encoded)
        fh.write(bytes(offset))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base.name,
        "r": rank,
        "lora_alpha": rank,
        "lora_dropout": 0.0,
        "target_modules": [module],
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
    }
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return out


def _check_version(version: str | None, contract: Contract, problems: list[str]) -> None:
    spec = contract.serving.specifier()
    if version is None:
        problems.append("GET /version gives no vLLM version, so it cannot be held to the contract's range")
        return
    try:
        parsed = Version(version)
    except InvalidVersion:
        problems.append(f"vLLM reports the unparseable version {version!r}")
        return
    # A local label (0.32.0+cpu) is the same release for the contract's range.
    if not spec.contains(Version(parsed.public), prereleases=True):
        problems.append(f"vLLM {version} is outside the contract's range {contract.serving.vllm_version}")


def _check_base(
    root: str | None, contract: Contract, base_dir: Path | None, problems: list[str]
) -> str | None:
    from gate.base_model import base_identity

    if root is None:
        problems.append("/v1/models names no root path for the served base, so its identity cannot be proven")
        return None
    path = Path(root)
    if not path.is_absolute() or not (path / "config.json").is_file():
        problems.append(
            f"the served base's root {root!r} is not a model directory on this host, so its identity "
            "cannot be proven (gate and the server must share the filesystem the adapter is read from)"
        )
        return None
    try:
        identity = base_identity(path)
    except (InputError, OSError) as e:
        problems.append(f"the served base at {root} cannot be read to prove its identity: {e}")
        return None
    if identity != contract.base_model.identity:
        problems.append(
            f"the server serves another base: {root} has identity {identity}, the contract pins "
            f"{contract.base_model.identity} ({contract.base_model.name})"
        )
    if base_dir is not None and base_identity(Path(base_dir)) != identity:
        problems.append(f"the server serves {root}, not the base given here ({base_dir})")
    return identity


def _probe_lora(
    server: VLLMServer, contract: Contract, problems: list[str]
) -> tuple[int | None, bool | None]:
    """(the server's max_lora_rank, runtime loading on) from one hot-load of a probe adapter."""
    want = contract.serving.max_lora_rank
    name = f"gate-verify-{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="gate-verify-") as tmp:
        adapter = write_probe_adapter(Path(tmp) / "probe", contract, rank=want + 1)
        result = server.load_adapter(name, adapter)
        if result.ok:
            server.unload_adapter(name)
            problems.append(
                f"the server accepts LoRA rank {want + 1}: its max_lora_rank is above the contract's {want}"
            )
            return None, True
    if result.status_code == 404:
        problems.append(
            "the server has no runtime LoRA loading (POST /v1/load_lora_adapter is 404): start it with "
            "--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"
        )
        return None, False
    found = _RANK_REFUSAL.search(result.message)
    if found is None:
        problems.append(
            f"the server refused the rank probe adapter for another reason: {result.message[:300]}"
        )
        return None, True
    rank = int(found.group(1))
    if rank != want:
        problems.append(f"the server's max_lora_rank is {rank}, the contract's is {want}")
    return rank, True


def verify_server(server: VLLMServer, contract: Contract, *, base_dir: Path | None = None) -> ServerFacts:
    """Check ``server`` against ``contract`` (see the module docstring); raise listing every difference."""
    with server.client(timeout=30.0) as client:
        if not client.health():
            raise ServerError(
                f"no healthy vLLM server at {server.url}", hint="check the URL and that /health answers"
            )
        cards = client.models()
        version = client.version()
    bases = [c for c in cards if c.parent is None]
    if len(bases) != 1:
        raise ServerError(
            f"the server at {server.url} serves {len(bases)} base models ({[c.id for c in bases]}); "
            "gate needs exactly one"
        )
    card = bases[0]
    server.served_model = card.id
    problems: list[str] = []
    _check_version(version, contract, problems)
    identity = _check_base(card.root, contract, base_dir, problems)
    if card.max_model_len is not None and card.max_model_len != contract.serving.max_model_len:
        problems.append(
            f"the server's max_model_len is {card.max_model_len}, the contract's is "
            f"{contract.serving.max_model_len}"
        )
    # The LoRA gauge appears once the engine has logged a step; one token makes sure it has.
    server.complete(card.id, "1", max_tokens=1)
    with server.client(timeout=30.0) as client:
        max_loras = parse_max_loras(client.metrics())
    if max_loras is None:
        problems.append("/metrics shows no vllm:lora_requests_info: the server runs without --enable-lora")
    elif max_loras != contract.serving.max_loras:
        problems.append(
            f"the server's max_loras is {max_loras}, the contract's is {contract.serving.max_loras}"
        )
    rank, runtime_loading = _probe_lora(server, contract, problems)
    if problems:
        raise ServerError(
            f"refusing the server at {server.url}: it is not the serving target of contract "
            f"{contract.name}: " + "; ".join(problems),
            hint="start vLLM with the contract's base and flags, or let gate start the server (omit the URL)",
        )
    return ServerFacts(
        runtime="vllm",
        version=version,
        served_model=card.id,
        model_root=card.root,
        max_model_len=card.max_model_len,
        max_lora_rank=rank,
        max_loras=max_loras,
        runtime_lora_loading=runtime_loading,
        base_identity=identity,
    )
