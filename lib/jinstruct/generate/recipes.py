"""The recipe registry: the ways stage 02 makes instruction records, chosen by the config's `generate.recipe`.

A recipe is a class with a `name`, a `Config` (its own typed config section, `generate.<name>` in the YAML, every
field with a default) and three functions of that config and the stage: `describe`, `estimate` (what it would send,
calling nothing) and `run` (make `data/generated.jsonl`, resuming it). Adding a recipe is one module and one line in
`RECIPES` below; `--set generate.recipe=NAME` then switches any config to it, the defaults filling the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, create_model

from jinstruct.formats.layout import RunLayout
from jinstruct.generate.from_datasets import FromDatasets
from jinstruct.generate.human_instructions import HumanInstructions
from jinstruct.generate.self_instruct import SelfInstruct
from jinstruct.generate.translate import TranslateAlpaca
from jinstruct.llm import Estimate, LLMClient


class StageContext(Protocol):
    """What a recipe needs of the notebook's stage (`jinstruct.run.Stage`)."""

    layout: RunLayout

    @property
    def cfg(self) -> Any: ...

    def client(self, name: str) -> LLMClient: ...


class Recipe(Protocol):
    name: str
    Config: type[BaseModel]

    @staticmethod
    def describe(cfg: Any) -> str: ...

    @staticmethod
    def estimate(cfg: Any, endpoint: str, stage: StageContext) -> Estimate | list[Any]: ...
    # a recipe with several LLM steps returns one (what, endpoint, estimate) tuple per step

    @staticmethod
    def run(cfg: Any, endpoint: str, stage: StageContext) -> Any: ...


RECIPES: dict[str, type[Recipe]] = {r.name: r for r in (
    SelfInstruct,
    TranslateAlpaca,
    FromDatasets,
    HumanInstructions,
)}


def _section() -> type[BaseModel]:
    fields: dict[str, Any] = {
        "recipe": (Literal[tuple(RECIPES)], "self_instruct"),  # type: ignore[valid-type]
        "endpoint": (str, "generator"),  # the endpoint that generates (or translates)
    }
    fields |= {name: (r.Config, Field(default_factory=r.Config)) for name, r in RECIPES.items()}
    return create_model("GenerateSection", __config__=ConfigDict(extra="forbid"), __doc__=(
        "02: which recipe makes the instruction records, the endpoint it talks to, and each recipe's own settings."),
        **fields)


GenerateSection = _section()


def chosen(section: Any) -> tuple[type[Recipe], Any]:
    """The recipe a `GenerateSection` selects, and its config."""
    return RECIPES[section.recipe], getattr(section, section.recipe)


def describe(section: Any) -> str:
    recipe, cfg = chosen(section)
    return recipe.describe(cfg)


def estimate_generation(section: Any, stage: StageContext) -> Estimate | list[Any]:
    """What the chosen recipe would send and cost, calling nothing (cached answers are free)."""
    recipe, cfg = chosen(section)
    return recipe.estimate(cfg, section.endpoint, stage)


def estimate_parts(section: Any, stage: StageContext) -> list[tuple[str, str, Estimate]]:
    """`estimate_generation` as (what, endpoint, estimate) per LLM step of the recipe."""
    est = estimate_generation(section, stage)
    if isinstance(est, Estimate):
        return [(describe(section), section.endpoint, est)]
    return [(what, endpoint, e) for what, endpoint, e in est]


def run_generation(section: Any, stage: StageContext) -> Any:
    """Run the chosen recipe into the run's `data/generated.jsonl` (resuming it); returns its statistics."""
    recipe, cfg = chosen(section)
    Path(stage.layout.data).mkdir(parents=True, exist_ok=True)
    return recipe.run(cfg, section.endpoint, stage)
