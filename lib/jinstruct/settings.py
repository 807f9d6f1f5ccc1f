"""The sections of a run config (`configs/*.yaml`). Every key is documented here; unknown keys are errors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from jinstruct.config import Strict


class LLMSection(Strict):
    """Named endpoints; every stage names the one it uses."""

    cache: str = "runs/llm_cache.sqlite"  # shared by all runs: a repeated or resumed run never pays twice
    endpoints: dict[str, dict[str, Any]] = Field(default_factory=dict)


class SeedsSection(Strict):
    english: Literal["sample", "official"] = "sample"  # official: the 175 self-instruct seeds, fetched with a pinned sha256
    english_limit: int | None = None  # translate only the first N English seeds
    translate_endpoint: str = "local"
    japanese: str = "data/seeds/ja_seed_tasks.jsonl"  # the post-edited Japanese seeds the later stages use
    edited_sheet: str | None = None  # a post-editing sheet edited by a person; None: the shipped seeds stand in


class RunConfig(Strict):
    name: str
    description: str = ""
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    llm: LLMSection = Field(default_factory=LLMSection)
    seeds: SeedsSection = Field(default_factory=SeedsSection)
    extra: dict[str, Any] = Field(default_factory=dict)  # free-form values a custom notebook may read
