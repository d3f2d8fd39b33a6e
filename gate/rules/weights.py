"""Rules about adapter_model.safetensors: names, shapes and ranks (header only), NaN/Inf (one pass)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from gate.rules import CheckContext, Hit, rule
from gate.rules._config_read import lora_modules
from gate.rules._context import WEIGHTS
from gate.rules._tensors import (
    Classified,
    LoraTensor,
    _base_layers,
    _expected_rank,
    _layer_index,
    _like,
    _names,
    _silent_base,
    classify,
)
from gate.vllm_support import versions_text

__all__ = ["Classified", "LoraTensor", "classify"]

_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


@rule(
    "weights.corrupt",
    "error",
    title="adapter_model.safetensors is corrupt, truncated or forged",
    hint="re-save the adapter (safe_serialization=True) and copy it again",
)
def _corrupt(ctx: CheckContext) -> Iterator[Hit]:
    _, error = ctx.header
    if error:
        yield Hit(error, WEIGHTS)


@rule("weights.empty", "error", title="the weights file holds no tensors", hint="re-save the trained adapter")
def _empty(ctx: CheckContext) -> Iterator[Hit]:
    header, _ = ctx.header
    if header is not None and not header.tensors:
        yield Hit("adapter_model.safetensors holds no tensors: the adapter would change nothing", WEIGHTS)


@rule(
    "weights.unsupported-tensor",
    "error",
    title="tensors vLLM rejects (full lm_head/embed weights, DoRA magnitudes, trainable-token deltas, ...)",
    hint="retrain as plain LoRA without modules_to_save, DoRA or trainable_token_indices",
)
def _unsupported(ctx: CheckContext) -> Iterator[Hit]:
    c = classify(ctx)
    if c and c.unsupported:
        items = [f"{n} ({why})" for n, why in c.unsupported]
        yield Hit(
            f"{len(items)} tensor(s) vLLM refuses with 'is unsupported LoRA weight': {_names(items)}", WEIGHTS
        )


@rule(
    "weights.base-layer-dropped",
    "error",
    title="embedding/lm_head base_layer weights that differ from the base's (vLLM skips them silently)",
    hint="do not resize the vocabulary or train the full embeddings for a vLLM LoRA release",
)
def _base_layer(ctx: CheckContext) -> Iterator[Hit]:
    c = classify(ctx)
    if c and c.base_layer:
        lost, _ = _base_layers(ctx, c)
        if lost:
            yield Hit(
                f"{_names(lost)}: vLLM skips base_layer tensors without a message, so these weights "
                f"are silently not served",
                WEIGHTS,
            )


@rule(
    "weights.base-layer-unverified",
    "warning",
    title="embedding/lm_head base_layer weights gate could not compare with the base's",
    hint="run gate check with --base (the base directory) so the saved base_layer can be compared",
)
def _base_layer_unverified(ctx: CheckContext) -> Iterator[Hit]:
    c = classify(ctx)
    if c and c.base_layer:
        _, unverified = _base_layers(ctx, c)
        if unverified:
            yield Hit(
                f"{_names(unverified)}: vLLM skips these and serves {ctx.contract.base_model.name}'s own "
                f"weights; without the base (or with another dtype) gate cannot tell whether they differ",
                WEIGHTS,
            )


@rule(
    "weights.embedding-not-served",
    "error",
    title="LoRA tensors for embed_tokens / lm_head where the contract's vLLM versions do not serve them",
    hint="retrain without embed_tokens / lm_head LoRA for this base and runtime",
)
def _embedding_unserved(ctx: CheckContext) -> Iterator[Hit]:
    c = classify(ctx)
    if c and c.embedding_unserved:
        kinds = sorted({t.short for t in c.embedding_unserved})
        names = sorted({m.split(".")[-1] for m in lora_modules(ctx)})
        shown = _names([t.name for t in c.embedding_unserved])
        yield Hit(
            f"{len(c.embedding_unserved)} tensor(s) for {kinds} ({shown}): "
            f"{versions_text(ctx.contract)} serves no {'/'.join(kinds)} LoRA for "
            f"{ctx.contract.base_model.architecture}, so vLLM refuses the adapter",
            WEIGHTS,
            f"retrain targeting only modules {ctx.contract.base_model.name} serves LoRA on: "
            f"{', '.join(names)}",
        )


@rule(
    "weights.unknown-module",
    "error",
    title="LoRA tensors for a module type the base model does not have",
    hint="the adapter was trained for another architecture; retrain it on this base",
)
def _unknown_module(ctx: CheckContext) -> Iterator[Hit]:
    c = classify(ctx)
    if c and c.unknown_module:
        kinds = sorted({t.short for t in c.unknown_module})
        yield Hit(
            f"tensors for {kinds} ({_names([t.name for t in c.unknown_module])}): vLLM refuses 'expected "
            f"target modules in {sorted(ctx.base_linear_names)}'",
            WEIGHTS,
            f"the adapter was trained for another architecture; retrain it on {ctx.contract.base_model.name}",
        )


@rule(
    "weights.no-matching-module",
    "error",
    title="LoRA tensors whose names match no module of the base (vLLM skips them: base output)",
    hint="the tensor names carry a wrong prefix (e.g. another model class); re-save with PEFT for this base",
)
def _unmatched(ctx: CheckContext) -> Iterator[Hit]:
    c = classify(ctx)
    if c and c.unmatched:
        example = c.unmatched[0]
        yield Hit(
            f"{len(c.unmatched)} tensor(s) match no module of the base, e.g. {example.name} "
            f"(module {example.module!r} does not exist){_silent_base(c)}",
            WEIGHTS,
            f"{ctx.contract.base_model.name}'s modules are named like {_like(ctx, example.short)}; re-save "
            f"the adapter with PEFT on {ctx.contract.base_model.name}",
        )


@rule(
    "weights.layer-out-of-range",
    "error",
    title="LoRA tensors for layers the base model does not have",
    hint="the adapter was trained on a deeper model; retrain on this base",
)
def _out_of_range(ctx: CheckContext) -> Iterator[Hit]:
    c = classify(ctx)
    if c and c.out_of_range:
        layers = sorted({_layer_index(t.module) for t in c.out_of_range})
        yield Hit(
            f"tensors for layer(s) {layers[:8]} but the base has {ctx.contract.base_model.num_hidden_layers} "
            f"layers (0-{ctx.contract.base_model.num_hidden_layers - 1}){_silent_base(c)}",
            WEIGHTS,
        )


@rule(
    "weights.shape-mismatch",
    "error",
    title="LoRA tensor shapes do not fit the base's layers (lora_A [r, in], lora_B [out, r])",
    hint="the adapter was trained on a model with other dimensions; retrain on this base",
)
def _shapes(ctx: CheckContext) -> Iterator[Hit]:
    c = classify(ctx)
    if c is None:
        return
    bad = []
    for t in c.matched:
        out_f, in_f = ctx.base_linears[t.module]
        shape = t.info.shape
        if len(shape) != 2:
            bad.append(f"{t.name} has {len(shape)} dimensions")
        elif t.kind == "lora_A" and shape[1] != in_f:
            bad.append(f"{t.name} is {list(shape)}, needs [r, {in_f}]")
        elif t.kind == "lora_B" and shape[0] != out_f:
            bad.append(f"{t.name} is {list(shape)}, needs [{out_f}, r]")
    if bad:
        yield Hit(f"{len(bad)} tensor(s) do not fit the base: {_names(bad)}", WEIGHTS)


@rule(
    "weights.rank-mismatch",
    "error",
    title="the rank in the tensors disagrees with adapter_config.json (r / rank_pattern)",
    hint="the config does not belong to these weights; re-save config and weights together",
)
def _ranks(ctx: CheckContext) -> Iterator[Hit]:
    c = classify(ctx)
    if c is None:
        return
    bad = []
    for t in c.matched:
        shape = t.info.shape
        if len(shape) != 2:
            continue
        got = shape[0] if t.kind == "lora_A" else shape[1]
        want = _expected_rank(ctx, t.module)
        if want is not None and got != want:
            bad.append(f"{t.name} has rank {got}")
    if bad:
        r = (ctx.config.data or {}).get("r")
        yield Hit(f"adapter_config.json says r={r} but {_names(bad)}: vLLM would scale them wrongly", WEIGHTS)


@rule(
    "weights.pair-incomplete",
    "error",
    title="a module has lora_A without lora_B or the reverse",
    hint="re-save the adapter; a LoRA module needs both factors",
)
def _pairs(ctx: CheckContext) -> Iterator[Hit]:
    c = classify(ctx)
    if c is None:
        return
    kinds: dict[str, set[str]] = defaultdict(set)
    for t in c.lora:
        kinds[t.module].add(t.kind.replace("embedding_", ""))
    lonely = sorted(f"{m} (only {next(iter(k))})" for m, k in kinds.items() if len(k) == 1)
    if lonely:
        yield Hit(f"{len(lonely)} module(s) with one factor: {_names(lonely)}", WEIGHTS)


@rule(
    "weights.dtype-unsupported",
    "error",
    title="LoRA tensors that are not floating point (F16/BF16/F32/F64)",
    hint="save the adapter in float16, bfloat16 or float32",
)
def _dtypes(ctx: CheckContext) -> Iterator[Hit]:
    c = classify(ctx)
    if c is None:
        return
    bad = [f"{t.name} ({t.info.dtype})" for t in c.lora if t.info.dtype not in _FLOAT_DTYPES]
    if bad:
        yield Hit(f"{len(bad)} tensor(s) with a non-float dtype: {_names(bad)}", WEIGHTS)


@rule(
    "weights.embedding-vocab",
    "error",
    title="embedding LoRA whose vocabulary width differs from the base's",
    hint="do not add tokens: vLLM serves the base vocabulary only",
)
def _embedding_vocab(ctx: CheckContext) -> Iterator[Hit]:
    c = classify(ctx)
    if c is None:
        return
    vocab = ctx.contract.base_model.vocab_size
    for t in c.lora:
        shape = t.info.shape
        # PEFT stores lora_embedding_A as [r, num_embeddings]
        width = shape[1] if t.kind == "lora_embedding_A" and len(shape) == 2 else None
        if width is not None and width != vocab:
            yield Hit(
                f"{t.name} spans {width} tokens but the base vocabulary has {vocab}: vLLM refuses 'The "
                f"embedding LoRA size({width}) must be consistent with the base model's vocabulary "
                f"size({vocab})'",
                WEIGHTS,
            )


@rule(
    "weights.nonfinite",
    "error",
    title="NaN or Inf values in the weights (they poison a shared vLLM server)",
    hint="the training diverged; lower the learning rate or fix the data, then retrain",
)
def _nonfinite(ctx: CheckContext) -> Iterator[Hit]:
    c = classify(ctx)
    if c is None:
        return
    loaded = frozenset(t.name for t in c.matched) | {
        t.name for t in c.lora if t.kind.startswith("lora_embedding")
    }
    bad = {name: n for name, n in ctx.nonfinite(loaded).items() if n}
    if bad:
        total = sum(bad.values())
        items = [f"{name} ({n})" for name, n in sorted(bad.items())]
        yield Hit(f"{total} NaN/Inf value(s) in {len(bad)} tensor(s): {_names(items)}", WEIGHTS)
