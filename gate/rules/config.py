"""Rules about adapter_config.json: required fields, rank limits, features vLLM refuses or mishandles."""

from __future__ import annotations

from collections.abc import Iterator

from gate.rules import CheckContext, Hit, rule
from gate.rules._config_read import (
    _cfg,
    _module_hint,
    _pattern,
    _rank,
    _server_for,
    _short,
    lora_modules,
    needed_max_lora_rank,
    patterns,
    targeted_modules,
)
from gate.rules._context import ADAPTER_CONFIG
from gate.rules._regex import MAX_PATTERN_KEYS, compile_pattern
from gate.vllm_support import EMBEDDING_MODULES, SILENT_BEFORE, oldest_before, versions_text

__all__ = ["lora_modules", "needed_max_lora_rank", "patterns", "targeted_modules"]

_REQUIRED = ("r", "lora_alpha", "target_modules")
_UNSUPPORTED_INIT = ("pissa", "olora", "corda", "loftq")


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


@rule(
    "adapter.modules-to-save",
    "error",
    title="modules_to_save (full copies of layers such as lm_head / embed_tokens)",
    hint="train without modules_to_save (no resize_vocab / new special tokens), or merge the model instead",
)
def _modules_to_save(ctx: CheckContext) -> Iterator[Hit]:
    cfg = _cfg(ctx)
    value = cfg.get("modules_to_save") if cfg else None
    if value:
        yield Hit(
            f"modules_to_save={_short(value)}: vLLM refuses it ('vLLM only supports modules_to_save being "
            f"None' for causal LMs)",
            ADAPTER_CONFIG,
        )


@rule("adapter.dora", "error", title="DoRA (use_dora)", hint="retrain as plain LoRA (use_dora: false)")
def _dora(ctx: CheckContext) -> Iterator[Hit]:
    cfg = _cfg(ctx)
    if cfg and cfg.get("use_dora"):
        yield Hit("use_dora is true: vLLM refuses it ('vLLM does not yet support DoRA')", ADAPTER_CONFIG)


@rule("adapter.bias", "error", title="bias other than 'none'", hint="retrain with bias: 'none'")
def _bias(ctx: CheckContext) -> Iterator[Hit]:
    cfg = _cfg(ctx)
    bias = cfg.get("bias") if cfg else None
    if bias not in (None, "none"):
        yield Hit(f"bias={_short(bias)}: vLLM refuses it ('Adapter bias is not supported')", ADAPTER_CONFIG)


@rule(
    "adapter.lora-bias", "error", title="lora_bias (a bias on lora_B)", hint="retrain with lora_bias: false"
)
def _lora_bias(ctx: CheckContext) -> Iterator[Hit]:
    cfg = _cfg(ctx)
    if not (cfg and cfg.get("lora_bias")):
        return
    old = oldest_before(ctx.contract, "lora_bias")
    how = f"vLLM {old} does not check it and drops the bias" if old else "vLLM refuses it"
    yield Hit(f"lora_bias is true: {how}", ADAPTER_CONFIG)


@rule(
    "adapter.init-unsupported",
    "error",
    title="PiSSA / OLoRA / CorDA / LoftQ initialisation (the adapter assumes a modified base)",
    hint="retrain with the default init, or convert the adapter to plain LoRA (PEFT's path_initial_model_for_"
    "weight_conversion / LLaMA-Factory's pissa_converted output)",
)
def _init(ctx: CheckContext) -> Iterator[Hit]:
    cfg = _cfg(ctx)
    init = cfg.get("init_lora_weights") if cfg else None
    if not (isinstance(init, str) and init.lower().startswith(_UNSUPPORTED_INIT)):
        return
    old = oldest_before(ctx.contract, "init_lora_weights")
    if old is not None:
        how = (
            f"vLLM {old} accepts it and would serve silently wrong weights (the adapter expects a residual "
            f"base); vLLM >= {SILENT_BEFORE['init_lora_weights']} refuses it"
        )
    else:
        how = f"vLLM refuses it ('vLLM does not support init_lora_weights={init}')"
    yield Hit(f"init_lora_weights={init!r}: {how}", ADAPTER_CONFIG)


@rule(
    "adapter.unsupported-variant",
    "error",
    title="a LoRA variant vLLM does not serve (aLoRA, layer_replication, QALoRA, trainable tokens)",
    hint="retrain as plain LoRA without the variant",
)
def _variant(ctx: CheckContext) -> Iterator[Hit]:
    cfg = _cfg(ctx)
    if cfg is None:
        return
    for key, name in (
        ("alora_invocation_tokens", "aLoRA"),
        ("layer_replication", "layer_replication"),
        ("use_qalora", "QALoRA"),
        ("trainable_token_indices", "trainable tokens"),
    ):
        if cfg.get(key):
            yield Hit(f"{key} is set ({name}): vLLM does not support it", ADAPTER_CONFIG)


@rule(
    "adapter.policy-forbidden",
    "error",
    title="a feature the contract forbids (adapter.forbidden_features)",
    hint="retrain without it, or change the contract's adapter.forbidden_features",
)
def _policy(ctx: CheckContext) -> Iterator[Hit]:
    cfg = _cfg(ctx)
    if cfg is None:
        return
    forbidden = set(ctx.contract.adapter.forbidden_features)
    if "use_rslora" in forbidden and cfg.get("use_rslora"):
        yield Hit("use_rslora is true; the contract forbids rsLoRA", ADAPTER_CONFIG)
    if "layers_to_transform" in forbidden and cfg.get("layers_to_transform") is not None:
        yield Hit("layers_to_transform is set; the contract forbids partial-layer adapters", ADAPTER_CONFIG)
    targets = cfg.get("target_modules")
    names = targets if isinstance(targets, list) else [targets]
    if "embedding_lora" in forbidden and any(str(t).split(".")[-1] in EMBEDDING_MODULES for t in names):
        yield Hit(
            "target_modules includes embed_tokens/lm_head; the contract forbids embedding LoRA",
            ADAPTER_CONFIG,
        )


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
