"""adapter_config.json as the rules read it: typed fields, bounded patterns, the base modules it targets."""

from __future__ import annotations

from typing import Any

from gate.contract import ALLOWED_MAX_LORA_RANKS
from gate.rules import CheckContext
from gate.rules._regex import MAX_PATTERN_KEYS, PatternTable, compile_pattern, pattern_table
from gate.vllm_support import EMBEDDING_MODULES


def _cfg(ctx: CheckContext) -> dict[str, Any] | None:
    return ctx.config.data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rank(ctx: CheckContext) -> int | None:
    cfg = _cfg(ctx)
    r = cfg.get("r") if cfg else None
    return r if isinstance(r, int) and not isinstance(r, bool) and r > 0 else None


def _pattern(ctx: CheckContext, key: str) -> dict[str, int]:
    cfg = _cfg(ctx)
    value = cfg.get(key) if cfg else None
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if _is_int(v) or isinstance(v, float)}


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def patterns(ctx: CheckContext, key: str) -> PatternTable | None:
    """rank_pattern / alpha_pattern as a bounded lookup (None: absent, malformed or too large)."""
    memo = f"pattern:{key}"
    if memo not in ctx.memo:
        cfg = _cfg(ctx)
        value = cfg.get(key) if cfg else None
        ok = isinstance(value, dict) and 0 < len(value) <= MAX_PATTERN_KEYS
        ctx.memo[memo] = pattern_table(value) if ok and isinstance(value, dict) else None
    table: PatternTable | None = ctx.memo[memo]
    return table


def needed_max_lora_rank(rank: int) -> int | None:
    """The smallest ``--max-lora-rank`` vLLM accepts that can serve ``rank`` (None: none can)."""
    return next((m for m in ALLOWED_MAX_LORA_RANKS if m >= rank), None)


def _server_for(rank: int) -> str:
    need = needed_max_lora_rank(rank)
    if need is None:
        return f"no vLLM server can serve it (the largest max_lora_rank is {ALLOWED_MAX_LORA_RANKS[-1]})"
    return f"serving it needs a server started with --max-lora-rank {need}"


def lora_modules(ctx: CheckContext) -> list[str]:
    """Full names of the base's modules the serving runtime can put a LoRA on (embeddings where served)."""
    modules = list(ctx.base_linears)
    if "embed_tokens" in ctx.served_embeddings:
        modules.append(ctx.contract.base_model.module_paths.get("embed_tokens", "model.embed_tokens"))
    return modules


def targeted_modules(ctx: CheckContext) -> tuple[dict[str, list[str]], list[str]]:
    """Each target_modules entry -> the base modules it selects; plus embeddings the runtime won't serve."""
    cfg = _cfg(ctx)
    targets = cfg.get("target_modules") if cfg else None
    modules = lora_modules(ctx)
    matched: dict[str, list[str]] = {}
    embeddings: list[str] = []
    if isinstance(targets, str):
        if targets == "all-linear":  # PEFT's all-linear leaves out the output layer and embeddings
            matched[targets] = [m for m in modules if m.split(".")[-1] not in EMBEDDING_MODULES]
        else:
            pattern = compile_pattern(targets)
            if not pattern.usable:
                return {}, []  # config.invalid-value / config.regex-unsafe report it
            matched[targets] = [m for m in modules if pattern.fullmatch(m)]
    elif isinstance(targets, list):
        for t in targets:
            if not isinstance(t, str):
                continue
            if t.split(".")[-1] in EMBEDDING_MODULES and t.split(".")[-1] not in ctx.served_embeddings:
                embeddings.append(t)
                continue
            matched[t] = [m for m in modules if m == t or m.endswith("." + t)]
    return matched, embeddings


def _module_hint(ctx: CheckContext) -> str:
    names = sorted({m.split(".")[-1] for m in lora_modules(ctx)})
    return f"train against {ctx.contract.base_model.name}: its LoRA-able modules are {', '.join(names)}"
