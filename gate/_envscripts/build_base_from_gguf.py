"""Build a Hugging Face model directory from a GGUF file.

Runs inside gate's isolated ``base`` environment (torch, transformers, gguf);
never imported by gate's core. Usage::

    python build_base_from_gguf.py GGUF_FILE OUT_DIR [--dtype bfloat16]

transformers loads a GGUF checkpoint as a "quantized" model that refuses
``save_pretrained``, so the weights are copied into a fresh model built from the
same config without ``quantization_config``. The GGUF tokenizer conversion also
loses the end-of-turn token: SmolLM2's GGUF says EOS is id 2 (``<|im_end|>``) but
the converted tokenizer reports ``<|im_start|>`` and no pad token. Both are
repaired from the GGUF metadata itself, not from hard-coded names.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _gguf_special_ids(gguf_path: Path) -> dict[str, int]:
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    ids: dict[str, int] = {}
    for key in ("bos", "eos", "padding", "unknown"):
        field = reader.fields.get(f"tokenizer.ggml.{key}_token_id")
        if field is not None:
            ids[key] = int(field.parts[field.data[0]][0])
    return ids


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("gguf")
    parser.add_argument("out")
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    gguf_path = Path(args.gguf).resolve()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    print(f"loading {gguf_path.name}", flush=True)
    quantized = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    print(f"loaded in {time.monotonic() - t0:.1f}s", flush=True)

    config = AutoConfig.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    dtype = getattr(torch, args.dtype)
    config.dtype = dtype
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    # Tied embeddings legitimately appear as "missing" lm_head.weight.
    missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        print(f"state dict mismatch: missing={missing} unexpected={unexpected}", file=sys.stderr)
        return 1
    model = model.to(dtype)

    special = _gguf_special_ids(gguf_path)
    vocab_by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    if "eos" in special:
        tokenizer.eos_token = vocab_by_id[special["eos"]]
    if "bos" in special:
        tokenizer.bos_token = vocab_by_id[special["bos"]]
    pad_id = special.get("padding", special.get("eos"))
    if pad_id is not None:
        tokenizer.pad_token = vocab_by_id[pad_id]
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.bos_token_id = tokenizer.bos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )

    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    # transformers records how *this* process loaded the files (offline or not);
    # those keys would make the base identity depend on the caller's environment.
    tc_path = out / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    for volatile in ("is_local", "local_files_only"):
        tc.pop(volatile, None)
    tc_path.write_text(json.dumps(tc, indent=2, ensure_ascii=False) + "\n")
    summary = {
        "eos_token": tokenizer.eos_token,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token": tokenizer.pad_token,
        "bos_token": tokenizer.bos_token,
        "vocab_size": len(tokenizer),
        "dtype": args.dtype,
        "seconds": round(time.monotonic() - t0, 1),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
