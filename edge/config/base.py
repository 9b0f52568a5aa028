"""Shared base for every config section: unknown keys are errors, values are validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every config section (Frigate habit: ``extra="forbid"``, described fields)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
