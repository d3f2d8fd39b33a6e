"""A base model's identity: a digest of what it computes, not of the bytes transformers wrote.

Identity format 2 (``v2:sha256:<hex>``) digests five parts, each canonical JSON:

- **config**: config.json's parsed content without the keys that name the writer, not the
  model (:data:`VOLATILE_CONFIG_KEYS`); transformers 4's ``rope_theta``/``rope_scaling`` is
  read as transformers 5's ``rope_parameters``. The dtype keys are dropped because every
  tensor's dtype is in the weights part.
- **generation**: generation_config.json the same way (absent: empty).
- **tokenizer**: tokenizer.json's model (type, vocabulary, merges as pairs), its added tokens
  and the special tokens of tokenizer_config.json; or, for a SentencePiece-only base, the
  bytes of tokenizer.model.
- **chat_template**: the template text (chat_template.jinja, chat_template.json or
  tokenizer_config.json's ``chat_template``).
- **weights**: one line per tensor, sorted by name: name, dtype, shape and the sha256 of its
  bytes. Shard layout and header order do not matter; one changed weight does.

Tensors are hashed streaming in 16 MiB chunks (bounded memory, no torch). Per-shard results
are cached under ``$GATE_HOME/identity`` keyed by the file's device, inode, size, mtime and
ctime, so a second ``gate check --base`` on a 15 GB base does not re-read it.

Identity format 1 (``sha256:<hex>``, the bytes of the config and tokenizer files) is refused
with a migration message by :func:`require_current_format`.

Example::

    ident = compute_identity(Path("base"))
    print(ident.identity, ident.parts["weights"])
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.errors import InputError
from gate.safetensors_io import SafetensorsHeader, _read_full, open_nofollow, read_header

__all__ = [
    "IDENTITY_FORMAT",
    "IDENTITY_PATTERN",
    "VOLATILE_CONFIG_KEYS",
    "BaseIdentity",
    "base_identity",
    "base_shards",
    "compute_identity",
    "read_base_json",
    "read_chat_template",
    "require_current_format",
]

IDENTITY_FORMAT = 2
IDENTITY_PATTERN = r"^v2:sha256:[0-9a-f]{64}$"
_V1 = re.compile(r"^sha256:[0-9a-f]{64}$")

#: Keys that say who wrote config.json or how to load it, not what the model is.
VOLATILE_CONFIG_KEYS = frozenset(
    {
        "_name_or_path",
        "_commit_hash",
        "_attn_implementation",
        "_attn_implementation_autoset",
        "_from_model_config",
        "transformers_version",
        "torch_dtype",
        "dtype",
        "use_cache",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
    }
)
#: tokenizer_config.json keys that name special tokens (the rest is loader detail).
_SPECIAL_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "pad_token",
    "sep_token",
    "cls_token",
    "mask_token",
    "additional_special_tokens",
    "extra_special_tokens",
)
_MAX_JSON_BYTES = 64 << 20  # Gemma's tokenizer.json is 33 MB
_MAX_SMALL_BYTES = 4 << 20
_MAX_SHARDS = 4096
_CHUNK = 16 << 20


@dataclass(frozen=True)
class BaseIdentity:
    """A base's identity, the digest of each part, and each tensor's digest."""

    identity: str
    parts: dict[str, str]
    tensors: dict[str, str] = field(repr=False)


def require_current_format(value: str, *, where: str = "base_model.identity") -> str:
    """``value`` if it is a format-2 identity; a format-1 one gets the migration message."""
    if _V1.match(value):
        raise ValueError(
            f"identity format v1 ({value[:15]}..., a digest of config and tokenizer file bytes) is no longer "
            f"read; format v2 digests the base's content and weights. Run `gate base add DIR` to print the "
            f"base's v2 identity for {where}, then `gate contract verify CONTRACT --base DIR`; or write the "
            "contract anew with `gate contract init --base DIR`"
        )
    if not re.match(IDENTITY_PATTERN, value):
        raise ValueError(f"not a base identity: {value!r} (expected v2:sha256:<64 hex digits>)")
    return value


# --- reading the base directory ---------------------------------------------------------------------


def _read(path: Path, limit: int) -> bytes:
    with open_nofollow(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise InputError(f"{path}: {size} bytes, more than the {limit}-byte limit")
        data = bytearray(size)
        if _read_full(fh, memoryview(data)) != size:
            raise InputError(f"{path}: changed while being read")
        return bytes(data)


def read_base_json(base_dir: Path, name: str, *, required: bool = False) -> dict[str, Any] | None:
    """A JSON object file of the base directory (None when absent and not required); no symlinks."""
    path = base_dir / name
    if not path.exists() and not path.is_symlink():
        if required:
            raise InputError(f"{base_dir}: no {name}: not a model directory")
        return None
    limit = _MAX_JSON_BYTES if name == "tokenizer.json" else _MAX_SMALL_BYTES
    try:
        doc = json.loads(_read(path, limit).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: not a JSON object")
    return doc


def read_chat_template(base_dir: Path) -> str | None:
    """The base's own chat template text, wherever this transformers version saved it."""
    jinja = base_dir / "chat_template.jinja"
    if jinja.exists() or jinja.is_symlink():
        try:
            return _read(jinja, _MAX_SMALL_BYTES).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{jinja}: not UTF-8 text") from e
    for name in ("chat_template.json", "tokenizer_config.json"):
        doc = read_base_json(base_dir, name)
        template = (doc or {}).get("chat_template")
        if isinstance(template, str):
            return template
        if isinstance(template, list):  # named templates: the default one
            for entry in template:
                if isinstance(entry, dict) and entry.get("name") == "default":
                    return str(entry.get("template", ""))
    return None


