"""Tiny random bases of several architectures, built with transformers in an isolated env.

No model hub is reachable, so ``gate/_envscripts/tiny_base.py`` builds each base from a
config with random weights, borrowing the embedded SmolLM2's tokenizer and chat template.
A build is cached under ``$GATE_HOME/test-bases`` keyed by the script, the environment and
the arguments; concurrent sessions wait on a file lock instead of building twice.

Example::

    qwen2 = tiny_base("qwen2")                  # transformers 5.24 (the reference env)
    again = resaved(qwen2, "llamafactory")      # the same weights saved by transformers 5.6
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from gate.envs import EnvSpec, ensure, gate_home, has_cuda

__all__ = ["ARCHS", "resaved", "tiny_base"]

SCRIPT = Path(__file__).resolve().parents[2] / "gate" / "_envscripts" / "tiny_base.py"
ARCHS = ("llama", "mistral", "qwen2", "phi3", "gemma2", "gemma3", "qwen2_moe", "mixtral")


def _env(which: str) -> EnvSpec:
    if which == "reference":
        from gate.serving._env import reference_env_spec

        return reference_env_spec()
    if which == "llamafactory":
        from trainers._envs import llamafactory_env

        return llamafactory_env(has_cuda())
    raise ValueError(which)


def _cached(key_parts: list[str], build: list[str], env_name: str) -> Path:
    spec = _env(env_name)
    key = hashlib.sha256("\0".join([SCRIPT.read_text(), spec.digest(), *key_parts]).encode()).hexdigest()[:16]
    target = gate_home() / "test-bases" / f"{key_parts[0]}-{key}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        env = ensure(spec)
        partial = target.with_name(target.name + f".partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        done = subprocess.run(
            [str(env.python), str(SCRIPT), *[a.replace("{out}", str(partial)) for a in build]],
            env=env.environ({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}),
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise RuntimeError(f"building {key_parts} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        (partial / "tiny-base.json").write_text(done.stdout.strip().splitlines()[-1])
        os.replace(partial, target)
        return target


def tiny_base(arch: str, *, seed: int = 0) -> Path:
    """A tiny random base of ``arch`` (one of :data:`ARCHS`), saved by transformers 5.24."""
    from gate.base_model import cached_smollm2

    tokenizer = cached_smollm2()
    return _cached(
        [arch, str(seed)],
        ["build", arch, "{out}", "--tokenizer", str(tokenizer), "--seed", str(seed)],
        "reference",
    )


def resaved(base: Path, env_name: str) -> Path:
    """``base`` loaded and saved again by the transformers of ``env_name`` (``llamafactory``: 5.6)."""
    info = json.loads((base / "tiny-base.json").read_text())
    return _cached(
        [f"{info.get('arch', base.name)}-resaved-{env_name}", base.name],
        ["resave", str(base), "{out}"],
        env_name,
    )
