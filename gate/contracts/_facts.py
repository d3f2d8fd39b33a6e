"""The facts a contract states about its base, read from the base directory (no torch).

``contract init`` writes them and ``contract verify`` compares them, so both read the base
the same way: config.json for the architecture, the safetensors headers for every
LoRA-able module's path and shape, the tokenizer files for EOS and end-of-turn.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.errors import InputError
from gate.identity import base_shards, read_base_json, read_chat_template
from gate.safetensors_io import open_nofollow, read_header
from gate.vllm_support import EMBEDDING_MODULES, served_embeddings_for

__all__ = ["BaseFacts", "ModuleFact", "read_base_facts"]

#: MoE routers are linear layers vLLM does not apply LoRA to; contracts do not list them.
_ROUTERS = frozenset({"gate", "router", "shared_expert_gate"})
_LAYER = re.compile(r"^(?P<prefix>(?:[\w]+\.)*?layers)\.(?P<layer>\d+)\.(?P<rest>[\w.]+)\.weight$")
_EXPERT = re.compile(r"\bexperts\.(\d+)\.")
#: End-of-turn markers of common chat templates, tried after the EOS tokens themselves.
_TURN_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")


@dataclass(frozen=True)
class ModuleFact:
    """One place a module name occurs: its path template, shape and layers."""

    module: str
    path: str
    shape: tuple[int, int]
    layers: tuple[int, ...] | None  # None: every layer, or a module outside the layers


@dataclass(frozen=True)
class BaseFacts:
    """What a contract says about its base, as read from the base directory."""

    base_dir: Path
    architecture: str
    model_type: str | None
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int | None
    num_key_value_heads: int | None
    tie_word_embeddings: bool | None
    num_experts: int | None
    eos_token_ids: tuple[int, ...]
    end_of_turn: str | None
    tokenizer_sha256: str | None
    chat_template: str | None
    #: module name -> its placements, the primary (most layers, then shortest path) first
    modules: dict[str, list[ModuleFact]] = field(default_factory=dict)
    bos_token: str | None = None

    @property
    def chat_template_sha256(self) -> str | None:
        """sha256 of the template text (what ``prompt.chat_template_sha256`` pins)."""
        return (
            hashlib.sha256(self.chat_template.encode()).hexdigest()
            if self.chat_template is not None
            else None
        )

    def lora_modules(self, vllm_version: str) -> dict[str, list[ModuleFact]]:
        """The modules a contract for ``vllm_version`` lists: layer linears, and the embeddings it serves."""
        served = served_embeddings_for(self.architecture, vllm_version)
        return {m: p for m, p in self.modules.items() if m not in EMBEDDING_MODULES or m in served}


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    text = config.get("text_config")
    return {**config, **text} if isinstance(text, dict) else config


def _int(config: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _ids(value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _tokenizer_tables(base_dir: Path) -> tuple[dict[str, int], str | None, dict[str, Any]]:
    """content -> id of the tokenizer's tokens worth naming (added tokens, then vocab), its sha256, config."""
    tok_config = read_base_json(base_dir, "tokenizer_config.json") or {}
    table: dict[str, int] = {}
    path = base_dir / "tokenizer.json"
    digest: str | None = None
    if path.exists() or path.is_symlink():
        with open_nofollow(path) as fh:
            digest = hashlib.sha256(fh.read(64 << 20)).hexdigest()
        tok = read_base_json(base_dir, "tokenizer.json") or {}
        vocab = (tok.get("model") or {}).get("vocab") if isinstance(tok.get("model"), dict) else None
        if isinstance(vocab, dict):
            table.update({k: v for k, v in vocab.items() if isinstance(v, int)})
        for entry in tok.get("added_tokens") or []:
            if (
                isinstance(entry, dict)
                and isinstance(entry.get("content"), str)
                and isinstance(entry.get("id"), int)
            ):
                table[entry["content"]] = entry["id"]
    decoder = tok_config.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        for i, entry in decoder.items():
            text = _token_text(entry)
            if text is not None and str(i).isdigit():
                table.setdefault(text, int(i))
    return table, digest, tok_config


def _eos(
    config: dict[str, Any], generation: dict[str, Any], tok_config: dict[str, Any], table: dict[str, int]
) -> list[int]:
    # vLLM stops on generation_config's eos ids when present, else on the tokenizer's EOS
    ids = _ids(generation.get("eos_token_id")) or _ids(config.get("eos_token_id"))
    eos_text = _token_text(tok_config.get("eos_token"))
    if eos_text is not None and eos_text in table and table[eos_text] not in ids:
        ids.append(table[eos_text])
    return ids


