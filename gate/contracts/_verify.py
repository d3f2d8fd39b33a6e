"""``gate contract verify``: re-derive every base fact a contract states and list each mismatch.

The same comparison runs in ``gate check --base`` (rules ``base.identity-mismatch`` and
``base.fact-mismatch``). Fixture texts need the base's tokenizer, so they are compared only
when ``render`` is set (``contract verify`` does; ``check`` stays free of subprocesses).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gate.contract import Contract
from gate.contracts._facts import BaseFacts, read_base_facts
from gate.identity import compute_identity

__all__ = ["Mismatch", "verify_against_base"]


@dataclass(frozen=True)
class Mismatch:
    """One fact where the contract and the base disagree."""

    field: str  # the contract field, e.g. base_model.linear_shapes.k_proj
    contract: Any  # what the contract says
    base: Any  # what the base has
    message: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _first_difference(a: str, b: str) -> str:
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"first difference at character {i}: contract {a[i : i + 20]!r}, base {b[i : i + 20]!r}"


def _scalars(contract: Contract, facts: BaseFacts) -> list[Mismatch]:
    spec = contract.base_model
    out: list[Mismatch] = []
    pairs: list[tuple[str, Any, Any]] = [
        ("architecture", spec.architecture, facts.architecture),
        ("vocab_size", spec.vocab_size, facts.vocab_size),
        ("hidden_size", spec.hidden_size, facts.hidden_size),
        ("num_hidden_layers", spec.num_hidden_layers, facts.num_hidden_layers),
        ("eos_token_ids", sorted(spec.eos_token_ids), sorted(facts.eos_token_ids)),
    ]
    # optional facts are compared when the contract states them
    for name in ("num_attention_heads", "num_key_value_heads", "tie_word_embeddings", "num_experts"):
        if getattr(spec, name) is not None:
            pairs.append((name, getattr(spec, name), getattr(facts, name)))
    if spec.tokenizer_sha256 is not None:
        pairs.append(("tokenizer_sha256", spec.tokenizer_sha256, facts.tokenizer_sha256))
    for name, want, got in pairs:
        if want != got:
            out.append(
                Mismatch(f"base_model.{name}", want, got, f"base_model.{name} is {want}, the base has {got}")
            )
    if sorted(contract.prompt.eos_token_ids) != sorted(facts.eos_token_ids):
        out.append(
            Mismatch(
                "prompt.eos_token_ids",
                contract.prompt.eos_token_ids,
                list(facts.eos_token_ids),
                f"prompt.eos_token_ids is {contract.prompt.eos_token_ids}, the base's tokenizer ends on "
                f"{list(facts.eos_token_ids)}",
            )
        )
    if facts.end_of_turn is not None and contract.prompt.end_of_turn != facts.end_of_turn:
        out.append(
            Mismatch(
                "prompt.end_of_turn",
                contract.prompt.end_of_turn,
                facts.end_of_turn,
                f"prompt.end_of_turn is {contract.prompt.end_of_turn!r}, the base's template closes "
                f"turns with {facts.end_of_turn!r}",
            )
        )
    if (
        facts.chat_template_sha256 is not None
        and contract.prompt.chat_template_sha256 != facts.chat_template_sha256
    ):
        out.append(
            Mismatch(
                "prompt.chat_template_sha256",
                contract.prompt.chat_template_sha256,
                facts.chat_template_sha256,
                f"the contract's chat template (sha256 {contract.prompt.chat_template_sha256[:12]}...) is "
                f"not the base's own (sha256 {facts.chat_template_sha256[:12]}...)",
            )
        )
    return out


def _modules(contract: Contract, facts: BaseFacts) -> list[Mismatch]:
    spec = contract.base_model
    found: dict[str, tuple[int, int]] = {}
    for placements in facts.modules.values():
        for p in placements:
            layers = p.layers if p.layers is not None else range(facts.num_hidden_layers)
            for layer in layers if "{layer}" in p.path else [0]:
                path = p.path.replace("{layer}", str(layer))
                for e in range(facts.num_experts or 0) if "{expert}" in path else [0]:
                    found[path.replace("{expert}", str(e))] = p.shape
    expected = spec.expected_modules()
    out: list[Mismatch] = []
    # one mismatch per contract entry, not per layer: group the expanded names back by module name
    by_module: dict[str, list[str]] = {}
    for full in expected:
        by_module.setdefault(full.rsplit(".", 1)[-1], []).append(full)
    for module, names in sorted(by_module.items()):
        missing = [n for n in names if n not in found]
        wrong = [n for n in names if n in found and found[n] != expected[n]]
        if missing:
            out.append(
                Mismatch(
                    f"base_model.module_paths.{module}",
                    missing[0],
                    None,
                    f"{len(missing)} of {len(names)} {module} paths of the contract are not in the base, "
                    f"e.g. {missing[0]}",
                )
            )
        if wrong:
            n = wrong[0]
            out.append(
                Mismatch(
                    f"base_model.linear_shapes.{module}",
                    list(expected[n]),
                    list(found[n]),
                    f"{module} is {list(expected[n])} in the contract, {list(found[n])} in the base ({n})",
                )
            )
    described = set(expected)
    undescribed = sorted(
        {
            p.module
            for ps in facts.lora_modules(contract.serving.vllm_version).values()
            for p in ps
            if not any(k == p.module or k.endswith("." + p.module) for k in described)
        }
    )
    for module in undescribed:
        out.append(
            Mismatch(
                f"base_model.linear_shapes.{module}",
                None,
                list(facts.modules[module][0].shape),
                f"the base has LoRA-able module {module} ({facts.modules[module][0].path}) that the contract "
                "does not describe",
            )
        )
    return out


def _fixtures(contract: Contract, base_dir: Path) -> list[Mismatch]:
    from gate.contracts._render import render_fixtures

    fixtures = [
        {
            "name": f.name,
            "messages": [m.model_dump() for m in f.messages],
            "add_generation_prompt": f.add_generation_prompt,
        }
        for f in contract.prompt.fixtures
    ]
    rendered = render_fixtures(base_dir, fixtures, chat_template=contract.prompt.chat_template)
    out: list[Mismatch] = []
    for i, (fixture, got) in enumerate(zip(contract.prompt.fixtures, rendered, strict=True)):
        text = got.get("text")
        if text != fixture.expected:
            why = got.get("error") or _first_difference(fixture.expected, str(text))
            out.append(
                Mismatch(
                    f"prompt.fixtures[{i}].expected",
                    fixture.expected,
                    text,
                    f"fixture {fixture.name!r}: the base's tokenizer renders other text ({why})",
                )
            )
    return out


def verify_against_base(contract: Contract, base_dir: Path, *, render: bool = True) -> list[Mismatch]:
    """Every fact of ``contract`` the base at ``base_dir`` contradicts (empty: they agree)."""
    facts = read_base_facts(base_dir)
    out: list[Mismatch] = []
    identity = compute_identity(base_dir).identity
    if identity != contract.base_model.identity:
        out.append(
            Mismatch(
                "base_model.identity",
                contract.base_model.identity,
                identity,
                f"the base's identity is {identity}, the contract pins {contract.base_model.identity} "
                "(other weights, config, tokenizer or template)",
            )
        )
    out += _scalars(contract, facts)
    out += _modules(contract, facts)
    if render:
        out += _fixtures(contract, base_dir)
    return out
