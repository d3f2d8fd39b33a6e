"""Train a LoRA adapter with Unsloth (FastLanguageModel + TRL's SFTTrainer).

Runs INSIDE gate's Unsloth environment, never imported by gate. The native
config is a JSON file (unsloth.json in the run directory); repeat by hand with:

    python train_unsloth.py unsloth.json

Examples are rendered with the tokenizer's own chat template (the base's, or
the spec's template file): unlike Unsloth's notebooks, get_chat_template is
only called when the config names one (``chat_template``), because it replaces
the template and pad token the server will not use. Loss is on the last
assistant turn only.
"""

from __future__ import annotations

import json
import os
import sys

KNOWN_KEYS = {
    "model_dir", "data_file", "output_dir", "max_seq_length", "device", "lora", "training",
    "chat_template", "sft", "peft",
}  # fmt: skip


def _event(payload: dict) -> None:
    print("GATE_EVENT " + json.dumps(payload), flush=True)


def main(config_path: str) -> int:
    with open(config_path, encoding="utf-8") as fh:
        cfg = json.load(fh)
    unknown = sorted(set(cfg) - KNOWN_KEYS)
    if unknown:
        print(
            f"error: unknown key(s) in {config_path}: {unknown}; known: {sorted(KNOWN_KEYS)}", file=sys.stderr
        )
        return 2
    cuda = cfg["device"] == "cuda"
    import torch
    import unsloth  # noqa: F401  (must be imported before transformers/trl to patch them)
    from datasets import Dataset
    from transformers import TrainerCallback, set_seed
    from trl import SFTConfig, SFTTrainer
    from unsloth import FastLanguageModel

    lora, t = cfg["lora"], cfg["training"]
    set_seed(t["seed"])
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=cfg["model_dir"],
        max_seq_length=cfg["max_seq_length"],
        dtype=None if cuda else torch.float32,
        load_in_4bit=False,
        local_files_only=True,
    )
    if cfg.get("chat_template"):
        from unsloth.chat_templates import get_chat_template

        tokenizer = get_chat_template(tokenizer, chat_template=cfg["chat_template"])
    model = FastLanguageModel.get_peft_model(
        model,
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora["target_modules"],
        bias="none",
        use_gradient_checkpointing="unsloth" if cuda else False,
        random_state=t["seed"],
        **cfg.get("peft", {}),
    )

    def encode(messages: list[dict]) -> dict:
        prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        if not full.startswith(prompt):
            raise SystemExit(
                "error: the chat template does not render the prompt as a prefix of the conversation"
            )
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
        ids = (p_ids + c_ids)[: cfg["max_seq_length"]]
        labels = ([-100] * len(p_ids) + c_ids)[: cfg["max_seq_length"]]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}

    with open(cfg["data_file"], encoding="utf-8") as fh:
        rows = [encode(json.loads(line)["messages"]) for line in fh if line.strip()]
    dataset = Dataset.from_list(rows)

    class Events(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
            payload = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
            payload["step"] = state.global_step
            if cuda:
                payload["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated()
            _event(payload)

    length = {"max_steps": t["max_steps"]} if t.get("max_steps") else {"num_train_epochs": t["epochs"]}
    args = SFTConfig(
        output_dir=cfg["output_dir"],
        per_device_train_batch_size=t["batch_size"],
        gradient_accumulation_steps=t["grad_accum"],
        learning_rate=t["lr"],
        lr_scheduler_type=t["lr_scheduler"],
        warmup_steps=t["warmup_steps"],
        weight_decay=t["weight_decay"],
        seed=t["seed"],
        data_seed=t["seed"],
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        bf16=cuda,
        fp16=False,
        use_cpu=not cuda,
        max_length=cfg["max_seq_length"],
        packing=False,
        dataset_num_proc=1,
        optim="adamw_torch",
        include_num_input_tokens_seen="non_padding",
        **length,
        **cfg.get("sft", {}),
    )
    trainer = SFTTrainer(
        model=model, processing_class=tokenizer, train_dataset=dataset, args=args, callbacks=[Events()]
    )
    trainer.train()
    model.save_pretrained(cfg["output_dir"], safe_serialization=True)
    tokenizer.save_pretrained(cfg["output_dir"])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    sys.exit(main(sys.argv[1]))
