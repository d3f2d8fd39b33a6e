"""The serving target: the base model, the runtime and its LoRA limits, what an adapter may hold."""

from __future__ import annotations

from typing import Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import Field, field_validator, model_validator

from gate.contract._section import Section
from gate.identity import require_current_format

#: The values vLLM accepts for ``--max-lora-rank`` (``config/lora.py``).
ALLOWED_MAX_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
MaxLoraRank = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]


class ModulePlacement(Section):
    """Another place a module name occurs, with its own shape (MoE experts, a shared expert)."""

    path: str = Field(
        description="full name with {layer} and, for experts, {expert} placeholders, "
        "e.g. model.layers.{layer}.mlp.experts.{expert}.gate_proj"
    )
    shape: tuple[int, int] = Field(description="[out_features, in_features] at this path")
    layers: list[int] | None = Field(default=None, description="the layers it occurs in (null: every layer)")


class BaseModelSpec(Section):
    """The base model the adapter is served on."""

    name: str
    source: str | None = Field(
        default=None,
        description="where the base is: 'builtin:smollm2', a model directory (relative to this file or "
        "absolute), or null: the directory registered under this identity with `gate base add`",
    )
    identity: str = Field(
        description="gate.identity.base_identity(), format v2: config semantics, tokenizer content, "
        "chat template and a digest of every weight tensor",
    )
    architecture: str = Field(description="config.json architectures[0], e.g. LlamaForCausalLM")
    vocab_size: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int | None = Field(default=None, gt=0)
    num_key_value_heads: int | None = Field(default=None, gt=0)
    tie_word_embeddings: bool | None = None
    num_experts: int | None = Field(
        default=None, gt=0, description="MoE: experts per layer ({expert} values)"
    )
    eos_token_ids: list[int] = Field(min_length=1)
    tokenizer_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 of the base's tokenizer.json (an adapter with the same bytes skips vocab checks)",
    )
    linear_shapes: dict[str, tuple[int, int]] = Field(
        min_length=1, description="module name -> [out_features, in_features] of the base's linear layers"
    )
    module_paths: dict[str, str] = Field(
        default_factory=dict,
        description="module name -> its path in the base with a {layer} placeholder, "
        "e.g. model.layers.{layer}.self_attn.q_proj (default: model.layers.{layer}.<module>)",
    )
    module_layers: dict[str, list[int]] = Field(
        default_factory=dict,
        description="module name -> the layers its module_paths entry occurs in (default: every layer)",
    )
    extra_placements: dict[str, list[ModulePlacement]] = Field(
        default_factory=dict,
        description="module name -> further places it occurs with their shapes (MoE experts, shared "
        "experts, the dense layers of a sparse MoE)",
    )

    @field_validator("identity")
    @classmethod
    def _identity_format(cls, v: str) -> str:
        return require_current_format(v)

    def module_path(self, module: str, layer: int) -> str:
        """The base's full name of ``module`` in ``layer`` (what adapter tensor names must match)."""
        pattern = self.module_paths.get(module, "model.layers.{layer}." + module)
        return pattern.replace("{layer}", str(layer))

    def expected_modules(self) -> dict[str, tuple[int, int]]:
        """Every full module name the contract describes -> [out_features, in_features]."""
        every = list(range(self.num_hidden_layers))
        placements = [
            (
                module,
                ModulePlacement(
                    path=self.module_paths.get(module, "model.layers.{layer}." + module),
                    shape=shape,
                    layers=self.module_layers.get(module),
                ),
            )
            for module, shape in self.linear_shapes.items()
        ] + [(module, p) for module, ps in self.extra_placements.items() for p in ps]
        out: dict[str, tuple[int, int]] = {}
        experts = list(range(self.num_experts or 0))
        for _, p in placements:
            for layer in (p.layers if p.layers is not None else every) if "{layer}" in p.path else [0]:
                path = p.path.replace("{layer}", str(layer))
                for e in experts if "{expert}" in path else [0]:
                    out[path.replace("{expert}", str(e))] = p.shape
        return out


class LoraSupport(Section):
    """Whether the admitted runtime versions serve LoRA on this base at all (``gate contract init``
    derives it from the architecture and the versions; ``gate check`` and ``gate smoke`` refuse
    every adapter of a contract that says they do not)."""

    served: bool = True
    reason: str = Field(default="", description="why not, as measured (the runtime's own error)")
    source: str = Field(default="", description="where the statement comes from (a measured run, code)")

    @model_validator(mode="after")
    def _reason_when_unserved(self) -> LoraSupport:
        if not self.served and not self.reason.strip():
            raise ValueError("served: false needs a reason (what the runtime does with a LoRA on this base)")
        return self


class ServingSpec(Section):
    """The serving runtime and its LoRA limits (vLLM engine flags)."""

    runtime: Literal["vllm"] = "vllm"
    vllm_version: str = Field(description="PEP 440 specifier of the vLLM versions served: '>=0.26,<0.33'")
    max_lora_rank: MaxLoraRank = 16
    max_loras: int = Field(default=4, ge=1)
    lora_dtype: Literal["auto", "float16", "bfloat16"] = "auto"
    max_model_len: int = Field(default=2048, gt=0)
    lora_support: LoraSupport = Field(
        default_factory=LoraSupport,
        description="whether these vLLM versions serve LoRA for this base's architecture at all",
    )

    @field_validator("vllm_version")
    @classmethod
    def _specifier(cls, v: str) -> str:
        try:
            spec = SpecifierSet(v)
        except InvalidSpecifier as e:
            raise ValueError(f"not a PEP 440 version specifier: {v!r}") from e
        if not list(spec):
            raise ValueError("must bound the vLLM versions, e.g. '>=0.26,<0.33'")
        return v

    def specifier(self) -> SpecifierSet:
        """``vllm_version`` as a :class:`SpecifierSet`."""
        return SpecifierSet(self.vllm_version)


PolicyFeature = Literal["use_rslora", "embedding_lora", "layers_to_transform"]


class AdapterRules(Section):
    """What an adapter may contain beyond what vLLM itself refuses."""

    allowed_target_modules: list[str] = Field(min_length=1)
    rank_min: int = Field(default=1, ge=1)
    rank_max: int | None = Field(default=None, ge=1, description="defaults to serving.max_lora_rank")
    max_size_bytes: int = Field(default=256 << 20, gt=0, description="total size of the adapter directory")
    forbidden_features: list[PolicyFeature] = Field(
        default_factory=list, description="features vLLM accepts but this target refuses"
    )
    require_tokenizer_match: bool = Field(
        default=True, description="added tokens / special tokens in the adapter must equal the base's"
    )
