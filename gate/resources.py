"""Paths of the data gate ships: contracts and the embedded-default example."""

from __future__ import annotations

from pathlib import Path

__all__ = ["contracts_dir", "default_contract", "examples_dir"]

_PKG = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    # A source checkout (editable install) keeps them at the repository root;
    # a wheel carries them under gate/_data.
    for candidate in (_PKG.parent / name, _PKG / "_data" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"gate's '{name}' directory is missing from this installation")


def contracts_dir() -> Path:
    """Directory of the shipped contracts and their JSON Schema."""
    return _data_dir("contracts")


def examples_dir() -> Path:
    """Directory of the shipped examples (the embedded default lives in ``smollm2/``)."""
    return _data_dir("examples")


def default_contract() -> Path:
    """The contract of the embedded default (SmolLM2 on vLLM)."""
    return contracts_dir() / "smollm2-vllm.yaml"
