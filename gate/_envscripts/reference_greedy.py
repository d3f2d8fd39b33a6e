"""Teacher-forced parity reference from transformers + PEFT (runs inside gate's "reference" environment).

usage: python reference_greedy.py REQUEST.json RESULT.json     one request, then exit
       python reference_greedy.py --serve BASE_DIR DTYPE       one JSON request per stdin line,
                                                               one JSON result per stdout line

REQUEST: {"base_dir": str, "adapter_dir": str | null, "dtype": "float32" | "bfloat16",
          "prompts": [{"name": str, "messages": [...] | "text": str, "token_ids": [int, ...]}]}
RESULT:  {"prompts": [{"name", "prompt_token_ids", "positions": [{"token_id", "logprob",
          "best_id", "best_logprob"}]}], "versions": {...}, "seconds": float}
         or {"error": str} in serve mode.

The reference does not generate: it scores the server's own greedy tokens
(``token_ids``) given the prompt, rendered with the BASE tokenizer's chat template
as vLLM does and tokenized without extra special tokens, and reports for each
position the log-prob of the server's token and of its own best token. So every
position is judged on its own (no cascade after one numerical tie), and nothing
is read from ``generation_config.json``. In serve mode the base is loaded once and
each request's adapter is applied, used and removed again. Weights are read with
safetensors only (never unpickled).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def _threads() -> int:
    """CPU threads for the forward passes: half the cores, at most 4 (``GATE_REFERENCE_THREADS`` overrides).

    The reference runs beside a vLLM server that keeps its own threads busy on the same cores.
    Oversubscribed OpenMP threads spin against each other: on 2 busy cores a 40-token forward
    of a 135M model took 8-13 s with 2 threads and 0.9 s with 1 (measured).
    """
    wanted = os.environ.get("GATE_REFERENCE_THREADS", "")
    if wanted.isdigit() and int(wanted) > 0:
        return min(int(wanted), 64)
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def _load_base(base_dir: str, dtype_name: str) -> tuple[Any, Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(_threads())
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype, use_safetensors=True).to(device)
    model.eval()
    return tokenizer, model, device


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def _score(tokenizer: Any, model: Any, device: str, request: dict[str, Any]) -> dict[str, Any]:
    import torch

    started = time.monotonic()
    adapter_dir = request.get("adapter_dir")
    scored_model = model
    if adapter_dir:
        from peft import PeftModel

        scored_model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)
        scored_model.eval()
    try:
        answers = []
        for prompt in request["prompts"]:
            if "text" in prompt:  # a raw prompt (the pool's canary), not a chat
                text = prompt["text"]
            else:
                text = tokenizer.apply_chat_template(
                    prompt["messages"], add_generation_prompt=True, tokenize=False
                )
            context = tokenizer(text, add_special_tokens=False)["input_ids"]
            answer = [int(t) for t in prompt["token_ids"]]
            positions = []
            if answer:
                ids = torch.tensor([context + answer], device=device)
                with torch.no_grad():
                    logits = scored_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                for i, token in enumerate(answer):
                    row = logprobs[len(context) + i - 1]
                    best = int(torch.argmax(row))
                    positions.append(
                        {
                            "token_id": token,
                            "logprob": float(row[token]),
                            "best_id": best,
                            "best_logprob": float(row[best]),
                        }
                    )
            answers.append({"name": prompt["name"], "prompt_token_ids": context, "positions": positions})
    finally:
        if adapter_dir:
            # Remove the LoRA layers again: the next request scores on the bare base.
            scored_model.unload()
    return {
        "prompts": answers,
        "versions": _versions(),
        "dtype": request.get("dtype", "float32"),
        "seconds": round(time.monotonic() - started, 3),
    }


def _serve(base_dir: str, dtype: str) -> int:
    tokenizer, model, device = _load_base(base_dir, dtype)
    print(json.dumps({"ready": True, "device": device, "versions": _versions()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            result = _score(tokenizer, model, device, json.loads(line))
        except Exception as e:  # one bad adapter must not end the warm process
            result = {"error": f"{type(e).__name__}: {e}"[:2000]}
        print(json.dumps(result), flush=True)
    return 0


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        return _serve(sys.argv[2], sys.argv[3])
    request_path, result_path = sys.argv[1], sys.argv[2]
    with open(request_path, encoding="utf-8") as fh:
        request = json.load(fh)
    started = time.monotonic()
    tokenizer, model, device = _load_base(request["base_dir"], request.get("dtype", "float32"))
    result = _score(tokenizer, model, device, request)
    result["seconds"] = round(time.monotonic() - started, 2)
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
