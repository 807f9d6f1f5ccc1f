"""The instruction record every recipe writes, and the training record stage 04 reads (TRL's conversational format).

Both are read loosely: the fields named here are checked, anything else a recipe adds (`scores`, `most_similar`,
the source's licence) travels along untouched.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class InstructionRecord(BaseModel):
    """The instruction-record contract (DESIGN.md): what filtering needs; other fields travel along untouched.

    Records made from existing datasets (recipe `from_datasets`) also carry `source` as {dataset, config, split,
    revision, row}, the source's `license`, and the `template` that made them (stage 03 then skips its ROUGE-L
    filter: templated instructions repeat by design)."""

    model_config = ConfigDict(extra="allow")
    id: str
    instruction: str
    input: str = ""
    output: str
    recipe: str | None = None
    source: Any = None
    model: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant"]
    content: str


class TrainingRecord(BaseModel):
    """TRL's conversational format; `instruction`/`input` are optional, used by the alpaca_ja template."""

    model_config = ConfigDict(extra="allow")
    messages: list[Message] = Field(min_length=2)
    instruction: str | None = None
    input: str | None = None
