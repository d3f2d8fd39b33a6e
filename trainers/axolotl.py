"""Axolotl plugin: a YAML config for ``axolotl train``.

``chat_template: tokenizer_default`` renders the examples with the base
tokenizer's own template and saves that same template with the adapter. On a
host without CUDA the plugin turns off Axolotl's Triton LoRA kernels and mixed
precision (Axolotl enables them by default and they need a GPU).
"""

from __future__ import annotations

from typing import Any, ClassVar

from gate.envs import Env, EnvSpec
from gate.spec import TrainSpec
from gate.training import Breaks, Host, PlannedChange, RunContext, Trainer
from trainers import dump_yaml, merge_overrides
from trainers._envs import axolotl_env

__all__ = ["AxolotlTrainer"]

_CPU_OFF = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel")

_RISKY: dict[str, tuple[Breaks, str]] = {
    "chat_template_jinja": ("template", "saves a different chat template in tokenizer_config.json"),
    "special_tokens": ("tokenizer", "changes special tokens (EOS/pad) of the saved tokenizer"),
    "tokens": ("vocab", "adds tokens: the embeddings are resized and saved in the adapter"),
    "added_tokens_overrides": ("tokenizer", "rewrites tokens of the saved tokenizer"),
    "lora_modules_to_save": ("adapter", "saves full modules (modules_to_save), which vLLM refuses"),
    "peft_use_dora": ("adapter", "DoRA adapters are refused by vLLM"),
    "resize_token_embeddings_to_32x": ("vocab", "resizes the embeddings (saved in the adapter)"),
}


class AxolotlTrainer(Trainer):
    """Axolotl 0.21.0 (LoRA, chat_template datasets)."""

    name: ClassVar[str] = "axolotl"
    config_filename: ClassVar[str] = "axolotl.yaml"
    dist_name: ClassVar[str] = "axolotl"

    def env_spec(self, host: Host) -> EnvSpec:
        """Axolotl 0.21.0 on Python 3.12 (PyPI's CUDA torch; it also trains on CPU)."""
        return axolotl_env(host.cuda)

    def applied_settings(self, ctx: RunContext) -> dict[str, Any]:
        """Precision, kernels and device settings chosen for the host."""
        cpu = not ctx.host.cuda
        return {
            "bf16": not cpu,
            "lora_kernels": not cpu,
            "gradient_checkpointing": not cpu,
            "chat_template": "tokenizer_default",
        }

    def native_config(self, ctx: RunContext) -> str:
        """The ``axolotl train`` YAML."""
        s = ctx.spec
        t = s.training
        cpu = not ctx.host.cuda
        config: dict[str, Any] = {
            "base_model": str(ctx.model_dir),
            "trust_remote_code": False,
            "load_in_8bit": False,
            "load_in_4bit": False,
            "adapter": "lora",
            "lora_r": s.lora.r,
            "lora_alpha": s.lora.alpha,
            "lora_dropout": s.lora.dropout,
            "lora_target_modules": list(s.lora.target_modules),
            "chat_template": "tokenizer_default",
            "datasets": [
                {
                    "path": ctx.data_file,
                    "ds_type": "json",
                    "type": "chat_template",
                    "field_messages": "messages",
                    "message_property_mappings": {"role": "role", "content": "content"},
                    "roles_to_train": ["assistant"],
                    "train_on_eos": "turn",
                }
            ],
            "dataset_prepared_path": f"{ctx.output_dir}/prepared",
            "val_set_size": 0.0,
            "output_dir": ctx.output_dir,
            "sequence_len": t.seq_len,
            "sample_packing": False,
            "pad_to_sequence_len": False,
            "micro_batch_size": t.batch_size,
            "gradient_accumulation_steps": t.grad_accum,
            "learning_rate": t.lr,
            "lr_scheduler": t.lr_scheduler,
            "warmup_steps": t.warmup_steps,
            "weight_decay": t.weight_decay,
            "optimizer": "adamw_torch",
            "seed": t.seed,
            "logging_steps": 1,
            "save_strategy": "no",
            "include_tokens_per_second": True,
            "bf16": not cpu,
            "fp16": False,
            "tf32": False,
            "gradient_checkpointing": not cpu,
            "flash_attention": False,
            "use_tensorboard": False,
            "dataset_processes": 1,
            "strict": False,
        }
        if cpu:
            config.update({k: False for k in _CPU_OFF})
        if t.max_steps is not None:
            config["max_steps"] = t.max_steps
            config["num_epochs"] = 1
        else:
            config["num_epochs"] = t.epochs
        config = merge_overrides(config, self.overrides(s))
        return dump_yaml(
            config,
            f"Axolotl config written by gate for spec '{s.name}'.\n"
            f"Repeat by hand from the run directory: axolotl train {self.config_filename}",
        )

    def command(self, env: Env, ctx: RunContext) -> list[str]:
        """``axolotl train axolotl.yaml`` (it runs ``accelerate launch``; the env's bin is on PATH)."""
        return [str(env.bin_dir / "axolotl"), "train", self.config_filename]

    def planned_changes(self, spec: TrainSpec) -> list[PlannedChange]:
        """Override keys that make Axolotl save a different template/tokenizer or unservable weights."""
        found = []
        for key, value in self.overrides(spec).items():
            if key == "chat_template" and value not in (None, "tokenizer_default"):
                found.append(
                    PlannedChange(
                        key="overrides.axolotl.chat_template",
                        what=f"chat_template={value!r} replaces the base's template in the "
                        "saved tokenizer_config.json",
                        breaks="template",
                    )
                )
            elif key in _RISKY and value not in (None, False, "", [], {}, 0):
                breaks, why = _RISKY[key]
                found.append(
                    PlannedChange(
                        key=f"overrides.axolotl.{key}", what=f"{key}={value!r}: {why}", breaks=breaks
                    )
                )
        return found
