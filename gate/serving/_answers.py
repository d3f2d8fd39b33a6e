"""What a vLLM server answers, typed: model cards, load results, completions, stream timings.

:mod:`._client` speaks HTTP; this module turns vLLM's OpenAI-compatible JSON into these
values, keeping NaN visible (a poisoned server's log-probs must not look finite) and
vLLM's own error text (the most useful diagnosis a user gets).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from gate.errors import ServerError

__all__ = [
    "Completion",
    "LoadResult",
    "ModelCard",
    "StreamTiming",
    "TokenLogprob",
    "chat_answer",
    "error_message",
    "first_choice",
    "number",
    "text_answer",
]


@dataclass(frozen=True)
class ModelCard:
    """One entry of ``GET /v1/models``: the base model or a loaded adapter."""

    id: str
    parent: str | None
    root: str | None
    max_model_len: int | None = None


@dataclass(frozen=True)
class LoadResult:
    """The outcome of ``POST /v1/load_lora_adapter``, with vLLM's own message."""

    ok: bool
    status_code: int
    message: str
    seconds: float


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its id, text, log-probability and the top alternatives."""

    token_id: int | None
    text: str
    logprob: float
    top: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Completion:
    """One greedy answer from ``/v1/chat/completions`` or ``/v1/completions``."""

    text: str
    finish_reason: str | None
    tokens: tuple[TokenLogprob, ...]
    completion_tokens: int
    seconds: float

    @property
    def token_ids(self) -> list[int]:
        """Generated token ids (needs ``return_tokens_as_token_ids``)."""
        return [t.token_id for t in self.tokens if t.token_id is not None]

    def finite(self) -> bool:
        """Whether every returned log-probability is a finite number."""
        return all(
            math.isfinite(t.logprob) and all(math.isfinite(v) for v in t.top.values()) for t in self.tokens
        )


@dataclass(frozen=True)
class StreamTiming:
    """Latency of one streamed answer."""

    ttft_s: float
    total_s: float
    completion_tokens: int

    @property
    def tokens_per_s(self) -> float:
        """Decode throughput after the first token (the first token is TTFT's)."""
        decode = self.total_s - self.ttft_s
        if self.completion_tokens <= 1 or decode <= 0:
            return 0.0
        return (self.completion_tokens - 1) / decode


def _completion(
    data: Mapping[str, Any],
    choice: Mapping[str, Any],
    text: object,
    tokens: list[TokenLogprob],
    seconds: float,
) -> Completion:
    return Completion(
        text=text if isinstance(text, str) else "",
        finish_reason=choice.get("finish_reason"),
        tokens=tuple(tokens),
        completion_tokens=_usage(data, len(tokens)),
        seconds=seconds,
    )


def chat_answer(data: Mapping[str, Any], seconds: float) -> Completion:
    """The :class:`Completion` in a ``/v1/chat/completions`` answer."""
    choice = first_choice(data, "/v1/chat/completions")
    message = choice.get("message") or {}
    text = message.get("content") if isinstance(message, dict) else None
    tokens: list[TokenLogprob] = []
    content = (choice.get("logprobs") or {}).get("content") or []
    for item in content:
        top = {str(t.get("token")): number(t.get("logprob")) for t in item.get("top_logprobs") or []}
        tokens.append(_token(str(item.get("token", "")), number(item.get("logprob")), top))
    return _completion(data, choice, text, tokens, seconds)


def text_answer(data: Mapping[str, Any], seconds: float) -> Completion:
    """The :class:`Completion` in a ``/v1/completions`` answer."""
    choice = first_choice(data, "/v1/completions")
    lp = choice.get("logprobs") or {}
    names = lp.get("tokens") or []
    values = lp.get("token_logprobs") or []
    tops = lp.get("top_logprobs") or []
    tokens: list[TokenLogprob] = []
    for i, name in enumerate(names):
        top_raw = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        top = {str(k): number(v) for k, v in top_raw.items()}
        tokens.append(_token(str(name), number(values[i] if i < len(values) else None), top))
    text = choice.get("text")
    return _completion(data, choice, text, tokens, seconds)


def error_message(response: httpx.Response) -> str:
    """vLLM's own error text from an error response (``{"error": {"message": ...}}`` or similar)."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:2000] or f"HTTP {response.status_code}"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:2000]
        for key in ("message", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])[:2000]
    return json.dumps(data)[:2000]


def first_choice(data: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The first of ``choices`` in an answer to ``path`` (a :class:`ServerError` when there is none)."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ServerError(f"vLLM answered {path} without choices: {json.dumps(data)[:300]}")
    return choices[0]


def number(value: object) -> float:
    """A log-probability as a float; anything that is not a number reads as NaN."""
    # Poisoned servers send NaN (or null where JSON refuses NaN): keep it visible as NaN.
    if isinstance(value, int | float):
        return float(value)
    return math.nan


def _token(name: str, logprob: float, top: Mapping[str, float]) -> TokenLogprob:
    token_id: int | None = None
    if name.startswith("token_id:"):
        try:
            token_id = int(name.removeprefix("token_id:"))
        except ValueError:
            token_id = None
    return TokenLogprob(token_id=token_id, text=name, logprob=logprob, top=dict(top))


def _usage(data: Mapping[str, Any], fallback: int) -> int:
    usage = data.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        return int(usage["completion_tokens"])
    return fallback
