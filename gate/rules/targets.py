"""Rules about target_modules: modules the base lacks, embeddings not served, ones the contract disallows."""

from __future__ import annotations

from collections.abc import Iterator

from gate.rules import CheckContext, Hit, rule
from gate.rules._config_read import _module_hint, _short, lora_modules, targeted_modules
from gate.rules._context import ADAPTER_CONFIG
from gate.vllm_support import versions_text


@rule(
    "adapter.target-not-in-base",
    "error",
    title="target_modules names modules the base model does not have",
    hint="train against the contract's base model, targeting modules it has",
)
def _not_in_base(ctx: CheckContext) -> Iterator[Hit]:
    matched, _ = targeted_modules(ctx)
    missing = [t for t, mods in matched.items() if not mods]
    if missing:
        names = sorted({m.split(".")[-1] for m in lora_modules(ctx)})
        yield Hit(
            f"target_modules {_short(missing)} match no module of {ctx.contract.base_model.name} (it has "
            f"{names}): the adapter was made for another architecture",
            ADAPTER_CONFIG,
            _module_hint(ctx),
        )


@rule(
    "adapter.embedding-not-served",
    "error",
    title="LoRA on embed_tokens / lm_head where the contract's vLLM versions do not serve it for this base",
    hint="retrain without embed_tokens / lm_head in target_modules, or serve an architecture and vLLM "
    "version that supports embedding LoRA",
)
def _embedding_not_served(ctx: CheckContext) -> Iterator[Hit]:
    _, embeddings = targeted_modules(ctx)
    if embeddings:
        arch = ctx.contract.base_model.architecture
        yield Hit(
            f"target_modules {_short(embeddings)}: {versions_text(ctx.contract)} does not serve "
            f"{'/'.join(sorted({e.split('.')[-1] for e in embeddings}))} LoRA for {arch} (the model class "
            f"declares no embedding modules): vLLM refuses the adapter",
            ADAPTER_CONFIG,
            _module_hint(ctx),
        )


@rule(
    "adapter.target-not-allowed",
    "error",
    title="target_modules includes modules the contract does not allow",
    hint="retrain targeting only adapter.allowed_target_modules",
)
def _not_allowed(ctx: CheckContext) -> Iterator[Hit]:
    matched, _ = targeted_modules(ctx)  # embeddings the runtime won't serve: adapter.embedding-not-served
    allowed = set(ctx.contract.adapter.allowed_target_modules)
    bad = sorted({m.split(".")[-1] for mods in matched.values() for m in mods} - allowed)
    if bad:
        yield Hit(
            f"target_modules selects {bad}; the contract allows only {sorted(allowed)}",
            ADAPTER_CONFIG,
            f"retrain targeting only {', '.join(sorted(allowed))}",
        )