def base_shards(base_dir: Path) -> list[Path]:
    """The base's safetensors files: model.safetensors, or the shards its index names."""
    single = base_dir / "model.safetensors"
    if single.exists() or single.is_symlink():
        return [single]
    index = read_base_json(base_dir, "model.safetensors.index.json")
    if index is None:
        raise InputError(
            f"{base_dir}: no model.safetensors or model.safetensors.index.json",
            hint="a base directory holds config.json, the tokenizer and safetensors weights",
        )
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise InputError(f"{base_dir / 'model.safetensors.index.json'}: has no weight_map")
    names = sorted({str(v) for v in weight_map.values()})
    bad = [n for n in names if not re.fullmatch(r"[\w.-]{1,200}\.safetensors", n) or n.startswith(".")]
    if bad:
        raise InputError(f"{base_dir}: the index names shards outside the directory: {bad[:3]}")
    if len(names) > _MAX_SHARDS:
        raise InputError(f"{base_dir}: the index names {len(names)} shards (limit {_MAX_SHARDS})")
    return [base_dir / n for n in names]


# --- the parts ------------------------------------------------------------------------------------


def _canonical(obj: Any) -> str:
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def normalized_config(config: dict[str, Any]) -> dict[str, Any]:
    """config.json without writer-specific keys, rope settings in transformers 5's spelling."""
    out = {k: v for k, v in config.items() if k not in VOLATILE_CONFIG_KEYS}
    if "rope_parameters" not in out and "rope_theta" in out:
        scaling = out.pop("rope_scaling", None) or {}
        rope = {"rope_theta": out.pop("rope_theta"), "rope_type": "default"}
        if isinstance(scaling, dict):
            rope.update({("rope_type" if k == "type" else k): v for k, v in scaling.items()})
        out["rope_parameters"] = rope
    for key, value in list(out.items()):
        if isinstance(value, dict) and key.endswith("_config"):  # nested text/vision configs
            out[key] = normalized_config(value)
    return out


def _tokenizer_part(base_dir: Path) -> Any:
    config = read_base_json(base_dir, "tokenizer_config.json") or {}
    special = {k: config[k] for k in _SPECIAL_KEYS if k in config}
    decoder = config.get("added_tokens_decoder")
    tok = read_base_json(base_dir, "tokenizer.json")
    if tok is None:
        sp = base_dir / "tokenizer.model"
        if not (sp.exists() or sp.is_symlink()):
            raise InputError(f"{base_dir}: no tokenizer.json or tokenizer.model")
        return {"sentencepiece": hashlib.sha256(_read(sp, _MAX_JSON_BYTES)).hexdigest(), "special": special}
    raw_model = tok.get("model")
    model: dict[str, Any] = raw_model if isinstance(raw_model, dict) else {}
    merges = model.get("merges") or []
    # tokenizers < 0.20 writes a merge as "a b", later ones as ["a", "b"]
    pairs = [m.split(" ", 1) if isinstance(m, str) else m for m in merges]
    added = [
        {k: t.get(k) for k in ("id", "content", "special")}
        for t in tok.get("added_tokens") or []
        if isinstance(t, dict)
    ]
    if isinstance(decoder, dict):
        added_cfg = sorted(
            (int(i), str(v.get("content")), bool(v.get("special")))
            for i, v in decoder.items()
            if str(i).isdigit() and isinstance(v, dict)
        )
    else:
        added_cfg = []
    return {
        "type": model.get("type"),
        "vocab": model.get("vocab"),
        "merges": pairs,
        "added": sorted(added, key=lambda t: (t.get("id") or 0, str(t.get("content")))),
        "added_config": added_cfg,
        "special": {k: _token_text(v) for k, v in special.items()},
    }


