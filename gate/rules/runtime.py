"""Rules about the serving runtime itself: a contract whose vLLM versions serve no LoRA on its base."""

from __future__ import annotations

from collections.abc import Iterator

from gate.rules import CheckContext, Hit, rule
from gate.vllm_support import lora_support


@rule(
    "runtime.lora-unserved",
    "error",
    title="the contract's vLLM versions serve no LoRA on its base's architecture (serving.lora_support)",
    hint="serve this base with a runtime version that serves LoRA on it (serving.vllm_version), or merge "
    "the adapter into the base",
)
def _unserved(ctx: CheckContext) -> Iterator[Hit]:
    support = lora_support(ctx.contract)
    if not support.served:
        spec = ctx.contract.base_model
        yield Hit(
            f"{spec.name}: {support.reason}" + (f" [source: {support.source}]" if support.source else ""),
            str(ctx.contract.source_path.name),
            f"no adapter of {spec.name} releases under vLLM {ctx.contract.serving.vllm_version}; pick "
            f"serving.vllm_version a runtime that serves LoRA on {spec.architecture}, or merge the adapter",
        )
