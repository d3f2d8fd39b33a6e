"""The smoke test's prompts and thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gate.contract._prompt import Message
from gate.contract._section import Section


class SmokePrompt(Section):
    """A prompt the smoke test sends through the real server."""

    name: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int = Field(default=32, gt=0)
    expect_regex: str | None = None


class SmokeSpec(Section):
    """Smoke-test prompts and thresholds (used by ``gate smoke``)."""

    prompts: list[SmokePrompt] = Field(min_length=1)
    parity_min_match: float = Field(default=0.9, ge=0, le=1)
    min_logprob_shift: float = Field(default=0.01, ge=0)
    max_ttft_s: float = Field(default=10.0, gt=0)
    min_tokens_per_s: float = Field(default=1.0, ge=0)
    latency_max_tokens: int = Field(
        default=32, gt=1, description="tokens generated (EOS ignored) to time decode"
    )
    canary_prompt: str = Field(
        default="The capital of France is",
        min_length=1,
        description="raw base-model prompt whose greedy log-probs a warm server must keep (poisoning check)",
    )
    canary_max_tokens: int = Field(default=4, gt=0)
    canary_tolerance: float = Field(default=0.1, gt=0, description="largest canary log-prob drift, in nats")
    parity_dtype: Literal["float32", "bfloat16"] = Field(
        default="float32", description="dtype of the transformers + PEFT reference for greedy parity"
    )
    parity_tie_tolerance: float = Field(
        default=0.01,
        ge=0,
        description="a divergence where vLLM rated the reference's token within this many nats of its own "
        "choice is a numerical tie, not a mismatch",
    )
