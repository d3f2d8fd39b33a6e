"""Toolkit plugins for ``gate train``: LLaMA-Factory, Axolotl and Unsloth.

Each plugin subclasses :class:`gate.training.Trainer` and is registered under the
``gate.trainers`` entry-point group (see pyproject.toml); a fourth toolkit joins
from its own distribution the same way::

    [project.entry-points."gate.trainers"]
    mytoolkit = "mypackage.trainer:MyTrainer"

Nothing here imports a toolkit: toolkits run in their own environments as
subprocesses (scripts under ``trainers/_scripts/``).
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["dump_yaml", "merge_overrides"]


def merge_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the spec's raw override keys merged in last (nested mappings merged)."""
    merged = dict(config)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overrides(merged[key], value)
        else:
            merged[key] = value
    return merged


def dump_yaml(config: dict[str, Any], header: str) -> str:
    """A native YAML config with a comment header saying where it came from."""
    lines = "".join(f"# {h}\n" for h in header.splitlines())
    return lines + yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True)
