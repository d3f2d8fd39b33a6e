"""Rules about adapter_config.json itself: required fields, value types and ranges, regexes, peft_type."""

from __future__ import annotations

from collections.abc import Iterator

from gate.rules import CheckContext, Hit, rule
from gate.rules._config_read import _cfg, _short, patterns
from gate.rules._context import ADAPTER_CONFIG
from gate.rules._regex import MAX_PATTERN_KEYS, compile_pattern

_REQUIRED = ("r", "lora_alpha", "target_modules")


@rule(
    "config.missing-fields",
    "error",
    title="adapter_config.json lacks r, lora_alpha or target_modules",
    hint="save the adapter with PEFT's save_pretrained; vLLM needs r, lora_alpha and target_modules",
)
def _missing(ctx: CheckContext) -> Iterator[Hit]:
    cfg = _cfg(ctx)
    if cfg is None:
        return
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        yield Hit(f"missing required field(s) {', '.join(missing)}: vLLM refuses the adapter", ADAPTER_CONFIG)


@rule(
    "config.invalid-value",
    "error",
    title="a field of adapter_config.json has a value of the wrong type or range",
    hint="fix the field (r: positive integer, lora_alpha: number, target_modules: list of names or a regex)",
)
def _invalid(ctx: CheckContext) -> Iterator[Hit]:
    cfg = _cfg(ctx)
    if cfg is None:
        return
    r = cfg.get("r")
    if "r" in cfg and not (isinstance(r, int) and not isinstance(r, bool) and r > 0):
        yield Hit(f"r must be a positive integer (got {_short(r)}): vLLM refuses it", ADAPTER_CONFIG)
    alpha = cfg.get("lora_alpha")
    if "lora_alpha" in cfg and (isinstance(alpha, bool) or not isinstance(alpha, int | float) or alpha <= 0):
        yield Hit(f"lora_alpha must be a positive number (got {_short(alpha)})", ADAPTER_CONFIG)
    targets = cfg.get("target_modules")
    ok_list = isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets)
    if "target_modules" in cfg and not (ok_list or (isinstance(targets, str) and targets)):
        yield Hit(
            f"target_modules must be a non-empty list of names or a regex (got {_short(targets)})",
            ADAPTER_CONFIG,
        )
    if isinstance(targets, str) and targets != "all-linear":
        invalid = compile_pattern(targets).invalid
        if invalid:
            yield Hit(f"target_modules {_short(targets)} is not a valid regex ({invalid})", ADAPTER_CONFIG)
    for key in ("rank_pattern", "alpha_pattern"):
        value = cfg.get(key)
        if value is not None and not (
            isinstance(value, dict)
            and all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in value.values())
        ):
            yield Hit(
                f"{key} must map module patterns to positive numbers (got {_short(value)})", ADAPTER_CONFIG
            )
        table = patterns(ctx, key)
        for bad, why in (table.refused if table else ())[:3]:
            if compile_pattern(bad).invalid:
                yield Hit(f"{key} key {_short(bad)} is not a valid regex ({why})", ADAPTER_CONFIG)


def _regex_hint(ctx: CheckContext) -> str:
    """The rule's hint with two of this base's module names (not another base's q_proj / v_proj)."""
    names = sorted(ctx.contract.adapter.allowed_target_modules)[:2]
    return (
        f"name the modules as a list (target_modules: [{', '.join(names)}]) or use a plain pattern such "
        f"as '.*\\.({'|'.join(names)})'; rank_pattern keys should be module names"
    )


@rule(
    "config.regex-unsafe",
    "error",
    title="a regex in adapter_config.json that a backtracking engine (PEFT's, vLLM's) could hang on",
    hint="name the base's modules as a list (target_modules: [...]) or a plain alternation of their names; "
    "rank_pattern keys should be module names",
)
def _regex_unsafe(ctx: CheckContext) -> Iterator[Hit]:
    cfg = _cfg(ctx)
    if cfg is None:
        return
    targets = cfg.get("target_modules")
    if isinstance(targets, str) and targets != "all-linear":
        hazard = compile_pattern(targets).hazard
        if hazard:
            yield Hit(
                f"target_modules regex {_short(targets)} {hazard}: PEFT and vLLM match it with Python's re "
                f"against every module name and can hang; gate did not evaluate it",
                ADAPTER_CONFIG,
                _regex_hint(ctx),
            )
    for key in ("rank_pattern", "alpha_pattern"):
        value = cfg.get(key)
        if isinstance(value, dict) and len(value) > MAX_PATTERN_KEYS:
            yield Hit(
                f"{key} has {len(value)} keys (gate evaluates at most {MAX_PATTERN_KEYS}): each is a regex "
                f"PEFT tries against every module; it was not evaluated",
                ADAPTER_CONFIG,
                _regex_hint(ctx),
            )
            continue
        table = patterns(ctx, key)
        hazards = [(k, why) for k, why in (table.refused if table else ()) if not compile_pattern(k).invalid]
        for bad, why in hazards[:3]:
            yield Hit(
                f"{key} key {_short(bad)} {why}: PEFT matches it with Python's re against every module "
                f"name and can hang; gate did not evaluate it",
                ADAPTER_CONFIG,
                _regex_hint(ctx),
            )


@rule(
    "config.peft-type",
    "error",
    title="the adapter is not a LoRA adapter (peft_type)",
    hint="vLLM serves LoRA adapters only; train with peft_type LORA",
)
def _peft_type(ctx: CheckContext) -> Iterator[Hit]:
    cfg = _cfg(ctx)
    kind = cfg.get("peft_type") if cfg else None
    if kind is not None and kind != "LORA":
        yield Hit(
            f"peft_type is {_short(kind)}; vLLM would try to read it as LoRA and fail or misbehave",
            ADAPTER_CONFIG,
        )
