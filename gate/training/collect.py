"""Collecting a toolkit's adapter into ``RUN_DIR/adapter/``, normalised so identical trainings match."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from gate.digests import file_sha256
from gate.errors import ToolError
from gate.training.record import ADAPTER_DIR, AdapterFile, AdapterInfo
from gate.training.trainer import RunContext, Trainer

#: Files a PEFT LoRA adapter directory must hold.
REQUIRED_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
#: Tokenizer and template files copied from the base when a toolkit does not save them.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
#: What is kept from a toolkit's output directory (checkpoints, optimizer state and logs are not).
_ADAPTER_KEEP = (*REQUIRED_ADAPTER_FILES, *TOKENIZER_FILES, "added_tokens.json", "README.md")


def collect_adapter(trainer: Trainer, ctx: RunContext) -> AdapterInfo:
    """Copy the toolkit's final adapter into ``adapter/``, atomically, with tokenizer files."""
    src = trainer.adapter_output(ctx)
    missing = [f for f in REQUIRED_ADAPTER_FILES if not (src / f).is_file()]
    if missing:
        pickled = [p.name for p in src.glob("*.bin")] if src.is_dir() else []
        hint = (
            "it saved pickled weights (refused: never unpickled)"
            if pickled
            else f"see {ctx.run_dir / 'train.log'}"
        )
        raise ToolError(f"{trainer.name} finished but saved no {', '.join(missing)} in {src}", hint=hint)
    partial = ctx.run_dir / f".{ADAPTER_DIR}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for name in _ADAPTER_KEEP:
        f = src / name
        if f.is_file() and not f.is_symlink():
            shutil.copyfile(f, partial / name)
    changes: list[str] = []
    fixes: list[str] = []
    for name in TOKENIZER_FILES:
        reference = ctx.model_dir / name
        if not reference.is_file():
            continue
        if not (partial / name).is_file():
            # Toolkits that save no tokenizer: vLLM reads the base's anyway, and the
            # adapter directory must be self-describing for the contract check.
            shutil.copyfile(reference, partial / name)
            fixes.append(f"{name}: not saved by the toolkit, copied from the base")
            continue
        saved, ref = _json_or_text(partial / name), _json_or_text(reference)
        if saved == ref:
            continue
        if isinstance(saved, dict) and isinstance(ref, dict) and _strip_runtime(saved) == _strip_runtime(ref):
            # Only training-time settings differ (truncation length, padding side, load flags):
            # nothing the server reads, so the adapter carries the base's file byte for byte.
            keys = sorted(k for k in set(saved) | set(ref) if saved.get(k) != ref.get(k))
            shutil.copyfile(reference, partial / name)
            fixes.append(f"{name}: restored the base's (the toolkit changed {', '.join(keys)})")
        else:
            changes.append(name)
    _normalise_adapter_config(partial / "adapter_config.json", ctx.resolved.base_dir)
    if _normalise_model_card(partial / "README.md", ctx.model_dir, ctx.resolved.base_dir):
        fixes.append("README.md: the model card named this run's staged base view; it names the base")
    files = {
        p.name: AdapterFile(sha256=file_sha256(p), size=p.stat().st_size) for p in sorted(partial.iterdir())
    }
    final = ctx.run_dir / ADAPTER_DIR
    os.replace(partial, final)
    return AdapterInfo(
        files=files,
        size_bytes=sum(f.size for f in files.values()),
        tokenizer_changes=changes,
        export_fixes=fixes,
    )


#: tokenizer_config.json keys toolkits set for training that no server reads from an adapter.
_RUNTIME_KEYS = frozenset(
    {
        "model_max_length",
        "padding_side",
        "truncation_side",
        "is_local",
        "local_files_only",
        "name_or_path",
        "_commit_hash",
        "tokenizer_file",
        "clean_up_tokenization_spaces",
        "split_special_tokens",
    }
)


def _strip_runtime(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in _RUNTIME_KEYS}


def _json_or_text(path: Path) -> Any:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".json":
        with contextlib.suppress(ValueError):
            return json.loads(text)
    return text


def _normalise_adapter_config(path: Path, base_dir: Path) -> None:
    """Point the adapter at the base by path (not at a template view) and sort ``target_modules``.

    PEFT saves ``target_modules`` from a Python set, so its order changes from run to run; sorted,
    identical training gives a byte-identical adapter_config.json.
    """
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ToolError(f"{path}: the toolkit wrote an unreadable adapter_config.json: {e}") from e
    if not isinstance(cfg, dict):
        raise ToolError(f"{path}: adapter_config.json is not a JSON object")
    new = dict(cfg, base_model_name_or_path=str(base_dir))
    if isinstance(new.get("target_modules"), list):
        new["target_modules"] = sorted(new["target_modules"], key=str)
    if new != cfg:
        path.write_text(json.dumps(new, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _normalise_model_card(path: Path, staged: Path, base_dir: Path) -> bool:
    """Name the base, not this run's staged view of it, in the model card a toolkit wrote.

    PEFT's model card records the path it loaded the base from; with a template view
    that is ``RUN/model``, so two identical trainings in two run directories would
    otherwise differ in README.md alone. Returns whether the card changed.
    """
    if staged == base_dir or not path.is_file() or path.is_symlink() or path.stat().st_size > 4 << 20:
        return False
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    new = text.replace(str(staged), str(base_dir))
    if new == text:
        return False
    path.write_text(new, encoding="utf-8", errors="surrogateescape")
    return True
