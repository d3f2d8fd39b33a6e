"""Unsloth plugin: a JSON config for gate's Unsloth script (FastLanguageModel + TRL SFTTrainer).

Unsloth has no CLI; the script ``trainers/_scripts/train_unsloth.py`` is copied
into the run directory beside its config so the run can be repeated by hand.
Unlike Unsloth's notebooks the script keeps the base's tokenizer and chat
template: ``get_chat_template`` (which replaces the template and changes the
pad token) runs only when the spec's overrides ask for it, and ``gate
preflight`` flags that.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

from gate.envs import Env, EnvSpec
from gate.spec import TrainSpec
from gate.training import Host, PlannedChange, RunContext, Trainer
from trainers import merge_overrides
from trainers._envs import unsloth_env

__all__ = ["UnslothTrainer"]

_SCRIPT = Path(__file__).parent / "_scripts" / "train_unsloth.py"


class UnslothTrainer(Trainer):
    """Unsloth 2026.10.9 with TRL's SFTTrainer."""

    name: ClassVar[str] = "unsloth"
    config_filename: ClassVar[str] = "unsloth.json"
    dist_name: ClassVar[str] = "unsloth"
    no_native_config: ClassVar[str | None] = (
        "no native config: Unsloth users write Python; unsloth.json is gate's own input to train_unsloth.py"
    )

    def env_spec(self, host: Host) -> EnvSpec:
        """Unsloth with CPU torch (torchvision removed) or CUDA torch on a GPU host."""
        return unsloth_env(host.cuda)

    def applied_settings(self, ctx: RunContext) -> dict[str, Any]:
        """Precision and device settings chosen for the host."""
        return {
            "device": "cuda" if ctx.host.cuda else "cpu",
            "dtype": "auto (bf16)" if ctx.host.cuda else "float32",
            "gradient_checkpointing": "unsloth" if ctx.host.cuda else False,
            "chat_template": "kept (tokenizer's own)",
        }

    def native_config(self, ctx: RunContext) -> str:
        """The JSON config read by train_unsloth.py."""
        s = ctx.spec
        config: dict[str, Any] = {
            "model_dir": str(ctx.model_dir),
            "data_file": ctx.data_file,
            "output_dir": ctx.output_dir,
            "max_seq_length": s.training.seq_len,
            "device": "cuda" if ctx.host.cuda else "cpu",
            "lora": s.lora.model_dump(mode="json"),
            "training": s.training.model_dump(mode="json"),
            "chat_template": None,
        }
        config = merge_overrides(config, self.overrides(s))
        return json.dumps(config, indent=2) + "\n"

    def prepare(self, ctx: RunContext) -> None:
        """Copy the training script beside its config."""
        shutil.copyfile(_SCRIPT, ctx.run_dir / _SCRIPT.name)

    def command(self, env: Env, ctx: RunContext) -> list[str]:
        """``python train_unsloth.py unsloth.json``."""
        return [str(env.python), _SCRIPT.name, self.config_filename]

    def planned_changes(self, spec: TrainSpec) -> list[PlannedChange]:
        """``chat_template`` overrides replace the template (and pad token); DoRA is unservable."""
        o = self.overrides(spec)
        found = []
        if o.get("chat_template"):
            found.append(
                PlannedChange(
                    key="overrides.unsloth.chat_template",
                    what=f"get_chat_template({o['chat_template']!r}) replaces the base's chat template "
                    "and pad token",
                    breaks="template",
                )
            )
        peft = o.get("peft") or {}
        if isinstance(peft, dict):
            for key in ("use_dora", "modules_to_save"):
                if peft.get(key):
                    found.append(
                        PlannedChange(
                            key=f"overrides.unsloth.peft.{key}",
                            what=f"{key} is refused by vLLM",
                            breaks="adapter",
                        )
                    )
        return found
