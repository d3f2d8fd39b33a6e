"""Greedy answers of the base and of a trained adapter on the held-out capitals (transformers + PEFT).

A quick look at whether an adapter learned the terse format, without a server.
Run it with an interpreter that has torch, transformers and peft (any toolkit
environment gate built), e.g.:

    ~/.cache/gate/envs/trainer-unsloth-*/bin/python examples/smollm2/greedy_heldout.py \\
        BASE_DIR RUN_DIR/adapter examples/smollm2/data/heldout.jsonl

Prints one JSON object: exact-match rates of base and adapter, and a few answers.
"""

from __future__ import annotations

import json
import sys


def main(base_dir: str, adapter_dir: str, heldout: str, limit: int = 50) -> None:
    """Score exact match of the first line of each greedy answer against the capital."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    with open(heldout, encoding="utf-8") as fh:
        rows = [json.loads(line)["messages"] for line in fh if line.strip()][:limit]

    def answers(m: torch.nn.Module) -> list[str]:
        out = []
        for messages in rows:
            ids = tok.apply_chat_template(
                messages[:-1], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            with torch.no_grad():
                gen = m.generate(**ids, max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id)
            out.append(tok.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip())
        return out

    base = answers(model)
    tuned = answers(PeftModel.from_pretrained(model, adapter_dir))
    gold = [m[-1]["content"] for m in rows]
    result = {
        "n": len(rows),
        "base_exact_match": sum(a == g for a, g in zip(base, gold, strict=True)) / len(rows),
        "adapter_exact_match": sum(a == g for a, g in zip(tuned, gold, strict=True)) / len(rows),
        "adapter_contains_answer": sum(g.lower() in a.lower() for a, g in zip(tuned, gold, strict=True))
        / len(rows),
        "samples": [
            {"q": r[-2]["content"], "base": b, "adapter": t}
            for r, b, t in list(zip(rows, base, tuned, strict=True))[:8]
        ],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:4])
