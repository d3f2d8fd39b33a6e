"""Rules comparing the given base model with the contract's."""

from __future__ import annotations

from collections.abc import Iterator

from gate.base_model import base_identity
from gate.rules import CheckContext, Hit, rule


@rule(
    "base.identity-mismatch",
    "error",
    title="the --base directory is not the contract's base model (identity digest differs)",
    hint="pass the directory of the base the contract names (base_model.name), or update the contract",
)
def _identity(ctx: CheckContext) -> Iterator[Hit]:
    if ctx.base_dir is None:
        return
    got = base_identity(ctx.base_dir)
    if got != ctx.contract.base_model.identity:
        yield Hit(
            f"the base's identity is {got}, the contract pins {ctx.contract.base_model.identity}",
            str(ctx.base_dir),
            f"pass the directory of {ctx.contract.base_model.name} (the contract's base_model), "
            f"or update the contract",
        )
