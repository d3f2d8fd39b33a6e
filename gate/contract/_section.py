"""The base of every contract section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A contract section: frozen, and a key it does not know is an error (a typo must not pass)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
