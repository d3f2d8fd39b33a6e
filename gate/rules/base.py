"""Rules comparing the given base model with the contract's."""

from __future__ import annotations

from collections.abc import Iterator

from gate.contracts import Mismatch, verify_against_base
from gate.rules import CheckContext, Hit, rule


def _mismatches(ctx: CheckContext) -> list[Mismatch]:
    """``gate contract verify``'s comparison (without re-rendering fixtures), computed once per check."""
    if "base:mismatches" not in ctx.memo:
        assert ctx.base_dir is not None
        ctx.memo["base:mismatches"] = verify_against_base(ctx.contract, ctx.base_dir, render=False)
    found: list[Mismatch] = ctx.memo["base:mismatches"]
    return found


@rule(
    "base.identity-mismatch",
    "error",
    title="the --base directory is not the contract's base model (identity digest differs)",
    hint="pass the directory of the base the contract names (base_model.name), or update the contract",
)
def _identity(ctx: CheckContext) -> Iterator[Hit]:
    if ctx.base_dir is None:
        return
    for m in _mismatches(ctx):
        if m.field == "base_model.identity":
            yield Hit(
                m.message,
                str(ctx.base_dir),
                f"pass the directory of {ctx.contract.base_model.name} (the contract's base_model), "
                f"or update the contract",
            )


@rule(
    "base.fact-mismatch",
    "error",
    title="the contract states a fact the --base directory contradicts (shape, layers, module path, EOS)",
    hint="regenerate the contract (gate contract init) or fix the field; gate contract verify lists them all",
)
def _facts(ctx: CheckContext) -> Iterator[Hit]:
    if ctx.base_dir is None:
        return
    for m in _mismatches(ctx):
        if m.field != "base_model.identity":
            yield Hit(f"{m.field}: {m.message}", str(ctx.base_dir))
