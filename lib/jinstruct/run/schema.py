"""The sections of a run config (`configs/*.yaml`). Every key is documented here; unknown keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from jinstruct.run.config import Strict, apply_overrides, parse_override, read_yaml, validate
from jinstruct.filter.heuristics import FilterParams
from jinstruct.generate.recipes import GenerateSection
from jinstruct.llm.settings import EndpointSettings
from jinstruct.llm.tinymodel import resolve_model
from jinstruct.train.qlora import TrainParams


class LLMSection(Strict):
    """Named endpoints; every stage names the one it uses."""

    cache: str = "runs/llm_cache.sqlite"  # shared by all runs: a repeated or resumed run never pays twice
    endpoints: dict[str, EndpointSettings] = Field(default_factory=dict)


class SeedsSection(Strict):
    """01: English seeds -> machine translation -> post-editing sheet -> Japanese seeds."""

    english: Literal["sample", "official"] = "sample"  # official: the 175 self-instruct seeds, sha256-pinned
    english_limit: int | None = None  # translate only the first N English seeds
    endpoint: str = "translator"
    max_tokens: int | None = None
    max_field_chars: int | None = None  # cap each translated field (tiny models only; strict OpenAI rejects it)
    japanese: str = "data/seeds/ja_seed_tasks.jsonl"  # the shipped post-edited Japanese seeds
    edited_sheet: str | None = None  # a post-editing sheet edited by a person; None: the shipped seeds stand in


class TrainModel(TrainParams):
    """One model to tune: a name (its folder under `models/`) and the QLoRA hyperparameters."""

    name: str

    def params(self) -> TrainParams:
        """The hyperparameters to train with, `base_model: tiny` resolved to the built tiny model."""
        return TrainParams(**{**self.model_dump(exclude={"name"}), "base_model": resolve_model(self.base_model)})


class TrainSection(Strict):
    """04: QLoRA on `data/train.jsonl`, one entry per base model."""

    train_file: str = "data/train.jsonl"  # inside the run folder
    models: list[TrainModel] = Field(default_factory=list)


class AnswerModel(Strict):
    """A model that answers the benchmark: tuned in this run, a base model, or an endpoint."""

    model_id: str
    trained: str | None = None  # the name of a model tuned in stage 04 of this run (base + adapter)
    base_model: str | None = None  # a Hugging Face name or folder, without an adapter
    endpoint: str | None = None  # a named endpoint (e.g. a baseline behind OpenAI, or vLLM serving a tuned model)
    template: Literal["chat", "alpaca_ja"] | None = None  # None: what the model was trained with, else chat
    load_in_4bit: bool | None = None  # None: as trained (local models)

    def model_post_init(self, _: Any) -> None:
        given = [k for k in ("trained", "base_model", "endpoint") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"model {self.model_id!r}: give exactly one of trained, base_model, endpoint")
        if "/" in self.model_id:
            raise ValueError(f"model_id {self.model_id!r}: no '/' (it names a file)")


class AnswerSection(Strict):
    """05: the benchmark answered by each model, FastChat answer format."""

    benchmark: str = "data/bench/ja_qa80"  # a folder with question.jsonl (and reference_answer/)
    per_category: int | None = None  # the first N questions of each category (None: all)
    models: list[AnswerModel] = Field(default_factory=list)
    max_new_tokens: int = 1024
    batch_size: int = 8
    seed: int = 0


class JudgeSection(Strict):
    """06: pairwise (both orders) and single 1-10 judging through the LLM client."""

    endpoint: str = "judge"
    name: str | None = None  # the judge's name in file names and records (None: the endpoint's model)
    prompts: str | None = None  # a FastChat judge_prompts.jsonl (None: the project's Japanese prompts)
    baseline: str | None = None  # pairwise against this model_id; None: all pairs
    pairwise: bool = True
    single: bool = True
    mode: Literal["text", "json", "choice"] = "text"  # free-text verdicts, or structured outputs
    max_tokens: int = 2048
    max_attempts: int = 3
    max_reasoning_chars: int | None = None  # cap the reasoning of JSON verdicts (tiny models only)
    bootstrap_rounds: int = 1000


class FiguresSection(Strict):
    """Every figure a notebook draws."""

    language: Literal["ja", "en"] = "ja"  # labels, titles and category names; --set figures.language=en


class RunConfig(Strict):
    name: str
    description: str = ""
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    llm: LLMSection = Field(default_factory=LLMSection)
    seeds: SeedsSection = Field(default_factory=SeedsSection)
    generate: GenerateSection = Field(default_factory=GenerateSection)
    filter: FilterParams = Field(default_factory=FilterParams)  # 03: heuristics, then exact ROUGE-L dedup
    train: TrainSection = Field(default_factory=TrainSection)
    answer: AnswerSection = Field(default_factory=AnswerSection)
    judge: JudgeSection = Field(default_factory=JudgeSection)
    figures: FiguresSection = Field(default_factory=FiguresSection)
    extra: dict[str, Any] = Field(default_factory=dict)  # free-form values a custom notebook may read


def load_config(path: str | Path, overrides: dict[str, Any] | list[str] | None = None) -> Any:
    """Read, override and validate a run config (a `jinstruct.run.schema.RunConfig`)."""
    path = Path(path)
    data, root = read_yaml(path)
    overridden: set[str] = set()
    if overrides:
        items = [parse_override(o)[0] for o in overrides] if isinstance(overrides, list) else list(overrides)
        overridden = set(items)
    data = apply_overrides(data, overrides)
    return validate(RunConfig, data, str(path), root, overridden)
