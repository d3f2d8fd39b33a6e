"""LLaMA-Factory plugin: a YAML config for ``llamafactory-cli train``.

No ``template`` is set, so LLaMA-Factory parses the base tokenizer's own chat
template (the serving template) and neither replaces the EOS token nor the
saved template; ``resize_vocab`` stays off. A spec that overrides those keys is
flagged by ``gate preflight`` before training.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, ClassVar

from gate.envs import Env, EnvSpec
from gate.spec import TrainSpec
from gate.training import Breaks, Host, PlannedChange, RunContext, StepLoss, Trainer
from trainers import dump_yaml, merge_overrides
from trainers._envs import llamafactory_env

__all__ = ["LlamaFactoryTrainer"]

_DATASET = "gate_train"

#: Override keys that change what the adapter directory holds, and how.
_RISKY: dict[str, tuple[Breaks, str]] = {
    "template": (
        "template",
        "a named LLaMA-Factory template replaces the base's chat template (and often its EOS)",
    ),
    "resize_vocab": (
        "vocab",
        "resizes the embeddings and saves them in the adapter (vLLM refuses full embed weights)",
    ),
    "new_special_tokens": ("tokenizer", "adds tokens the serving tokenizer does not have"),
    "add_special_tokens": ("tokenizer", "adds tokens the serving tokenizer does not have"),
    "additional_target": ("adapter", "saves full modules (modules_to_save), which vLLM refuses"),
    "use_dora": ("adapter", "DoRA adapters are refused by vLLM"),
    "pissa_init": ("adapter", "PiSSA changes the base weights the adapter assumes"),
    "default_system": (
        "template",
        "trains with a default system prompt the serving template does not insert",
    ),
}


class LlamaFactoryTrainer(Trainer):
    """LLaMA-Factory 0.9.5 (SFT stage, LoRA)."""

    name: ClassVar[str] = "llamafactory"
    config_filename: ClassVar[str] = "llamafactory.yaml"
    dist_name: ClassVar[str] = "llamafactory"

    def env_spec(self, host: Host) -> EnvSpec:
        """LLaMA-Factory 0.9.5, transformers 5.6, CPU torch without a GPU."""
        return llamafactory_env(host.cuda)

    def applied_settings(self, ctx: RunContext) -> dict[str, Any]:
        """Precision and device settings chosen for the host."""
        return {
            "bf16": ctx.host.cuda,
            "use_cpu": not ctx.host.cuda,
            "weights_dtype": "bfloat16" if ctx.host.cuda else "float32",
            "gradient_checkpointing": ctx.host.cuda,
            "template": "parsed from the base tokenizer",
        }

    def model_config_updates(self, host: Host) -> dict[str, Any]:
        """On CPU, load fp32 weights: LLaMA-Factory loads the config's dtype (bf16 is slow on CPU)."""
        return {} if host.cuda else {"dtype": "float32", "torch_dtype": "float32"}

    def exact_losses(self, ctx: RunContext) -> list[StepLoss] | None:
        """Losses from LLaMA-Factory's trainer_log.jsonl (the printed log keeps 4 digits)."""
        path = self.adapter_output(ctx) / "trainer_log.jsonl"
        if not path.is_file():
            return None
        steps = []
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                row = json.loads(line)
                if row.get("loss") is not None:
                    steps.append(
                        StepLoss(
                            step=int(row["current_steps"]),
                            loss=float(row["loss"]),
                            learning_rate=row.get("lr"),
                        )
                    )
        return steps or None

    def native_config(self, ctx: RunContext) -> str:
        """The ``llamafactory-cli train`` YAML."""
        s = ctx.spec
        t = s.training
        config: dict[str, Any] = {
            "model_name_or_path": str(ctx.model_dir),
            "trust_remote_code": False,
            "stage": "sft",
            "do_train": True,
            "finetuning_type": "lora",
            "lora_rank": s.lora.r,
            "lora_alpha": s.lora.alpha,
            "lora_dropout": s.lora.dropout,
            "lora_target": ",".join(s.lora.target_modules),
            "resize_vocab": False,
            "dataset": _DATASET,
            "dataset_dir": "data",
            "cutoff_len": t.seq_len,
            "overwrite_cache": True,
            "output_dir": ctx.output_dir,
            "overwrite_output_dir": True,
            "logging_steps": 1,
            "save_strategy": "no",
            "report_to": "none",
            "disable_tqdm": True,
            "include_num_input_tokens_seen": "non_padding",
            "per_device_train_batch_size": t.batch_size,
            "gradient_accumulation_steps": t.grad_accum,
            "learning_rate": t.lr,
            "lr_scheduler_type": t.lr_scheduler,
            "warmup_steps": t.warmup_steps,
            "weight_decay": t.weight_decay,
            "seed": t.seed,
            "data_seed": t.seed,
            "bf16": ctx.host.cuda,
            "fp16": False,
            "use_cpu": not ctx.host.cuda,
            "disable_gradient_checkpointing": not ctx.host.cuda,
            "plot_loss": False,
        }
        if t.max_steps is not None:
            config["max_steps"] = t.max_steps
        else:
            config["num_train_epochs"] = t.epochs
        config = merge_overrides(config, self.overrides(s))
        return dump_yaml(
            config,
            f"LLaMA-Factory config written by gate for spec '{s.name}'.\n"
            f"Repeat by hand from the run directory: llamafactory-cli train {self.config_filename}",
        )

    def prepare(self, ctx: RunContext) -> None:
        """``data/dataset_info.json``: the snapshot as a ShareGPT-style messages dataset."""
        info = {
            _DATASET: {
                "file_name": "train.jsonl",
                "formatting": "sharegpt",
                "columns": {"messages": "messages"},
                "tags": {
                    "role_tag": "role",
                    "content_tag": "content",
                    "user_tag": "user",
                    "assistant_tag": "assistant",
                    "system_tag": "system",
                },
            }
        }
        (ctx.run_dir / "data" / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")

    def command(self, env: Env, ctx: RunContext) -> list[str]:
        """``llamafactory-cli train llamafactory.yaml``."""
        return [str(env.bin_dir / "llamafactory-cli"), "train", self.config_filename]

    def planned_changes(self, spec: TrainSpec) -> list[PlannedChange]:
        """Override keys that make LLaMA-Factory save a different template/tokenizer or unservable weights."""
        found = []
        for key, value in self.overrides(spec).items():
            if key in _RISKY and value not in (None, False, "", [], 0):
                breaks, why = _RISKY[key]
                found.append(
                    PlannedChange(
                        key=f"overrides.llamafactory.{key}", what=f"{key}={value!r}: {why}", breaks=breaks
                    )
                )
        return found
