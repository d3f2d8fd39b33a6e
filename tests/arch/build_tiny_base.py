"""Build one tiny base model of a given architecture (runs inside gate's "reference" environment).

usage: python build_tiny_base.py REQUEST.json OUT_DIR

REQUEST: {"arch": "mistral" | "qwen2" | "phi3" | "gemma2" | "qwen2_moe",
          "tokenizer_dir": str, "seed": int, "steps": int,
          "conversations": [[{"role", "content"}, ...], ...]}

The weights start random (seeded) and are then fitted for a few steps on the
given conversations, so that the model answers them and closes its turn with
the tokenizer's EOS: a purely random model never stops, and a smoke test of it
could prove nothing about stop tokens. The tokenizer, its chat template and
EOS are SmolLM2's real ones (vocabulary 49152), copied from ``tokenizer_dir``.
The last line of stdout is a JSON summary.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

VOCAB = 49152
#: One small shape for every architecture: 2 layers, hidden 128, 2 query heads sharing 1 KV head
#: (grouped-query attention), head_dim 64 (a size every vLLM CPU attention backend takes).
COMMON: dict[str, Any] = {
    "vocab_size": VOCAB,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 2048,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
}


def make_config(arch: str) -> Any:
    """The transformers config of the tiny base for ``arch``."""
    import transformers as t

    if arch == "mistral":
        return t.MistralConfig(**COMMON, head_dim=64, sliding_window=None, tie_word_embeddings=False)
    if arch == "qwen2":
        # Qwen2 has q/k/v biases by construction; tied embeddings as in the small Qwen2 models.
        return t.Qwen2Config(**COMMON, tie_word_embeddings=True, use_sliding_window=False)
    if arch == "phi3":
        # Fused projections: qkv_proj and gate_up_proj.
        return t.Phi3Config(**COMMON, tie_word_embeddings=False, rope_scaling=None)
    if arch == "gemma2":
        return t.Gemma2Config(
            **COMMON,
            head_dim=64,
            query_pre_attn_scalar=64,
            sliding_window=512,
            tie_word_embeddings=True,
        )
    if arch == "qwen2_moe":
        return t.Qwen2MoeConfig(
            **COMMON,
            moe_intermediate_size=64,
            shared_expert_intermediate_size=128,
            num_experts=4,
            num_experts_per_tok=2,
            decoder_sparse_step=1,
            tie_word_embeddings=False,
        )
    raise SystemExit(f"unknown architecture {arch!r}")


#: The modules a clean adapter targets: what vLLM wraps with LoRA for each architecture
#: (Phi-3's are fused; the MoE's routed experts are fused 3-D parameters, not linear modules).
TARGETS: dict[str, list[str]] = {
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2_moe": ["q_proj", "k_proj", "v_proj", "o_proj"],
}

#: Adapters saved by PEFT itself: name -> LoraConfig arguments on top of the clean adapter's.
PEFT_FAULTS: dict[str, dict[str, Any]] = {
    "rank-above-max": {"r": 32, "lora_alpha": 64},
    "dora": {"use_dora": True},
    "bias": {"bias": "all"},
    "modules-to-save": {"modules_to_save": ["lm_head"]},
    "lm-head-lora": {"extra_targets": ["lm_head"]},
    "embed-lora": {"extra_targets": ["embed_tokens"]},
}


def build_adapters(request: dict[str, Any], arch: str, base_dir: str, out_dir: str) -> dict[str, Any]:
    """The clean adapter (a few training steps) and the faults PEFT itself writes, for ``arch``."""
    made: dict[str, Any] = {}
    for name, extra in [("clean", {}), *PEFT_FAULTS.items()]:
        try:
            made[name] = _one_adapter(request, arch, base_dir, os.path.join(out_dir, name), name, extra)
        except Exception as e:  # PEFT refusing to write a fault is a fact to report, not a crash
            if name == "clean":
                raise
            made[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
    return made


def _one_adapter(
    request: dict[str, Any], arch: str, base_dir: str, path: str, name: str, extra: dict[str, Any]
) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    torch.manual_seed(int(request["seed"]) + 1)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    options = {k: v for k, v in extra.items() if k != "extra_targets"}
    targets = TARGETS[arch] + list(extra.get("extra_targets", []))
    lora = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": targets, **options}
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", init_lora_weights=True, **lora))
    # PEFT starts lora_B at zero (no change at all); a small random start plus a few optimizer
    # steps on the base's own conversations moves the log-probs without changing the answers.
    with torch.no_grad():
        for pname, param in model.named_parameters():
            if "lora_B" in pname or "lora_embedding_B" in pname:
                param.normal_(0.0, 0.05)
    if name == "clean":  # the faults are refused or ignored for what they are, not for their values
        batch, labels = encode(tokenizer, request["conversations"])
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=1e-3)
        model.train()
        for _ in range(3):
            optimizer.zero_grad()
            model(**batch, labels=labels).loss.backward()
            optimizer.step()
    model.eval()
    model.save_pretrained(path, safe_serialization=True)
    return {"answers": greedy(model, tokenizer, request["conversations"])} if name == "clean" else {}


def fit_base(request: dict[str, Any], arch: str, out_dir: str) -> dict[str, Any]:
    """Build, fit and save the base of ``arch``; return what it answers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    torch.manual_seed(int(request["seed"]))
    tokenizer = AutoTokenizer.from_pretrained(request["tokenizer_dir"])
    if len(tokenizer) != VOCAB:
        raise SystemExit(f"the tokenizer has {len(tokenizer)} tokens, the tiny bases are built for {VOCAB}")
    config = make_config(arch)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    batch, labels = encode(tokenizer, request["conversations"])
    optimizer = torch.optim.Adam(model.parameters(), lr=float(request["lr"]))
    model.train()
    loss = torch.tensor(float("nan"))
    steps = 0
    while steps < int(request["max_steps"]):
        steps += 1
        optimizer.zero_grad()
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        if float(loss) < float(request["target_loss"]):
            break
    model.eval()
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2).save_pretrained(out_dir)
    return {
        "architecture": type(model).__name__,
        "steps": steps,
        "final_loss": round(float(loss), 5),
        "answers": greedy(model, tokenizer, request["conversations"]),
    }


