"""Rules about the chat template: vLLM serves the contract's template, so the adapter must agree with it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from gate.rules import CheckContext, Hit, rule
from gate.rules._context import PROBE_MARK

if TYPE_CHECKING:
    from gate.templates import RenderResult

_TOKEN_LIKE = re.compile(r"\s*(<[^<>\s]{1,64}>|\[[A-Z_/]{2,32}\])")


def _errors(ctx: CheckContext, kinds: tuple[str, ...]) -> list[RenderResult]:
    return [r for r in ctx.renders if r.error in kinds]


def _where(ctx: CheckContext) -> str:
    source, _ = ctx.template
    return source.path if source else "chat_template.jinja"


@rule(
    "template.invalid",
    "error",
    title="the adapter's chat template does not compile or raises while rendering",
    hint="fix the template, or ship none (vLLM serves the contract's template)",
)
def _invalid(ctx: CheckContext) -> Iterator[Hit]:
    bad = _errors(ctx, ("invalid",))
    if bad:
        yield Hit(f"the chat template fails: {bad[0].detail}", _where(ctx))


@rule(
    "template.unsafe",
    "error",
    title="the adapter's chat template tries to escape the Jinja sandbox",
    hint="do not ship this template: it reaches for Python internals or mutates its inputs",
)
def _unsafe(ctx: CheckContext) -> Iterator[Hit]:
    bad = _errors(ctx, ("unsafe",))
    if bad:
        yield Hit(f"the sandbox blocked the chat template: {bad[0].detail}", _where(ctx))


@rule(
    "template.resource-limit",
    "error",
    title="the adapter's chat template runs too long or produces too much output",
    hint="the template loops without bound; ship the base's template instead",
)
def _limits(ctx: CheckContext) -> Iterator[Hit]:
    bad = _errors(ctx, ("timeout", "too_large"))
    if bad:
        yield Hit(f"rendering was stopped: {bad[0].detail}", _where(ctx))


def _renders_ok(ctx: CheckContext) -> bool:
    return bool(ctx.renders) and all(r.ok for r in ctx.renders)


def _mismatches(ctx: CheckContext) -> list[str]:
    out = []
    for fixture, result in zip(ctx.contract.prompt.fixtures, ctx.renders, strict=False):
        if result.text != fixture.expected:
            got, want = result.text or "", fixture.expected
            at = next(
                (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                min(len(got), len(want)),
            )
            out.append(
                f"{fixture.name} (at character {at}: got {got[max(0, at - 12) : at + 24]!r}, "
                f"want {want[max(0, at - 12) : at + 24]!r})"
            )
    return out


@rule(
    "template.renders-differently",
    "error",
    title="the adapter's chat template renders the contract's fixtures differently from the serving template",
    hint="train with the contract's serving template (the base's own), or change the contract's template",
)
def _renders(ctx: CheckContext) -> Iterator[Hit]:
    if not _renders_ok(ctx):
        return
    bad = _mismatches(ctx)
    if bad:
        yield Hit(
            f"the adapter was trained on another prompt format than vLLM serves: {'; '.join(bad[:3])}",
            _where(ctx),
        )


@rule(
    "template.differs",
    "error",
    title="the adapter ships a chat template that is not the contract's serving template",
    hint="ship the base's template unchanged (or none); vLLM serves the contract's template anyway",
)
def _differs(ctx: CheckContext) -> Iterator[Hit]:
    source, _ = ctx.template
    if source is not None and source.text.rstrip() == ctx.contract.prompt.chat_template.rstrip():
        return  # only trailing whitespace differs (editors and some toolkits add a final newline)
    if _renders_ok(ctx) and not _mismatches(ctx):
        yield Hit(
            f"{source.path if source else 'the template'} differs from the serving template "
            f"(sha256 {ctx.contract.prompt.chat_template_sha256[:12]}...) though the fixtures render alike",
            _where(ctx),
        )


def _eot_hint(ctx: CheckContext) -> str:
    eot = ctx.contract.prompt.end_of_turn
    return (
        f"train with {ctx.contract.base_model.name}'s template, whose turns end with {eot!r} "
        f"(EOS ids {ctx.contract.base_model.eos_token_ids})"
    )


def end_of_turn(ctx: CheckContext) -> tuple[str | None, str]:
    """The token the adapter's template closes an assistant turn with, and the text after the reply."""
    probe = ctx.renders[-1].text or ""
    at = probe.find(PROBE_MARK)
    if at < 0:
        return None, ""
    after = probe[at + len(PROBE_MARK) :]
    known = sorted((t for t in ctx.special_token_ids if t and after.lstrip(" ").startswith(t)), key=len)
    if known:
        return known[-1], after
    m = _TOKEN_LIKE.match(after)
    return (m.group(1) if m else None), after


@rule(
    "template.never-stops",
    "error",
    title="the adapter's template ends assistant turns with a token that is not a base EOS id",
    hint="train with a template whose end-of-turn token is a base EOS id (the contract's prompt.end_of_turn)",
)
def _never_stops(ctx: CheckContext) -> Iterator[Hit]:
    if not _renders_ok(ctx):
        return
    token, after = end_of_turn(ctx)
    if ctx.renders[-1].text is not None and PROBE_MARK not in ctx.renders[-1].text:
        return  # the template drops assistant replies: renders-differently says so
    stops = ctx.contract.base_model.eos_token_ids
    if token is None:
        yield Hit(
            f"assistant turns end with {after[:20]!r}, no special token: the model never learns to emit "
            f"an EOS id {stops}, so vLLM generates until max_tokens",
            _where(ctx),
            _eot_hint(ctx),
        )
        return
    token_id = ctx.special_token_ids.get(token)
    if token_id is None and token == ctx.contract.prompt.end_of_turn:
        return
    if token_id is None or token_id not in stops:
        shown = f"id {token_id}" if token_id is not None else "not a base token"
        yield Hit(
            f"assistant turns end with {token!r} ({shown}) but vLLM stops only on ids {stops}: "
            f"the adapter would never stop",
            _where(ctx),
            _eot_hint(ctx),
        )
