"""Rules about LoRA ranks: r and rank_pattern / alpha_pattern against the server's and contract's limits."""

from __future__ import annotations

from collections.abc import Iterator

from gate.rules import CheckContext, Hit, rule
from gate.rules._config_read import _cfg, _pattern, _rank, _server_for, _short
from gate.rules._context import ADAPTER_CONFIG
from gate.vllm_support import SILENT_BEFORE, oldest_before


@rule(
    "adapter.rank-above-max",
    "error",
    title="the LoRA rank r exceeds the server's max_lora_rank (or the contract's rank_max)",
    hint="retrain with r <= the contract's limit, or serve with a contract whose max_lora_rank covers r",
)
def _rank_above(ctx: CheckContext) -> Iterator[Hit]:
    r = _rank(ctx)
    contract = ctx.contract
    limit = contract.effective_rank_max
    if r is None or r <= limit:
        return
    server = contract.serving.max_lora_rank
    if r > server:
        yield Hit(
            f"r={r} is greater than max_lora_rank {server}: vLLM refuses 'LoRA rank {r} is greater than "
            f"max_lora_rank {server}'; {_server_for(r)}",
            ADAPTER_CONFIG,
        )
    else:
        yield Hit(f"r={r} exceeds the contract's adapter.rank_max {limit}", ADAPTER_CONFIG)


@rule(
    "adapter.rank-below-min",
    "error",
    title="the LoRA rank r is below the contract's rank_min",
    hint="retrain with r >= adapter.rank_min",
)
def _rank_below(ctx: CheckContext) -> Iterator[Hit]:
    r = _rank(ctx)
    if r is not None and r < ctx.contract.adapter.rank_min:
        yield Hit(
            f"r={r} is below the contract's adapter.rank_min {ctx.contract.adapter.rank_min}", ADAPTER_CONFIG
        )


@rule(
    "adapter.rank-pattern-above-max",
    "error",
    title="rank_pattern gives some module a rank above max_lora_rank",
    hint="retrain without per-module ranks above the limit (or drop rank_pattern)",
)
def _rank_pattern_above(ctx: CheckContext) -> Iterator[Hit]:
    limit = ctx.contract.effective_rank_max
    over = {k: v for k, v in _pattern(ctx, "rank_pattern").items() if v > limit}
    if not over:
        return
    old = oldest_before(ctx.contract, "rank_pattern")
    top = int(max(over.values()))
    if old is not None:
        how = (
            f"vLLM {old} ignores rank_pattern and would serve those modules with wrong shapes and scaling "
            f"without an error; vLLM >= {SILENT_BEFORE['rank_pattern']} refuses the adapter"
        )
    else:
        how = f"vLLM refuses 'LoRA rank {top} is greater than max_lora_rank'"
    yield Hit(
        f"rank_pattern {_short(over, 160)} exceeds the rank limit {limit}: {how}; {_server_for(top)}",
        ADAPTER_CONFIG,
    )


@rule(
    "adapter.rank-pattern-ignored",
    "error",
    title="rank_pattern/alpha_pattern that a vLLM version the contract admits ignores",
    hint="retrain with one r and lora_alpha for all modules, or narrow serving.vllm_version",
)
def _pattern_ignored(ctx: CheckContext) -> Iterator[Hit]:
    old = oldest_before(ctx.contract, "rank_pattern")
    cfg = _cfg(ctx)
    if old is None or cfg is None:
        return
    limit = ctx.contract.effective_rank_max
    differing = {
        key: {k: v for k, v in _pattern(ctx, key).items() if v != cfg.get(base) and v <= limit}
        for key, base in (("rank_pattern", "r"), ("alpha_pattern", "lora_alpha"))
    }
    for key, values in differing.items():
        if values:
            yield Hit(
                f"{key} {_short(values, 160)}: vLLM {old} ignores it and would serve those modules with "
                f"the global r/lora_alpha scaling: silently wrong outputs",
                ADAPTER_CONFIG,
            )
