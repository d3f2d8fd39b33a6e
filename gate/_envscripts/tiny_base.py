"""Build or re-save tiny random base models (runs inside an isolated env with transformers).

Tests need bases of several architectures and no model hub is reachable, so this
builds them from a config with random weights, borrowing the tokenizer (and its
chat template) of a local model directory::

    python tiny_base.py build ARCH OUT --tokenizer DIR [--seed N]
    python tiny_base.py resave SRC OUT

``resave`` loads a model directory and saves it again with this environment's
transformers: the same weights as another version writes them. The last stdout
line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: Small enough to build in seconds; each keeps the trait the tests need of its family.
_COMMON: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 2048,
}
ARCHS: dict[str, tuple[str, dict[str, Any]]] = {
    # GQA: 4 query heads share 2 key/value heads
    "llama": ("llama", {"num_key_value_heads": 2, "tie_word_embeddings": False}),
    "mistral": ("mistral", {"num_key_value_heads": 2, "sliding_window": None, "tie_word_embeddings": False}),
    # attention bias and tied embeddings (no lm_head.weight)
    "qwen2": ("qwen2", {"num_key_value_heads": 2, "tie_word_embeddings": True}),
    # fused qkv_proj and gate_up_proj
    "phi3": ("phi3", {"num_key_value_heads": 4, "tie_word_embeddings": False}),
    "gemma2": ("gemma2", {"num_key_value_heads": 2, "head_dim": 16}),
    "gemma3": ("gemma3_text", {"num_key_value_heads": 2, "head_dim": 16}),
    # experts and a shared expert with other shapes
    "qwen2_moe": (
        "qwen2_moe",
        {
            "num_key_value_heads": 2,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "shared_expert_intermediate_size": 96,
            "tie_word_embeddings": False,
        },
    ),
    "mixtral": (
        "mixtral",
        {
            "num_key_value_heads": 2,
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
            "tie_word_embeddings": False,
        },
    ),
}


def _build(arch: str, out: Path, tokenizer_dir: Path, seed: int) -> dict[str, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    model_type, extra = ARCHS[arch]
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    special = {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    }
    config = AutoConfig.for_model(model_type, vocab_size=len(tok), **_COMMON, **extra, **special)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"arch": arch, "architecture": config.architectures[0] if config.architectures else None}


def _resave(src: Path, out: Path) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src, dtype="auto")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return {"resaved": str(src)}


def main(argv: list[str]) -> int:
    import transformers

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("arch", choices=sorted(ARCHS))
    b.add_argument("out", type=Path)
    b.add_argument("--tokenizer", type=Path, required=True)
    b.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("resave")
    r.add_argument("src", type=Path)
    r.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "build":
        summary = _build(args.arch, args.out, args.tokenizer, args.seed)
    else:
        summary = _resave(args.src, args.out)
    summary["transformers"] = transformers.__version__
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
