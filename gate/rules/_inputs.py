"""The files of an adapter directory (names, size bounds) and bounded readers of their JSON."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate.errors import InputError
from gate.safetensors_io import open_nofollow
from gate.validation import LimitError, loads_json

ADAPTER_CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
PICKLE_WEIGHTS = ("adapter_model.bin", "adapter_model.pt")
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"
#: Files of an adapter directory that vLLM or transformers open when they load the adapter.
SERVED_FILES = (
    ADAPTER_CONFIG,
    WEIGHTS,
    *PICKLE_WEIGHTS,
    TOKENIZER_JSON,
    TOKENIZER_CONFIG,
    TEMPLATE_FILE,
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)

#: Size bounds, checked with stat before a byte is read.
LIMITS = {
    ADAPTER_CONFIG: 1 << 20,
    TOKENIZER_CONFIG: 8 << 20,
    TOKENIZER_JSON: 64 << 20,
    TEMPLATE_FILE: 256 << 10,
    "special_tokens_map.json": 1 << 20,
}
_MAX_ENTRIES = 10_000
#: The assistant text of the end-of-turn probe: whatever the template writes after it ends the turn.
PROBE_MARK = "GATE-END-OF-TURN-PROBE"


@dataclass(frozen=True)
class JsonDoc:
    """A JSON object file: its data, or why it cannot be used (absent: both None)."""

    data: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class TemplateSource:
    """The chat template an adapter ships and where it came from."""

    text: str
    path: str


def _parse_json(data: bytes | None, error: str | None) -> JsonDoc:
    if error or data is None:
        return JsonDoc(error=error)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return JsonDoc(error=f"is not UTF-8 text (byte {e.start})")
    try:
        value = loads_json(text)
    except LimitError as e:
        return JsonDoc(error=f"is refused: {e}")
    except ValueError as e:
        return JsonDoc(error=f"is not valid JSON ({str(e)[:120]})")
    if not isinstance(value, dict):
        return JsonDoc(error=f"must hold a JSON object (got {type(value).__name__})")
    return JsonDoc(data=value)


def _added_tokens_only(data: bytes) -> dict[str, int] | None:
    """Decode only the top-level ``added_tokens`` array of a trusted tokenizer.json (None: not found)."""
    try:
        text = data.decode("utf-8")
        at = text.find('"added_tokens"')
        if at < 0:
            return None
        start = text.index(":", at) + 1
        while text[start].isspace():
            start += 1
        if text[start] != "[":
            return None
        array, _ = json.JSONDecoder().raw_decode(text, start)
    except (UnicodeDecodeError, ValueError, IndexError):
        return None
    return added_tokens({"added_tokens": array}) if isinstance(array, list) else None


def _base_shards(base_dir: Path) -> list[Path]:
    single = base_dir / "model.safetensors"
    if single.is_file():
        return [single]
    index = base_dir / "model.safetensors.index.json"
    if index.is_file():
        with open_nofollow(index) as fh:
            doc = _parse_json(fh.read(64 << 20), None)
        weight_map = (doc.data or {}).get("weight_map")
        if isinstance(weight_map, dict):
            names = sorted({str(v) for v in weight_map.values()})
            if all(re.fullmatch(r"[\w.-]+\.safetensors", n) for n in names):
                return [base_dir / n for n in names]
        raise InputError(f"{index}: has no usable weight_map")
    raise InputError(
        f"{base_dir}: no model.safetensors (or index) in the base directory",
        hint="pass the base model directory the contract describes (config.json and model.safetensors)",
    )


def token_text(value: Any) -> str | None:
    """A special-token entry of tokenizer_config.json as text (it may be a string or an AddedToken dict)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def added_tokens(tokenizer_json: dict[str, Any]) -> dict[str, int]:
    """``added_tokens`` of a tokenizer.json: content -> id."""
    out: dict[str, int] = {}
    entries = tokenizer_json.get("added_tokens")
    if isinstance(entries, list):
        for t in entries:
            if isinstance(t, dict) and isinstance(t.get("content"), str) and isinstance(t.get("id"), int):
                out[t["content"]] = t["id"]
    return out


def vocab_size(tokenizer_json: dict[str, Any]) -> int | None:
    """Number of token ids a tokenizer.json defines (highest id + 1), or None if it has no vocab."""
    model = tokenizer_json.get("model")
    vocab = model.get("vocab") if isinstance(model, dict) else None
    ids: list[int] = []
    if isinstance(vocab, dict):
        ids.extend(v for v in vocab.values() if isinstance(v, int))
    elif isinstance(vocab, list):  # unigram: [[piece, score], ...]
        ids.append(len(vocab) - 1)
    ids.extend(added_tokens(tokenizer_json).values())
    return max(ids) + 1 if ids else None
