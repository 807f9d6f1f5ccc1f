"""The sections of a run config (`configs/*.yaml`). Every key is documented here; unknown keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from jinstruct.run.config import Strict, apply_overrides, parse_override, read_yaml, reference_error, validate
from jinstruct.filter.heuristics import FilterParams
from jinstruct.formats.benchmarks import BenchmarkRef
from jinstruct.generate.recipes import GenerateSection
from jinstruct.llm.settings import EndpointSettings
from jinstruct.llm.tinymodel import resolve_model
from jinstruct.llm.vllm_server import VLLMSettings
from jinstruct.train.qlora import TrainParams
from jinstruct.train.templates import Template


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
    """A model that answers the benchmark: tuned in this run, a base model, an endpoint, or published answers."""

    model_id: str
    trained: str | None = None  # the name of a model tuned in stage 04 of this run (base + adapter)
    base_model: str | None = None  # a Hugging Face name or folder, without an adapter
    endpoint: str | None = None  # a named endpoint (e.g. a baseline behind OpenAI, or vLLM serving a tuned model)
    # published answers, copied into the run unchanged (never regenerated): <benchmark>:<model id> (pinned by the
    # registry, e.g. ja-vicuna:openai--text-davinci-003), an https URL, or a path (FastChat or ja-vicuna layout)
    answers: str | None = None
    answers_sha256: str | None = None  # pins a URL's file (required) or checks a path's
    template: Template | None = None  # None: what the model was trained with, else chat
    load_in_4bit: bool | None = None  # None: as trained (local models)
    engine: Literal["transformers", "vllm"] = "transformers"  # local models: generate, or serve base + adapter
    # with vLLM (answer.vllm) for the stage and answer through it (the adapter on the unquantised base)

    def model_post_init(self, _: Any) -> None:
        given = [k for k in ("trained", "base_model", "endpoint", "answers") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"model {self.model_id!r}: give exactly one of trained, base_model, endpoint, answers")
        if self.engine == "vllm" and self.endpoint:
            raise ValueError(f"model {self.model_id!r}: engine vllm serves a local model (trained or base_model); "
                             "an endpoint is answered through its own server")
        if "/" in self.model_id:
            raise ValueError(f"model_id {self.model_id!r}: no '/' (it names a file)")


class AnswerSection(Strict):
    """05: the benchmark answered by each model, FastChat answer format."""

    # a name (ja_qa80, ja-vicuna, ja-mt-bench: see jinstruct.formats.benchmarks), {name, sha256: {file: sha256}}
    # for files the registry leaves unpinned, or a folder with question.jsonl (and reference_answer/)
    benchmark: str | BenchmarkRef = "data/bench/ja_qa80"
    per_category: int | None = None  # the first N questions of each category (None: all)
    models: list[AnswerModel] = Field(default_factory=list)
    max_new_tokens: int = 1024
    batch_size: int = 8
    seed: int = 0
    vllm: VLLMSettings = Field(default_factory=VLLMSettings)  # how models with engine: vllm are served


class JudgeSection(Strict):
    """06: pairwise (both orders) and single 1-10 judging through the LLM client."""

    endpoint: str = "judge"
    name: str | None = None  # the judge's name in file names and records (None: the endpoint's model)
    # a FastChat judge_prompts.jsonl, or a benchmark name for its own prompts (ja-vicuna); None: the project's
    # Japanese prompts
    prompts: str | None = None
    verdict_rule: Literal["last", "fastchat"] = "last"  # last verdict in the reply, or FastChat's own reading
    baseline: str | None = None  # pairwise against this model_id; None: all pairs
    pairwise: bool = True
    single: bool = True
    mode: Literal["text", "json", "choice"] = "text"  # free-text verdicts, or structured outputs
    max_tokens: int = 2048
    max_attempts: int = 3
    max_reasoning_chars: int | None = None  # cap the reasoning of JSON verdicts (tiny models only)
    bootstrap_rounds: int = 1000
    retry_errors: bool = False  # judge again the games recorded as errors (as `run --retry-errors` does once)


class AgreementSection(Strict):
    """07: a sample of the judged games for people to label, their labels, and agreement with the judge."""

    judge: str | None = None  # whose pairwise judgments (None: judge.name, else the run's only *_pair.jsonl)
    sample_size: int | None = 40  # games to label (None: every judged game)
    strata: list[Literal["category", "verdict"]] = Field(default_factory=lambda: ["category", "verdict"])
    disagreement_weight: float = Field(default=1.0, gt=0)  # > 1: games whose two judge orders disagree come first
    turn: int | None = None  # only this turn (None: every turn)
    labels: list[str] = Field(default_factory=list)  # Label Studio JSON exports, filled CSV sheets, FastChat human files
    annotator_prefix: str | None = None  # count only annotators named so (FastChat's script: "expert")
    bootstrap_rounds: int = 1000
class TaskModel(Strict):
    """A model stage 08 evaluates: tuned in this run (base + adapter) or a base model."""

    model_id: str
    trained: str | None = None  # the name of a model tuned in stage 04 of this run
    base_model: str | None = None  # a Hugging Face name or folder (or tiny), without an adapter

    def model_post_init(self, _: Any) -> None:
        if (self.trained is None) == (self.base_model is None):
            raise ValueError(f"tasks model {self.model_id!r}: give exactly one of trained, base_model")
        if "/" in self.model_id:
            raise ValueError(f"model_id {self.model_id!r}: no '/' (it names a folder)")


class TasksSection(Strict):
    """08: few-shot accuracy and perplexity with lm-evaluation-harness, base against tuned."""

    models: list[TaskModel] = Field(default_factory=list)  # empty: each train.models entry and its base model
    # lm-eval task names: the shipped YAMLs (jinstruct_*, jglue_*), or any of lm-eval's own
    tasks: list[str] = Field(default_factory=lambda: ["jinstruct_nli", "jinstruct_sentiment", "jinstruct_commonsense"])
    shots: list[int] = Field(default_factory=lambda: [2], min_length=1)  # the accuracy tasks at each few-shot count
    perplexity: list[str] = Field(default_factory=lambda: ["jinstruct_qa_ppl"])  # rolling-perplexity tasks, once
    limit: int | None = Field(default=None, gt=0)  # score only the first N documents of each task
    batch_size: int = Field(default=8, gt=0)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: the model's own
    fewshot_seed: int = 1234  # lm-eval's default


class FiguresSection(Strict):
    """Every figure a notebook draws."""

    language: Literal["ja", "en"] = "ja"  # labels, titles and category names; --set figures.language=en


class RunConfig(Strict):
    name: str
    description: str = ""
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    stages: str | None = None  # the notebooks `run` and `estimate` cover unless --stages says (e.g. 05-06); None: all
    llm: LLMSection = Field(default_factory=LLMSection)
    seeds: SeedsSection = Field(default_factory=SeedsSection)
    generate: GenerateSection = Field(default_factory=GenerateSection)
    filter: FilterParams = Field(default_factory=FilterParams)  # 03: heuristics, then exact ROUGE-L dedup
    train: TrainSection = Field(default_factory=TrainSection)
    answer: AnswerSection = Field(default_factory=AnswerSection)
    judge: JudgeSection = Field(default_factory=JudgeSection)
    agreement: AgreementSection = Field(default_factory=AgreementSection)
    tasks: TasksSection = Field(default_factory=TasksSection)
    figures: FiguresSection = Field(default_factory=FiguresSection)
    extra: dict[str, Any] = Field(default_factory=dict)  # free-form values a custom notebook may read

    @model_validator(mode="after")
    def _references(self) -> RunConfig:
        """Names that point elsewhere in the config are checked at load, with the key that holds them: the endpoint
        of each stage (when the config defines endpoints at all), the trained model an answer model names, and the
        judge's baseline (when answer.models are listed)."""
        endpoints = self.llm.endpoints
        runs = _stage_numbers(self.stages) if self.stages else None  # only the stages the config runs
        if endpoints:
            used = [(1, "seeds.endpoint", self.seeds.endpoint), (2, "generate.endpoint", self.generate.endpoint),
                    (6, "judge.endpoint", self.judge.endpoint)]
            used += [(5, f"answer.models.{i}.endpoint", m.endpoint) for i, m in enumerate(self.answer.models)
                     if m.endpoint]
            used = [(key, name) for stage, key, name in used if runs is None or stage in runs]
            for key, name in used:
                if name not in endpoints:
                    raise reference_error(key, f"no endpoint '{name}' under llm.endpoints "
                                               f"(have: {', '.join(endpoints)})")
        trained = [m.name for m in self.train.models]
        for i, m in enumerate(self.answer.models):
            if m.trained and m.trained not in trained:
                raise reference_error(f"answer.models.{i}.trained", f"no train.models entry named '{m.trained}' "
                                                                     f"(have: {', '.join(trained) or 'none'})")
        ids = [m.model_id for m in self.answer.models]
        if self.judge.baseline is not None and ids and self.judge.baseline not in ids:
            raise reference_error("judge.baseline", f"'{self.judge.baseline}' is not a model_id of answer.models "
                                                    f"(have: {', '.join(ids)})")
        return self


def _stage_numbers(spec: str) -> set[int]:
    """The stage numbers of "01-06", "02", "01,03,05-06" (an unreadable spec checks every stage)."""
    wanted: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        if not (lo.isdigit() and (hi.isdigit() or not hi)):
            return set(range(1, 100))
        wanted.update(range(int(lo), int(hi or lo) + 1))
    return wanted


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
