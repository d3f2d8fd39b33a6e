"""Rules about LoRA features vLLM refuses or serves silently wrong, and those the contract forbids."""

from __future__ import annotations

from collections.abc import Iterator

from gate.rules import CheckContext, Hit, rule
from gate.rules._config_read import _cfg, _short
from gate.rules._context import ADAPTER_CONFIG
from gate.vllm_support import EMBEDDING_MODULES, SILENT_BEFORE, oldest_before

_UNSUPPORTED_INIT = ("pissa", "olora", "corda", "loftq")


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
