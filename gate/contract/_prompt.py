"""The prompt contract: the serving template, how turns end, and what it must render."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field, model_validator

from gate.contract._section import Section
from gate.contract_files import ContractFile


class Message(Section):
    """One chat message."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class RenderFixture(Section):
    """Messages and the exact text the serving template must render for them."""

    name: str
    messages: list[Message] = Field(min_length=1)
    add_generation_prompt: bool = True
    expected: str


class PromptSpec(Section):
    """The prompt contract: the template the server applies and how turns end."""

    chat_template: str = Field(default="", description="the template text; or give chat_template_file")
    chat_template_file: ContractFile | None = Field(
        default=None, description="path relative to the contract file"
    )
    chat_template_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    eos_token_ids: list[int] = Field(min_length=1)
    end_of_turn: str = Field(description="the token the template closes each turn with, e.g. <|im_end|>")
    fixtures: list[RenderFixture] = Field(min_length=1)

    @model_validator(mode="after")
    def _digest_matches(self) -> PromptSpec:
        if not self.chat_template:
            raise ValueError("give the serving template as chat_template or chat_template_file")
        got = hashlib.sha256(self.chat_template.encode()).hexdigest()
        if got != self.chat_template_sha256:
            raise ValueError(
                f"chat_template_sha256 {self.chat_template_sha256} does not match the template (sha256 {got})"
            )
        return self
