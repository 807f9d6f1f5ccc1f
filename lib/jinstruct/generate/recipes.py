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
from jinstruct.generate.reuse import source_run, take_prefix
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
    size_field: str  # the Config field that says how many records it makes (None there: all it can)

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
        # take the first N records (N: the recipe's size) of another run's generated data instead of generating:
        # a run name beside this one, or a path to a run folder (see jinstruct.generate.reuse)
        "from_run": (str | None, None),
    }
    fields |= {name: (r.Config, Field(default_factory=r.Config)) for name, r in RECIPES.items()}
    return create_model("GenerateSection", __config__=ConfigDict(extra="forbid"), __doc__=(
        "02: which recipe makes the instruction records, the endpoint it talks to, and each recipe's own settings."),
        **fields)


GenerateSection = _section()


def chosen(section: Any) -> tuple[type[Recipe], Any]:
    """The recipe a `GenerateSection` selects, and its config."""
    return RECIPES[section.recipe], getattr(section, section.recipe)


def size(section: Any) -> int | None:
    """How many records the chosen recipe makes (None: all it can, e.g. every English record translated)."""
    recipe, cfg = chosen(section)
    return getattr(cfg, recipe.size_field)


def size_key(section: Any) -> str:
    """The dotted config key of the chosen recipe's size, e.g. `generate.self_instruct.target`."""
    recipe, _ = chosen(section)
    return f"generate.{recipe.name}.{recipe.size_field}"


def describe(section: Any) -> str:
    recipe, cfg = chosen(section)
    if section.from_run:
        n = size(section)
        return f"the first {'all' if n is None else f'{n:,}'} {recipe.name} records of run {section.from_run} (no LLM call)"
    return recipe.describe(cfg)


def estimate_generation(section: Any, stage: StageContext) -> Estimate | list[Any]:
    """What the chosen recipe would send and cost, calling nothing (cached answers are free)."""
    recipe, cfg = chosen(section)
    if section.from_run:
        return Estimate(model=f"(from run {section.from_run})", requests=0, cached=0, to_send=0, prompt_tokens=0,
                        completion_tokens=0, max_completion_tokens=0, cost_usd=0.0, max_cost_usd=0.0, priced=True)
    return recipe.estimate(cfg, section.endpoint, stage)


def estimate_parts(section: Any, stage: StageContext) -> list[tuple[str, str, Estimate]]:
    """`estimate_generation` as (what, endpoint, estimate) per LLM step of the recipe."""
    est = estimate_generation(section, stage)
    if isinstance(est, Estimate):
        return [(describe(section), section.endpoint, est)]
    return [(what, endpoint, e) for what, endpoint, e in est]


def run_generation(section: Any, stage: StageContext) -> Any:
    """Run the chosen recipe into the run's `data/generated.jsonl` (resuming it); returns its statistics. With
    `from_run`, copy the first records of that run's generated data instead (`jinstruct.generate.reuse`)."""
    recipe, cfg = chosen(section)
    Path(stage.layout.data).mkdir(parents=True, exist_ok=True)
    if section.from_run:
        return take_prefix(source_run(section.from_run, stage.layout.root), stage.layout.generated, size(section),
                           recipe.name)
    return recipe.run(cfg, section.endpoint, stage)