def _token_text(value: Any) -> Any:
    if isinstance(value, dict) and "content" in value:
        return value["content"]
    if isinstance(value, list):
        return [_token_text(v) for v in value]
    return value


# --- weights ----------------------------------------------------------------------------------------


def _cache_dir() -> Path:
    from gate.envs import gate_home

    return gate_home() / "identity"


def _stat_key(path: Path) -> str:
    st = os.stat(path, follow_symlinks=False)
    raw = (
        f"{os.path.abspath(path)}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
    )
    return hashlib.sha256(raw.encode()).hexdigest()


def _hash_shard(path: Path, header: SafetensorsHeader) -> dict[str, str]:
    """sha256 of every tensor's bytes, reading the data section once in fixed-size chunks."""
    out: dict[str, str] = {}
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open_nofollow(path) as fh:
        fh.seek(header.data_start)
        # read_header checked that the tensors tile the data section, so a sequential read covers each once
        for name, info in sorted(header.tensors.items(), key=lambda kv: kv[1].data_offsets):
            h = hashlib.sha256()
            left = info.nbytes
            while left:
                want = min(left, _CHUNK)
                if _read_full(fh, view[:want]) != want:
                    raise InputError(f"{path}: tensor {name!r}: the file ended early (truncated)")
                h.update(view[:want])
                left -= want
            out[name] = f"{info.dtype}\0{list(info.shape)}\0{h.hexdigest()}"
    return out


def _shard_digests(path: Path, *, use_cache: bool) -> dict[str, str]:
    header = read_header(path)
    cache = _cache_dir() / f"{_stat_key(path)}.json"
    if use_cache and cache.is_file() and not cache.is_symlink():
        try:
            cached = json.loads(cache.read_text())
            if isinstance(cached, dict) and set(cached) == set(header.tensors):
                return {str(k): str(v) for k, v in cached.items()}
        except (OSError, ValueError):
            pass
    digests = _hash_shard(path, header)
    if use_cache:
        try:
            from gate.console import atomic_write_text

            atomic_write_text(cache, json.dumps(digests))
        except OSError:
            pass  # a read-only GATE_HOME only costs the next run a re-read
    return digests


def compute_identity(base_dir: Path, *, use_cache: bool = True) -> BaseIdentity:
    """The base's format-2 identity and its parts (see the module docstring)."""
    config = read_base_json(base_dir, "config.json", required=True) or {}
    generation = read_base_json(base_dir, "generation_config.json") or {}
    tensors: dict[str, str] = {}
    for shard in base_shards(base_dir):
        for name, digest in _shard_digests(shard, use_cache=use_cache).items():
            if name in tensors:
                raise InputError(f"{base_dir}: tensor {name!r} is in more than one shard")
            tensors[name] = digest
    parts = {
        "config": _canonical(normalized_config(config)),
        "generation": _canonical(normalized_config(generation)),
        "tokenizer": _canonical(_tokenizer_part(base_dir)),
        "chat_template": _canonical(read_chat_template(base_dir)),
        "weights": _canonical(sorted(f"{name}\0{digest}" for name, digest in tensors.items())),
    }
    identity = "v2:sha256:" + _canonical({"format": IDENTITY_FORMAT, **parts})
    return BaseIdentity(identity=identity, parts=parts, tensors=tensors)


def base_identity(base_dir: Path) -> str:
    """The digest contracts pin in ``base_model.identity`` (format 2)."""
    return compute_identity(base_dir).identity
