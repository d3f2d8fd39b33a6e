"""Scores kept across runs, keyed by everything that decides them, so they are never mixed between models.

lm-eval's own request cache is keyed by the request alone: shared between the
base and its candidates it would hand one model's answers to another, so gate
never enables it. gate keeps its own store instead, under
``$GATE_HOME/eval-scores/<key>/``, where the key digests:

* the model: the base identity the contract pins (verified against the base
  directory before any eval) and the adapter digest (``None`` for the base);
* the documents: the task directory's digest and the document limit;
* the serving configuration: the contract's ``serving`` section (runtime,
  version range, LoRA limits, dtype, start-up flags) and the server's reported
  version and served model name, since the same base scores differently on a
  LoRA and a non-LoRA server;
* the evaluator: lm-eval's pinned requirements and the digest of the script
  that drives it (request kinds, seeds, chat template use).

An entry records its own key and is used only when the stored key equals the
requested one; entries are written atomically. ``GATE_EVAL_CACHE=off`` disables it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate.contract import Contract
from gate.envs import gate_home
from gate.evaluate._env import lm_eval_env_spec
from gate.evaluate._runner import Server
from gate.evaluate._scores import ModelScores

__all__ = ["ScoreKey", "base_key", "cached_base", "enabled", "load", "store"]

_SCRIPT = Path(__file__).resolve().parents[1] / "_envscripts" / "lm_eval_run.py"
_MAX_ENTRY_BYTES = 256 << 20
_FORMAT = 1


def enabled() -> bool:
    """Whether scores are kept and reused (``GATE_EVAL_CACHE=off`` turns it off)."""
    return os.environ.get("GATE_EVAL_CACHE", "on").lower() not in ("off", "0", "false", "no")


@dataclass(frozen=True)
class ScoreKey:
    """What decides one model's scores on one task set (see the module docstring)."""

    model_identity: str
    adapter_digest: str | None
    tasks_sha256: str
    limit: int | None
    serving: Mapping[str, Any]
    served_model: str
    server_version: str | None

    def as_dict(self) -> dict[str, Any]:
        """The key's canonical content, with the evaluator's own digest."""
        return {
            "format": _FORMAT,
            "model_identity": self.model_identity,
            "adapter_digest": self.adapter_digest,
            "tasks_sha256": self.tasks_sha256,
            "limit": self.limit,
            "serving": dict(self.serving),
            "served_model": self.served_model,
            "server_version": self.server_version,
            "evaluator": {
                "requirements": [r for i in lm_eval_env_spec().installs for r in i.requirements],
                "script_sha256": hashlib.sha256(_SCRIPT.read_bytes()).hexdigest(),
            },
        }

    def digest(self) -> str:
        """The key's sha256 (the entry's directory name)."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()


def base_key(contract: Contract, server: Server, *, tasks_sha256: str, limit: int | None) -> ScoreKey:
    """The key of the base model's scores on ``server`` under ``contract`` (asks the server its version)."""
    from gate.serving import VLLMClient

    with VLLMClient(server.url, timeout=30.0) as client:
        version = client.version()
    return ScoreKey(
        model_identity=contract.base_model.identity,
        adapter_digest=None,
        tasks_sha256=tasks_sha256,
        limit=limit,
        serving=contract.serving.model_dump(mode="json"),
        served_model=server.served_model,
        server_version=version,
    )


def cached_base(
    contract: Contract, server: Server, *, tasks_sha256: str, limit: int | None
) -> tuple[ScoreKey | None, ModelScores | None]:
    """The base's score key on ``server`` and its stored scores (None, None when the store is off)."""
    if not enabled():
        return None, None
    key = base_key(contract, server, tasks_sha256=tasks_sha256, limit=limit)
    found = load(key)
    if found is not None:
        from gate.console import err

        err.print(f"gate eval: base scores reused from the score cache ({key.digest()[:12]})")
    return key, found


def _root() -> Path:
    return gate_home() / "eval-scores"


def load(key: ScoreKey) -> ModelScores | None:
    """The stored scores for ``key``, or None (absent, unreadable or recorded under another key)."""
    entry = _root() / key.digest()
    path = entry / "scores.json"
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_ENTRY_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key.as_dict():
        return None
    try:
        return ModelScores(
            label=str(data["label"]),
            model=str(data["model"]),
            server_url=str(data["server_url"]),
            tasks_sha256=key.tasks_sha256,
            per_doc=data["per_doc"],
            aggregates=data["aggregates"],
            raw_dir=entry / "raw",
            seconds=float(data["seconds"]),
            limit=key.limit,
            doc_tags={t: {d: tuple(v) for d, v in docs.items()} for t, docs in data["doc_tags"].items()},
            doc_ids=data["doc_ids"],
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def store(key: ScoreKey, scores: ModelScores) -> Path:
    """Keep ``scores`` (and a copy of lm-eval's raw output) under ``key``; return the entry."""
    root = _root()
    root.mkdir(parents=True, exist_ok=True)
    entry = root / key.digest()
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=root))
    try:
        if scores.raw_dir.is_dir():
            shutil.copytree(scores.raw_dir, staging / "raw", symlinks=True)
        payload = {
            "key": key.as_dict(),
            "label": scores.label,
            "model": scores.model,
            "server_url": scores.server_url,
            "per_doc": scores.per_doc,
            "aggregates": scores.aggregates,
            "seconds": scores.seconds,
            "doc_tags": {t: {d: list(v) for d, v in docs.items()} for t, docs in scores.doc_tags.items()},
            "doc_ids": scores.doc_ids,
        }
        (staging / "scores.json").write_text(json.dumps(payload, sort_keys=True), encoding="utf-8")
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)
        # Another run may have stored the same key first: its entry holds the same scores.
        with contextlib.suppress(OSError):
            os.replace(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry
