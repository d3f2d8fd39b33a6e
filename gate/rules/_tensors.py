"""The adapter's tensors sorted by what vLLM does with them (header only; cached on the context)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gate.errors import InputError
from gate.rules import CheckContext
from gate.rules._config_read import patterns
from gate.safetensors_io import TensorInfo
from gate.vllm_support import EMBEDDING_MODULES

_PREFIX = "base_model.model."
_LORA = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B)\.weight$")
_EMBEDDING = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_embedding_A|lora_embedding_B)$")
_BASE_LAYER = re.compile(r"(^|\.)(embed_tokens|lm_head)\.base_layer\.weight$")
_SHOW = 4


@dataclass(frozen=True)
class LoraTensor:
    """One LoRA tensor: the module it adapts and which factor it is."""

    name: str
    module: str
    kind: str  # lora_A, lora_B, lora_embedding_A, lora_embedding_B
    info: TensorInfo

    @property
    def short(self) -> str:
        """The module's last name component (q_proj)."""
        return self.module.split(".")[-1]


@dataclass
class Classified:
    """The adapter's tensors, sorted by what vLLM does with them."""

    lora: list[LoraTensor] = field(default_factory=list)
    unsupported: list[tuple[str, str]] = field(default_factory=list)
    base_layer: list[str] = field(default_factory=list)
    unknown_module: list[LoraTensor] = field(default_factory=list)
    out_of_range: list[LoraTensor] = field(default_factory=list)
    unmatched: list[LoraTensor] = field(default_factory=list)
    matched: list[LoraTensor] = field(default_factory=list)
    embedding_unserved: list[LoraTensor] = field(default_factory=list)


def _why_unsupported(name: str) -> str:
    if "lora_magnitude_vector" in name:
        return "a DoRA magnitude vector"
    if "trainable_tokens_delta" in name:
        return "a trainable-tokens delta"
    if re.search(r"(^|\.)(lm_head|embed_tokens)\.weight$", name):
        return "a full embedding/lm_head layer (modules_to_save)"
    if re.search(r"\.lora_[AB]\.bias$", name):
        return "a LoRA bias"
    if re.search(r"\.lora_[AB]\.[^.]+\.weight$", name):
        return "a LoRA weight still carrying its adapter name"
    return "not a lora_A/lora_B/lora_embedding tensor"


def _layer_template(module: str) -> str:
    return re.sub(r"\.\d+\.", ".#.", module)


def classify(ctx: CheckContext) -> Classified | None:
    """Sort the adapter's tensors (cached on the context); None when there is no readable header."""
    if "weights" in ctx.memo:
        result: Classified | None = ctx.memo["weights"]
        return result
    header, _ = ctx.header
    if header is None:
        ctx.memo["weights"] = None
        return None
    out = Classified()
    base = ctx.base_linears
    templates = {_layer_template(m) for m in base}
    layers = ctx.contract.base_model.num_hidden_layers
    for name, info in header.tensors.items():
        if _BASE_LAYER.search(name):
            out.base_layer.append(name)
            continue
        m = _LORA.match(name) or _EMBEDDING.match(name)
        if m is None:
            out.unsupported.append((name, _why_unsupported(name)))
            continue
        t = LoraTensor(name, m["module"].removeprefix(_PREFIX), m["kind"], info)
        out.lora.append(t)
        if t.short in EMBEDDING_MODULES and t.short not in ctx.served_embeddings:
            out.embedding_unserved.append(t)
            continue
        if t.kind.startswith("lora_embedding"):
            continue
        if t.short not in ctx.base_linear_names:
            out.unknown_module.append(t)
        elif t.module in base:
            out.matched.append(t)
        elif _layer_template(t.module) in templates and _layer_index(t.module) >= layers:
            out.out_of_range.append(t)
        else:
            out.unmatched.append(t)
    ctx.memo["weights"] = out
    return out


def _layer_index(module: str) -> int:
    found = re.search(r"\.(\d+)\.", module)
    return int(found.group(1)) if found else -1


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (f" and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def _base_layers(ctx: CheckContext, c: Classified) -> tuple[list[str], list[str]]:
    """The base_layer tensors that would lose something (resized, retrained) and those not comparable.

    PEFT saves the frozen embedding/lm_head under ``base_layer`` whenever it targets them; vLLM
    skips these tensors, which loses nothing where they are the base's own weights.
    """
    if "weights:base-layers" in ctx.memo:
        memo: tuple[list[str], list[str]] = ctx.memo["weights:base-layers"]
        return memo
    spec = ctx.contract.base_model
    lost: list[str] = []
    unverified: list[str] = []
    base: dict[str, str] = {}
    if ctx.base_dir is not None:
        from gate.identity import compute_identity

        base = compute_identity(ctx.base_dir).tensors
    header, _ = ctx.header
    mine: dict[str, str] = {}
    for name in c.base_layer:
        info = header.tensors[name] if header is not None else None
        rows = info.shape[0] if info is not None and info.shape else None
        if info is None or tuple(info.shape) != (spec.vocab_size, spec.hidden_size):
            shape = list(info.shape) if info is not None else "?"
            lost.append(
                f"{name} is {shape}, {spec.name}'s is [{spec.vocab_size}, {spec.hidden_size}]"
                + (" (a resized vocabulary: the new tokens are lost)" if rows != spec.vocab_size else "")
            )
            continue
        module = name.removeprefix(_PREFIX).removesuffix(".base_layer.weight")
        embed = next((n for n in base if n.endswith("embed_tokens.weight")), "")
        theirs = base.get(f"{module}.weight") or (base.get(embed) if module.endswith("lm_head") else None)
        if theirs is None or not theirs.startswith(f"{info.dtype}\0") or header is None or ctx.oversize:
            unverified.append(name)
            continue
        if not mine:
            from gate.identity import _hash_shard

            try:
                mine = _hash_shard(header.path, header)
            except InputError:
                mine = {"": ""}  # unreadable data: weights.corrupt reports it
        if mine.get(name) != theirs:
            lost.append(f"{name} differs from {spec.name}'s {module} (retrained: the training is lost)")
    ctx.memo["weights:base-layers"] = (lost, unverified)
    return lost, unverified


def _silent_base(c: Classified) -> str:
    if not c.matched:
        return "; no tensor matches a module, so vLLM would load the adapter and serve base-model output"
    return "; vLLM skips them without an error"


def _like(ctx: CheckContext, short: str) -> str:
    """A full module name of the base, one of ``short`` where the base has it."""
    names = sorted(ctx.base_linears)
    return next((n for n in names if n.endswith(f".{short}")), names[0] if names else "?")


def _expected_rank(ctx: CheckContext, module: str) -> int | None:
    cfg = ctx.config.data or {}
    table = patterns(ctx, "rank_pattern")
    value = table.value(module) if table else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    r = cfg.get("r")
    return r if isinstance(r, int) and not isinstance(r, bool) and r > 0 else None
