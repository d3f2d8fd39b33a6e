"""Rules about tokenizer files: vLLM serves with the BASE tokenizer, so an adapter's must match it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gate.rules import CheckContext, Hit, rule
from gate.rules._context import TOKENIZER_CONFIG, TOKENIZER_JSON, added_tokens, token_text


def model_vocab_size(tokenizer_json: dict[str, Any]) -> int | None:
    """Size of a tokenizer.json's model vocabulary (added tokens not counted)."""
    model = tokenizer_json.get("model")
    vocab = model.get("vocab") if isinstance(model, dict) else None
    if isinstance(vocab, dict):
        return len(vocab)
    if isinstance(vocab, list):
        return len(vocab)
    return None


def _decoder(doc: dict[str, Any] | None) -> dict[str, str]:
    table = doc.get("added_tokens_decoder") if doc else None
    if not isinstance(table, dict):
        return {}
    return {str(k): str(token_text(v)) for k, v in table.items()}


@rule(
    "tokenizer.vocab-differs",
    "error",
    title="the adapter's tokenizer vocabulary differs from the base's (vLLM uses the base tokenizer)",
    hint="train with the base tokenizer unchanged; vLLM cannot serve a different vocabulary through a LoRA",
)
def _vocab(ctx: CheckContext) -> Iterator[Hit]:
    if not ctx.contract.adapter.require_tokenizer_match or ctx.same_as_base(TOKENIZER_JSON):
        return
    adapter = ctx.json_file(TOKENIZER_JSON).data
    if adapter is None:
        return
    size = model_vocab_size(adapter)
    base = ctx.base_json(TOKENIZER_JSON).data
    if base is not None:
        base_size = model_vocab_size(base)
        if size != base_size:
            yield Hit(
                f"the adapter's tokenizer has {size} vocabulary entries, the base's {base_size}",
                TOKENIZER_JSON,
            )
    elif size is not None and size > ctx.contract.base_model.vocab_size:
        yield Hit(
            f"the adapter's tokenizer has {size} vocabulary entries, more than the base's "
            f"{ctx.contract.base_model.vocab_size}",
            TOKENIZER_JSON,
        )


@rule(
    "tokenizer.added-tokens-differ",
    "error",
    title="added/special tokens differ from the base's (new tokens cannot be served)",
    hint="train without adding tokens (no resize_vocab, no new special tokens): vLLM serves the base's",
)
def _added(ctx: CheckContext) -> Iterator[Hit]:
    if not ctx.contract.adapter.require_tokenizer_match:
        return
    same = ctx.same_as_base(TOKENIZER_JSON)
    adapter = None if same else ctx.json_file(TOKENIZER_JSON).data
    if adapter is not None:
        base = ctx.base_json(TOKENIZER_JSON).data
        mine = added_tokens(adapter)
        if base is not None:
            theirs = added_tokens(base)
            new = sorted(f"{k}={v}" for k, v in mine.items() if theirs.get(k) != v)
            gone = sorted(k for k in theirs if k not in mine)
            if new or gone:
                parts = [f"new or renumbered {new[:5]}"] if new else []
                parts += [f"missing {gone[:5]}"] if gone else []
                yield Hit(f"added tokens differ from the base's: {'; '.join(parts)}", TOKENIZER_JSON)
        else:
            vocab = ctx.contract.base_model.vocab_size
            beyond = sorted(f"{k}={v}" for k, v in mine.items() if v >= vocab)
            if beyond:
                yield Hit(f"added tokens beyond the base vocabulary ({vocab}): {beyond[:5]}", TOKENIZER_JSON)
    mine_dec = _decoder(ctx.json_file(TOKENIZER_CONFIG).data)
    base_dec = _decoder(ctx.base_json(TOKENIZER_CONFIG).data)
    if mine_dec and base_dec and mine_dec != base_dec:
        changed = sorted(k for k in set(mine_dec) | set(base_dec) if mine_dec.get(k) != base_dec.get(k))
        yield Hit(f"added_tokens_decoder differs from the base's at ids {changed[:8]}", TOKENIZER_CONFIG)


def _special(ctx: CheckContext, key: str) -> tuple[str | None, str | None]:
    mine = ctx.json_file(TOKENIZER_CONFIG).data
    base = ctx.base_json(TOKENIZER_CONFIG).data
    return (token_text(mine.get(key)) if mine else None, token_text(base.get(key)) if base else None)


@rule(
    "tokenizer.eos-changed",
    "error",
    title="the adapter's EOS token is not the base's (vLLM stops on the base EOS: never-stops risk)",
    hint="keep the base's eos_token; the model must learn to emit the token the server stops on",
)
def _eos(ctx: CheckContext) -> Iterator[Hit]:
    mine, base = _special(ctx, "eos_token")
    if mine is None:
        return
    stops = ctx.contract.base_model.eos_token_ids
    if base is not None:
        if mine != base:
            yield Hit(
                f"eos_token is {mine!r}, the base's is {base!r}: vLLM stops only on ids {stops}",
                TOKENIZER_CONFIG,
            )
        return
    if mine == ctx.contract.prompt.end_of_turn:
        return  # the contract's end-of-turn token is one the server stops on
    token_id = ctx.special_token_ids.get(mine)
    if token_id is not None and token_id not in stops:
        yield Hit(
            f"eos_token {mine!r} is id {token_id}; vLLM stops only on the base's ids {stops}",
            TOKENIZER_CONFIG,
        )


@rule(
    "tokenizer.pad-changed",
    "warning",
    title="the adapter's pad token is not the base's",
    hint="harmless for serving, but check that training masked padding right (pad == eos can hide the stop)",
)
def _pad(ctx: CheckContext) -> Iterator[Hit]:
    mine, base = _special(ctx, "pad_token")
    if mine is not None and base is not None and mine != base:
        yield Hit(f"pad_token is {mine!r}, the base's is {base!r}", TOKENIZER_CONFIG)