def _end_of_turn(template: str | None, eos_ids: list[int], table: dict[str, int]) -> str | None:
    by_id = {v: k for k, v in table.items()}
    candidates = [by_id[i] for i in eos_ids if i in by_id] + list(_TURN_MARKERS)
    for token in candidates:
        if template is not None and token in template:
            return token
    return next((by_id[i] for i in eos_ids if i in by_id), None)


def _modules(base_dir: Path, num_layers: int) -> dict[str, list[ModuleFact]]:
    # (module, path template, shape) -> layers it occurs in
    seen: dict[tuple[str, str, tuple[int, int]], set[int]] = defaultdict(set)
    singles: dict[str, ModuleFact] = {}
    for shard in base_shards(base_dir):
        for name, info in read_header(shard).tensors.items():
            if len(info.shape) != 2 or not name.endswith(".weight"):
                continue
            shape = (info.shape[0], info.shape[1])
            short = name.removesuffix(".weight").rsplit(".", 1)[-1]
            m = _LAYER.match(name)
            if m is None:
                if short in ("embed_tokens", "lm_head"):
                    singles[short] = ModuleFact(short, name.removesuffix(".weight"), shape, None)
                continue
            if short in _ROUTERS:
                continue
            rest = _EXPERT.sub("experts.{expert}.", m["rest"])
            seen[(short, f"{m['prefix']}.{{layer}}.{rest}", shape)].add(int(m["layer"]))
    out: dict[str, list[ModuleFact]] = defaultdict(list)
    for (short, path, shape), layers in seen.items():
        every = layers == set(range(num_layers))
        out[short].append(ModuleFact(short, path, shape, None if every else tuple(sorted(layers))))
    for facts in out.values():
        facts.sort(key=lambda f: (-(num_layers if f.layers is None else len(f.layers)), len(f.path), f.path))
    for short, fact in singles.items():
        out[short] = [fact]
    if not out:
        raise InputError(f"{base_dir}: the base's safetensors headers have no linear layers")
    return dict(sorted(out.items()))


def read_base_facts(base_dir: Path) -> BaseFacts:
    """Read every fact a contract states about the base at ``base_dir``."""
    if not base_dir.is_dir():
        raise InputError(f"{base_dir}: not a directory", hint="pass the base model's directory")
    raw = read_base_json(base_dir, "config.json", required=True) or {}
    config = _text_config(raw)
    architectures = raw.get("architectures")
    if not isinstance(architectures, list) or not architectures or not isinstance(architectures[0], str):
        raise InputError(
            f"{base_dir / 'config.json'}: no architectures entry",
            hint="a transformers config names its model class",
        )
    generation = read_base_json(base_dir, "generation_config.json") or {}
    layers, vocab, hidden = (
        _int(config, "num_hidden_layers"),
        _int(config, "vocab_size"),
        _int(config, "hidden_size"),
    )
    missing = [
        k
        for k, v in (("num_hidden_layers", layers), ("vocab_size", vocab), ("hidden_size", hidden))
        if v is None
    ]
    if missing or layers is None or vocab is None or hidden is None:
        raise InputError(f"{base_dir / 'config.json'}: no {', '.join(missing)}")
    table, tok_digest, tok_config = _tokenizer_tables(base_dir)
    template = read_chat_template(base_dir)
    eos = _eos(config, generation, tok_config, table)
    tie = config.get("tie_word_embeddings")
    return BaseFacts(
        base_dir=base_dir,
        architecture=architectures[0],
        model_type=raw.get("model_type") if isinstance(raw.get("model_type"), str) else None,
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=_int(config, "num_attention_heads"),
        num_key_value_heads=_int(config, "num_key_value_heads"),
        tie_word_embeddings=tie if isinstance(tie, bool) else None,
        num_experts=_int(config, "num_experts", "num_local_experts", "n_routed_experts"),
        eos_token_ids=tuple(eos),
        end_of_turn=_end_of_turn(template, eos, table),
        tokenizer_sha256=tok_digest,
        chat_template=template,
        modules=_modules(base_dir, layers),
        bos_token=_token_text(tok_config.get("bos_token")),
    )