def encode(tokenizer: Any, conversations: list[list[dict[str, str]]]) -> tuple[Any, Any]:
    """The conversations as one padded batch; the loss counts only the assistant's answer and its EOS."""
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
    prompts = [
        tokenizer.apply_chat_template(c[:-1], add_generation_prompt=True, tokenize=False)
        for c in conversations
    ]
    batch = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    for row, prompt in enumerate(prompts):
        n = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        labels[row, :n] = -100
    return batch, labels


def greedy(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]]) -> list[str]:
    """Greedy answers (16 tokens at most) to each conversation's prompt."""
    import torch

    answers = []
    for conversation in conversations:
        prompt = tokenizer.apply_chat_template(conversation[:-1], add_generation_prompt=True, tokenize=False)
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=16,
                do_sample=False,
                eos_token_id=2,
                pad_token_id=2,
            )
        answers.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=False))
    return answers


def main() -> int:
    request_path, out_root = sys.argv[1], sys.argv[2]
    with open(request_path, encoding="utf-8") as fh:
        request = json.load(fh)

    import torch
    import transformers

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    summary: dict[str, Any] = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "bases": {},
    }
    for arch in request["archs"]:
        started = time.monotonic()
        base_dir = os.path.join(out_root, arch, "base")
        facts = fit_base(request, arch, base_dir)
        facts["adapters"] = build_adapters(request, arch, base_dir, os.path.join(out_root, arch, "adapters"))
        facts["seconds"] = round(time.monotonic() - started, 2)
        summary["bases"][arch] = facts
        print(json.dumps({arch: facts}), file=sys.stderr, flush=True)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
