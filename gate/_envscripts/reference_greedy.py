"""Greedy reference answers from transformers + PEFT (runs inside gate's "reference" environment).

usage: python reference_greedy.py REQUEST.json RESULT.json

REQUEST: {"base_dir": str, "adapter_dir": str | null, "dtype": "float32" | "bfloat16",
          "prompts": [{"name": str, "messages": [...], "max_tokens": int}]}
RESULT:  {"prompts": [{"name", "prompt_token_ids", "token_ids", "text"}], "versions": {...}, "seconds": float}

The prompt is rendered with the BASE tokenizer's chat template, as vLLM does, and
tokenized without extra special tokens (the template already holds them).
Weights are read with safetensors only (never unpickled).
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    request_path, result_path = sys.argv[1], sys.argv[2]
    with open(request_path, encoding="utf-8") as fh:
        request = json.load(fh)
    started = time.monotonic()

    import peft
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[request.get("dtype", "float32")]
    base_dir = request["base_dir"]
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype, use_safetensors=True)
    if request.get("adapter_dir"):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, request["adapter_dir"], is_trainable=False)
    model.eval()
    generation = GenerationConfig.from_pretrained(base_dir)
    eos = generation.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    pad = generation.pad_token_id if generation.pad_token_id is not None else (eos_ids[0] if eos_ids else 0)

    answers = []
    for prompt in request["prompts"]:
        text = tokenizer.apply_chat_template(prompt["messages"], add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=int(prompt["max_tokens"]),
                do_sample=False,
                eos_token_id=eos_ids or None,
                pad_token_id=pad,
            )
        new = out[0, ids.shape[1] :].tolist()
        answers.append(
            {
                "name": prompt["name"],
                "prompt_token_ids": ids[0].tolist(),
                "token_ids": new,
                "text": tokenizer.decode(new, skip_special_tokens=False),
            }
        )
    result = {
        "prompts": answers,
        "eos_token_ids": eos_ids,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
        "dtype": request.get("dtype", "float32"),
        "seconds": round(time.monotonic() - started, 2),
    }
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
