"""Rules about the adapter directory's files: presence, format, symlinks, size."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from gate.rules import CheckContext, Hit, rule
from gate.rules._context import (
    ADAPTER_CONFIG,
    PICKLE_WEIGHTS,
    SERVED_FILES,
    TEMPLATE_FILE,
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
    WEIGHTS,
)


@rule(
    "files.symlink",
    "error",
    title="a symlink in the adapter directory (gate never follows symlinks)",
    hint="replace the symlink with a copy of the file it points to",
)
def _symlinks(ctx: CheckContext) -> Iterator[Hit]:
    root = ctx.adapter_dir.resolve()
    for rel, target in ctx.tree[2]:
        dest = Path(os.path.normpath(ctx.adapter_dir / Path(rel).parent / target))
        try:
            outside = not str(dest.resolve()).startswith(str(root) + os.sep)
        except (OSError, RuntimeError):  # a symlink loop: it leads nowhere usable
            outside = True
        where = "outside the adapter directory" if outside else "inside the adapter directory"
        yield Hit(f"{rel} is a symlink to {target!r} ({where}); it was not followed", rel)


@rule(
    "files.not-regular",
    "error",
    title="a file the server reads is a FIFO, directory, socket or device (gate reads only regular files)",
    hint="replace it with the regular file save_pretrained writes",
)
def _not_regular(ctx: CheckContext) -> Iterator[Hit]:
    for name in SERVED_FILES:
        kind = ctx.special_kind(name)
        if kind is not None:
            yield Hit(
                f"{name} is {kind}, not a regular file: it was not opened (vLLM's loader would block on a "
                f"FIFO and fail on a directory or device)",
                name,
            )


@rule(
    "files.adapter-config-missing",
    "error",
    title="adapter_config.json is missing",
    hint="save the adapter with PEFT's save_pretrained (it writes adapter_config.json)",
)
def _config_missing(ctx: CheckContext) -> Iterator[Hit]:
    if ADAPTER_CONFIG not in ctx.entries:
        yield Hit(f"no {ADAPTER_CONFIG}: vLLM fails with 'No adapter found'", ADAPTER_CONFIG)


@rule(
    "files.weights-missing",
    "error",
    title="no adapter weights at all",
    hint="save the adapter with safe_serialization=True (adapter_model.safetensors)",
)
def _weights_missing(ctx: CheckContext) -> Iterator[Hit]:
    if not any(name in ctx.entries for name in (WEIGHTS, *PICKLE_WEIGHTS)):
        yield Hit(f"no {WEIGHTS}: vLLM fails with 'doesn't contain tensors'", WEIGHTS)


@rule(
    "files.pickle-weights",
    "error",
    title="weights only as a pickle (.bin/.pt); gate never loads pickles",
    hint="re-save with safe_serialization=True to write adapter_model.safetensors",
)
def _pickle_only(ctx: CheckContext) -> Iterator[Hit]:
    if WEIGHTS in ctx.entries:
        return
    for name in PICKLE_WEIGHTS:
        if name in ctx.entries:
            yield Hit(f"{name} is a pickle: loading it can run arbitrary code; it was not opened", name)


@rule(
    "files.pickle-ignored",
    "warning",
    title="a pickle weights file beside adapter_model.safetensors",
    hint="delete the .bin/.pt file; vLLM reads adapter_model.safetensors first",
)
def _pickle_beside(ctx: CheckContext) -> Iterator[Hit]:
    if WEIGHTS not in ctx.entries:
        return
    for name in PICKLE_WEIGHTS:
        if name in ctx.entries:
            yield Hit(f"{name} is ignored by vLLM (it prefers {WEIGHTS}) and was not opened", name)


@rule(
    "files.too-large",
    "error",
    title="the adapter directory exceeds the contract's size limit",
    hint="train a smaller rank or fewer target modules, or raise adapter.max_size_bytes in the contract",
)
def _too_large(ctx: CheckContext) -> Iterator[Hit]:
    total, count, _ = ctx.tree
    limit = ctx.contract.adapter.max_size_bytes
    if count > 10_000:
        yield Hit("more than 10000 entries in the adapter directory (stopped counting)", ".")
    elif total > limit:
        yield Hit(
            f"the adapter directory holds {total} bytes, more than the contract's {limit}; its weights were "
            f"not scanned further",
            ".",
        )


@rule(
    "files.unreadable",
    "error",
    title="a file the server reads is corrupt, oversized, not UTF-8 or not a JSON object",
    hint="re-save the adapter and its tokenizer with PEFT / transformers save_pretrained",
)
def _unreadable(ctx: CheckContext) -> Iterator[Hit]:
    for name in (ADAPTER_CONFIG, TOKENIZER_CONFIG, TOKENIZER_JSON, "special_tokens_map.json"):
        if ctx.special_kind(name) or ctx.same_as_base(name):  # files.not-regular reports the former
            continue  # byte-identical to the base's file
        doc = ctx.json_file(name)
        if doc.error:
            yield Hit(f"{name} {doc.error}", name)
    _, template_error = ctx.template
    if template_error and TEMPLATE_FILE in ctx.entries and not ctx.special_kind(TEMPLATE_FILE):
        yield Hit(template_error, TEMPLATE_FILE)
