"""The rules' old path of gate's vLLM table, which now lives in :mod:`gate.vllm_support`.

The table moved below the rules so that ``gate.contracts`` (contract init/verify) reads it
without importing the rule registry; this module keeps every name importable from here.
"""

from __future__ import annotations

from gate.vllm_support import (
    EMBEDDING_LORA,
    EMBEDDING_MODULES,
    LORA_UNSERVED,
    SILENT_BEFORE,
    UnservedLora,
    admitted_versions,
    lora_support,
    lora_support_for,
    oldest_before,
    served_embedding_modules,
    served_embeddings_for,
    versions_text,
)

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
