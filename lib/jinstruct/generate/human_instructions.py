"""Recipe `human_instructions` (arXiv 2503.23714, "LMSYS-Chat-1M-Synth"): human-written instructions, translated
into Japanese, answered n times by an open-weight model, each answer graded 0-10 by an LLM judge, the best kept.

Six sub-stages, each a streamed file in the run folder (`RunLayout.hi_*`), each resumable on its own and skipped
when its output is complete with the same settings and inputs; `stages` runs some of them (one by one at scale):

    sources    data/human_instructions/sources.jsonl     the first user turn of each conversation (`human_sources`)
    filters    .../filtered.jsonl    every row, flagged: empty, duplicate, too long, language, template,
                                     placeholders (`human_filters`)
    translate  .../translated.jsonl  each kept row in Japanese (LLM client or DeepL, protected spans kept;
                                     `human_translate`), and exact duplicates among the translations
    responses  .../responses.jsonl   n responses per instruction: one request with `n` (vLLM, OpenAI), or n requests
    scores     .../scored.jsonl      each response graded 0-10 by the judge through the generic grader, with its
                                     judgement, token length and repetition flag
    select     data/generated.jsonl  the best response per instruction (highest score, ties by fewer tokens),
               .../dropped.jsonl     an optional minimum score; every row that did not make it, with its reason

The LLM sub-stages work in chunks of `chunk` instructions: each chunk's requests go through the client together
(concurrently, or as one OpenAI Batch API job when the endpoint has `use_batch_api`), then its lines are written
and checkpointed. A killed run loses at most the chunk in flight, whose answers the cache already holds.

Each record of `generated.jsonl` is an instruction record (`id` = the conversation id, `instruction` in Japanese,
`output` = the best response) that also carries the published dataset's fields: `conversation_id`,
`user_instruction` (the source text), `duplicate_user_instruction_ja`, `is_template_instruction`, `has_placeholder`,
`synthesized_assistant_responses` (each: `content`, `token_length`, `repetition_flag`, `judgement`,
`preference_score`), and `best_response_index`.

A response is flagged as repetitive when its zlib compression ratio (bytes / compressed bytes) is above
`repetition_ratio`: a reply that loops on the same phrase compresses far better than prose (the test Whisper uses
on its own decodes, threshold 2.4; natural Japanese answers stay under 2).
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from jinstruct.formats.fastchat import load_judge_prompts
from jinstruct.formats.layout import RunLayout
from jinstruct.generate.checkpoint import (
    CheckpointedLines,
    final_lines,
    is_complete,
    read_state,
    stream_jsonl,
)
from jinstruct.generate.human_filters import REASONS, FilterSettings, InstructionFilter, normalize, outcome
from jinstruct.generate.human_sources import SHIPPED, SourceSpec, iter_source
from jinstruct.generate.human_translate import (
    DEFAULT_PROMPT as TRANSLATION_PROMPT,
    Translated,
    deepl_translator,
    load_prompt,
    read_llm_translation,
    translate_with_deepl,
    translation_request,
)
from jinstruct.io import atomic_lines, atomic_write_text
from jinstruct.judge.grader import Grader, GraderSettings
from jinstruct.llm.ledger import Estimate, estimate_text_tokens
from jinstruct.llm.request import ChatRequest, ChatResult
from jinstruct.paths import prompt_path, resolve_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from jinstruct.llm import LLMClient

RECIPE = "human_instructions"
JUDGE_PROMPTS = prompt_path("judge_single_0to10_ja.jsonl")
SUBSTAGES = ("sources", "filters", "translate", "responses", "scores", "select")
SubStage = Literal["sources", "filters", "translate", "responses", "scores", "select"]


class HumanInstructionsConfig(BaseModel):
    """`generate.human_instructions`: the source, the filters, and the endpoints (by name) of each LLM step."""

    model_config = ConfigDict(extra="forbid")

    source: SourceSpec = Field(default_factory=SourceSpec)
    filters: FilterSettings = Field(default_factory=FilterSettings)
    stages: list[SubStage] = Field(default_factory=lambda: list(SUBSTAGES))  # run these sub-stages (in order)

    translate: Literal["llm", "deepl", "none"] = "llm"  # none: the source is Japanese already
    translator: str | None = None  # the translating endpoint (None: generate.endpoint)
    translation_prompt: str | None = None  # a prompt file (None: prompts/translate_instruction_ja.txt)
    translation_max_tokens: int | None = None
    translation_max_chars: int | None = None  # cap the translation through the schema (tiny models only)
    deepl_formality: str | None = None  # DeepL's formality ("prefer_more", ...)

    responder: str = "responder"  # the endpoint that answers (vLLM serving an open-weight model)
    n: int = Field(default=6, ge=1)  # responses per instruction
    one_request: bool = True  # n in one request (vLLM, OpenAI); False: n requests (endpoints without n)
    temperature: float = Field(default=0.6, ge=0)  # Llama-3.1-Instruct's own generation defaults
    top_p: float = Field(default=0.9, gt=0, le=1)
    max_tokens: int = Field(default=2048, ge=1)
    system_prompt: str | None = None

    judge: str = "judge"  # the endpoint that grades
    judge_prompts: str | None = None  # a FastChat judge prompt file with one single prompt (None: the 0-10 one)
    judge_mode: Literal["text", "json", "choice"] = "text"
    judge_max_tokens: int = Field(default=1024, ge=1)
    judge_max_attempts: int = Field(default=2, ge=1)
    judge_max_reasoning_chars: int | None = None  # tiny models only
    tokenizer: str | None = None  # counts response tokens: a HF name or folder, or "tiny" (None: an estimate)
    repetition_ratio: float = Field(default=2.4, gt=1)

    min_score: float | None = None  # drop an instruction whose best response scores lower
    skip_repetitive: bool = True  # a repetitive response is never the best

    chunk: int = Field(default=512, ge=1)  # instructions per checkpoint (and per Batch API job)
    estimate_instructions: int | None = None  # price this many instructions (None: those of the run, or the source)
    estimate_sample: int = Field(default=200, ge=1)  # build this many instructions' requests and scale up
    expected_response_tokens: int = Field(default=600, ge=1)
    expected_judgement_tokens: int = Field(default=300, ge=1)


class Part(NamedTuple):
    """One LLM step's estimate (the recipe has three: translation, responses, scores)."""

    what: str
    endpoint: str
    estimate: Estimate


# ----- small helpers ---------------------------------------------------------------------------------------------


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _upstream(path: Any, name: str) -> dict[str, Any]:
    """What a sub-stage's output depends on from the one before: its settings and size (it must be complete)."""
    state = read_state(path)
    if state is None or not state.get("complete"):
        raise RuntimeError(f"{path}: the '{name}' sub-stage has not finished; run it first "
                           f"(generate.human_instructions.stages)")
    return {"params": state["params"], "lines": state["lines"]}


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


class TokenCounter:
    """Tokens of a response: with a tokenizer when one is named, else `estimate_text_tokens`."""

    def __init__(self, name: str | None):
        self.name = name

    @cached_property
    def _tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        from jinstruct.llm.tinymodel import resolve_model

        assert self.name is not None
        return AutoTokenizer.from_pretrained(resolve_model(self.name))

    def __call__(self, text: str) -> int:
        if self.name is None:
            return estimate_text_tokens(text)
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])


# ----- sub-stages ------------------------------------------------------------------------------------------------


def collect_sources(cfg: HumanInstructionsConfig, layout: RunLayout) -> int:
    """`sources.jsonl`: the first user turn of each source conversation. Returns the rows written."""
    params = {"source": cfg.source.model_dump()}
    if is_complete(layout.hi_sources, params):
        return int(_upstream(layout.hi_sources, "sources")["lines"])
    out = CheckpointedLines(layout.hi_sources, params)
    done = out.open()
    for row in iter_source(cfg.source, skip=done):
        out.write(row)
    out.finish()
    return out.lines


def filter_sources(cfg: HumanInstructionsConfig, layout: RunLayout) -> Any:
    """`filtered.jsonl`: every source row with its flags and decision. Returns the `FilterOutcome`."""
    params = {"filters": cfg.filters.model_dump(), "sources": _upstream(layout.hi_sources, "sources")}
    if not is_complete(layout.hi_filtered, params):
        rows = lambda: (obj for _, obj in stream_jsonl(layout.hi_sources))  # noqa: E731 (read again each pass)
        f = InstructionFilter(cfg.filters)
        decisions, templates = f.decide(rows())
        names = f.names(rows(), decisions, templates)
        out = CheckpointedLines(layout.hi_filtered, params)
        out.open(resume=False)  # one pass over everything decides each row: nothing partial to resume
        for record in f.records(rows(), decisions, names):
            out.write(record)
        out.finish()
    return outcome(final_lines(layout.hi_filtered))


def _kept(layout: RunLayout) -> Iterator[dict[str, Any]]:
    return (r for r in final_lines(layout.hi_filtered) if r["kept"])


def translate_instructions(cfg: HumanInstructionsConfig, layout: RunLayout, client: LLMClient | None,
                           translator: Any = None, progress: bool = True) -> Counter[str]:
    """`translated.jsonl`: each kept row with its Japanese text (rows detected as Japanese are kept as they are),
    and `duplicate_user_instruction_ja` for a translation equal to an earlier one. Returns counts by status."""
    prompt = load_prompt(resolve_path(cfg.translation_prompt) if cfg.translation_prompt else TRANSLATION_PROMPT)
    params = {"translate": cfg.translate, "model": client.model if client is not None else None, "prompt": prompt,
              "max_tokens": cfg.translation_max_tokens, "max_chars": cfg.translation_max_chars,
              "formality": cfg.deepl_formality, "filtered": _upstream(layout.hi_filtered, "filters")}
    if not is_complete(layout.hi_translated, params):
        out = CheckpointedLines(layout.hi_translated, params)
        done = out.open()
        first_ja: dict[str, str] = {}
        for r in final_lines(layout.hi_translated):  # the translations already made, for duplicates
            if r["instruction_ja"] is not None:
                first_ja.setdefault(normalize(r["instruction_ja"]), r["conversation_id"])
        if cfg.translate == "deepl" and translator is None:
            translator = deepl_translator()
        for chunk in _chunks(islice(_kept(layout), done, None), cfg.chunk):
            for row, t in zip(chunk, _translate_chunk(cfg, chunk, client, translator, prompt, progress), strict=True):
                text = t.text
                duplicate = None
                if text is not None:
                    key = normalize(text)
                    duplicate = first_ja.get(key)
                    first_ja.setdefault(key, row["conversation_id"])
                out.write({"conversation_id": row["conversation_id"], "instruction": row["instruction"],
                           "instruction_ja": text, "translation": t.translation, "translation_status": t.status,
                           "translation_problems": t.problems, "duplicate_user_instruction_ja": duplicate})
            out.flush()
        out.finish()
    return Counter(r["translation_status"] for r in final_lines(layout.hi_translated))


def needs_translation(cfg: HumanInstructionsConfig, row: dict[str, Any]) -> bool:
    """Not Japanese: detected so by the filters (before them, in an estimate: as the source declares)."""
    return cfg.translate != "none" and (row.get("language_detected") or row.get("language")) != "ja"


def _translate_chunk(cfg: HumanInstructionsConfig, rows: Sequence[dict[str, Any]], client: LLMClient | None,
                     translator: Any, prompt: str, progress: bool) -> list[Translated]:
    out: list[Translated | None] = [None] * len(rows)
    todo = [i for i, r in enumerate(rows) if needs_translation(cfg, r)]
    for i, r in enumerate(rows):
        if i not in todo:
            out[i] = Translated(r["instruction"].strip(), "ok", "none")
    texts = [rows[i]["instruction"] for i in todo]
    if cfg.translate == "deepl":
        cache = client.cache if client is not None else None
        done = translate_with_deepl(texts, translator, cache, formality=cfg.deepl_formality)
    elif texts:
        if client is None:
            raise ValueError("translation through the LLM client needs a client (generate.human_instructions.translator)")
        requests = [translation_request(t, prompt, max_tokens=cfg.translation_max_tokens,
                                        max_chars=cfg.translation_max_chars, tag=rows[i]["conversation_id"])
                    for i, t in zip(todo, texts)]
        results = client.chat_many(requests, desc="translate", progress=progress)
        done = [read_llm_translation(t, r) for t, r in zip(texts, results, strict=True)]
    else:
        done = []
    for i, t in zip(todo, done, strict=True):
        out[i] = t
    return [t for t in out if t is not None]


def _answerable(layout: RunLayout) -> Iterator[dict[str, Any]]:
    return (r for r in final_lines(layout.hi_translated)
            if r["instruction_ja"] is not None and r["duplicate_user_instruction_ja"] is None)


def response_requests(cfg: HumanInstructionsConfig, row: dict[str, Any], seed: int | None) -> list[ChatRequest]:
    """The request(s) for one instruction's n responses: one with `n`, or n with their own sample index."""
    messages = ([{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else [])
    messages.append({"role": "user", "content": row["instruction_ja"]})
    common = {"messages": messages, "temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens,
              "seed": seed}
    if cfg.one_request:
        return [ChatRequest(n=cfg.n, tag=f"{RECIPE}:{row['conversation_id']}", **common)]
    return [ChatRequest(sample_index=k, tag=f"{RECIPE}:{row['conversation_id']}:{k}", **common) for k in range(cfg.n)]


def sample_responses(cfg: HumanInstructionsConfig, layout: RunLayout, client: LLMClient, seed: int | None = 0,
                     progress: bool = True) -> int:
    """`responses.jsonl`: n responses per translated instruction. Returns the instructions answered."""
    params = {"model": client.model, "n": cfg.n, "one_request": cfg.one_request, "temperature": cfg.temperature,
              "top_p": cfg.top_p, "max_tokens": cfg.max_tokens, "system_prompt": cfg.system_prompt, "seed": seed,
              "translated": _upstream(layout.hi_translated, "translate")}
    if not is_complete(layout.hi_responses, params):
        out = CheckpointedLines(layout.hi_responses, params)
        done = out.open()
        for chunk in _chunks(islice(_answerable(layout), done, None), cfg.chunk):
            per_row = [response_requests(cfg, row, seed) for row in chunk]
            flat = [req for reqs in per_row for req in reqs]
            results = iter(client.chat_many(flat, desc="responses", progress=progress))
            for row, reqs in zip(chunk, per_row):
                out.write(_responses_line(row, [next(results) for _ in reqs], client.model))
            out.flush()
        out.finish()
    return int(_upstream(layout.hi_responses, "responses")["lines"])


def _responses_line(row: dict[str, Any], results: Sequence[ChatResult], model: str) -> dict[str, Any]:
    responses, errors = [], []
    for r in results:
        if r.error is not None:
            errors.append(r.error)
            continue
        responses += [{"content": t, "finish_reason": f} for t, f in zip(r.texts, r.finish_reasons)]
    return {"conversation_id": row["conversation_id"], "instruction_ja": row["instruction_ja"],
            "model": next((r.model for r in results if r.model), model), "responses": responses,
            "error": "; ".join(errors) or None}


def make_grader(cfg: HumanInstructionsConfig, client: LLMClient, seed: int | None = 0) -> Grader:
    prompts = load_judge_prompts(resolve_path(cfg.judge_prompts) if cfg.judge_prompts else JUDGE_PROMPTS)
    settings = GraderSettings(mode=cfg.judge_mode, max_tokens=cfg.judge_max_tokens,
                              max_attempts=cfg.judge_max_attempts, max_reasoning_chars=cfg.judge_max_reasoning_chars,
                              seed=seed)
    return Grader(client, settings, prompts)


def score_responses(cfg: HumanInstructionsConfig, layout: RunLayout, client: LLMClient, seed: int | None = 0,
                    progress: bool = True) -> int:
    """`scored.jsonl`: each response with its judgement, 0-10 score, token length and repetition flag. Returns the
    instructions scored."""
    grader = make_grader(cfg, client, seed)
    single = grader.prompt("single")
    params = {"model": client.model, "prompt": single.model_dump(), "mode": cfg.judge_mode,
              "max_tokens": cfg.judge_max_tokens, "max_attempts": cfg.judge_max_attempts,
              "max_reasoning_chars": cfg.judge_max_reasoning_chars, "seed": seed, "tokenizer": cfg.tokenizer,
              "repetition_ratio": cfg.repetition_ratio, "responses": _upstream(layout.hi_responses, "responses")}
    if not is_complete(layout.hi_scored, params):
        count = TokenCounter(cfg.tokenizer)
        out = CheckpointedLines(layout.hi_scored, params)
        done = out.open()
        for chunk in _chunks(islice(final_lines(layout.hi_responses), done, None), cfg.chunk):
            items = [(row["instruction_ja"], resp["content"]) for row in chunk for resp in row["responses"]
                     if resp["content"].strip()]
            grades = iter(grader.grade_many(items, desc="scores") if items else [])
            for row in chunk:
                scored = []
                for resp in row["responses"]:
                    g = next(grades) if resp["content"].strip() else None
                    scored.append({**resp, "token_length": count(resp["content"]),
                                   "repetition_flag": compression_ratio(resp["content"]) > cfg.repetition_ratio,
                                   "judgement": g.judgment if g is not None else None,
                                   "preference_score": g.score if g is not None else None})
                out.write({"conversation_id": row["conversation_id"], "instruction_ja": row["instruction_ja"],
                           "model": row["model"], "judge": client.model, "judge_prompt": single.name,
                           "responses": scored})
            out.flush()
        out.finish()
    return int(_upstream(layout.hi_scored, "scores")["lines"])


def best_response(responses: Sequence[dict[str, Any]], skip_repetitive: bool = True) -> int | None:
    """The index of the best scored response: highest score, then fewest tokens, then first; None when no response
    has a score (or all that do are repetitive and `skip_repetitive`)."""
    ranked = [(-r["preference_score"], r["token_length"], i) for i, r in enumerate(responses)
              if r.get("preference_score") is not None and not (skip_repetitive and r.get("repetition_flag"))]
    return min(ranked)[2] if ranked else None


@dataclass
class Selection:
    """What `select_best` kept and dropped (by sub-stage and reason)."""

    kept: int = 0
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)


def select_best(cfg: HumanInstructionsConfig, layout: RunLayout) -> Selection:
    """`generated.jsonl` (the best response per instruction) and `dropped.jsonl` (every other source row, why)."""
    _upstream(layout.hi_scored, "scores")
    sel = Selection()
    translated = final_lines(layout.hi_translated)
    scored = final_lines(layout.hi_scored)
    with atomic_lines(layout.generated) as keep, atomic_lines(layout.hi_dropped) as drop:
        def dropped(row: dict[str, Any], stage: str, reason: str, detail: Any = None) -> None:
            sel.dropped[(stage, reason)] += 1
            drop({"conversation_id": row["conversation_id"], "stage": stage, "reason": reason, "detail": detail})

        for row in final_lines(layout.hi_filtered):
            if not row["kept"]:
                detail = row["duplicate_user_instruction"] or row["is_template_instruction"] or row["language_detected"]
                dropped(row, "filters", row["drop_reason"], detail)
                continue
            t = _next_of(translated, row, layout.hi_translated)
            if t["instruction_ja"] is None:
                dropped(row, "translate", "translation_failed", "; ".join(t["translation_problems"]))
                continue
            if t["duplicate_user_instruction_ja"] is not None:
                dropped(row, "translate", "duplicate_ja", t["duplicate_user_instruction_ja"])
                continue
            s = _next_of(scored, row, layout.hi_scored)
            best = best_response(s["responses"], cfg.skip_repetitive)
            if not s["responses"]:
                dropped(row, "responses", "no_response", None)
            elif best is None:
                dropped(row, "scores", "no_score", None)
            elif cfg.min_score is not None and s["responses"][best]["preference_score"] < cfg.min_score:
                dropped(row, "select", "below_min_score", s["responses"][best]["preference_score"])
            else:
                sel.kept += 1
                keep(_record(row, t, s, best))
    return sel


def _next_of(lines: Iterator[dict[str, Any]], row: dict[str, Any], path: Any) -> dict[str, Any]:
    line = next(lines, None)
    if line is None or line["conversation_id"] != row["conversation_id"]:
        raise RuntimeError(f"{path} does not follow the filtered rows (expected {row['conversation_id']!r}); run its "
                           "sub-stage again")
    return line


def _record(row: dict[str, Any], t: dict[str, Any], s: dict[str, Any], best: int) -> dict[str, Any]:
    responses = s["responses"]
    return {
        "id": row["conversation_id"], "instruction": t["instruction_ja"], "input": "",
        "output": responses[best]["content"].strip(), "recipe": RECIPE, "source": row["conversation_id"],
        "model": s["model"], "conversation_id": row["conversation_id"], "user_instruction": row["instruction"],
        "language": row["language"], "language_detected": row["language_detected"],
        "translation": t["translation"], "translation_status": t["translation_status"],
        "empty_user_instruction_ja": False, "duplicate_user_instruction_ja": None,
        "is_template_instruction": row["is_template_instruction"], "has_placeholder": row["has_placeholder"],
        "judge": s["judge"], "judge_prompt": s["judge_prompt"], "best_response_index": best,
        "preference_score": responses[best]["preference_score"],
        "synthesized_assistant_responses": [
            {k: r[k] for k in ("content", "token_length", "repetition_flag", "finish_reason", "judgement",
                               "preference_score")} for r in responses],
    }


# ----- the report: counts, score distribution, figure, card --------------------------------------------------------


@dataclass
class Report:
    """Where a run of the recipe stands, read back from its files."""

    sources: int = 0
    filters: Any = None  # FilterOutcome
    translation: Counter[str] = field(default_factory=Counter)
    translated_by: Counter[str] = field(default_factory=Counter)
    answered: int = 0
    responses: int = 0
    scores: Counter[Any] = field(default_factory=Counter)  # every response's score (None: unreadable)
    best_scores: Counter[Any] = field(default_factory=Counter)
    repetitive: int = 0
    selection: Selection | None = None

    def table(self) -> pd.DataFrame:
        """One row per figure, for a notebook."""
        rows: dict[str, Any] = {"source rows": self.sources}
        if self.filters is not None:
            rows |= {f"dropped: {k}": v for k, v in self.filters.dropped.items()}
            rows |= {"kept after filters": self.filters.kept, "kept with NAME_n placeholders": self.filters.placeholders_kept}
        rows |= {f"translation {k}": v for k, v in sorted(self.translation.items())}
        rows |= {"instructions answered": self.answered, "responses": self.responses,
                 "responses scored": sum(v for k, v in self.scores.items() if k is not None),
                 "responses unscored": self.scores.get(None, 0), "responses flagged repetitive": self.repetitive}
        if self.selection is not None:
            rows["records kept"] = self.selection.kept
            rows |= {f"dropped at {st}: {why}": n for (st, why), n in sorted(self.selection.dropped.items())}
        return pd.DataFrame({"value": rows})

    def score_table(self) -> pd.DataFrame:
        """Responses and best responses by score."""
        keys = sorted({*range(0, 11), *(k for k in (*self.scores, *self.best_scores) if k is not None)})
        frame = pd.DataFrame({"responses": [self.scores.get(k, 0) for k in keys],
                              "best responses": [self.best_scores.get(k, 0) for k in keys]},
                             index=pd.Index(keys, name="score"))
        if self.scores.get(None):
            frame.loc["unscored"] = [self.scores[None], 0]
        return frame

    def figure(self) -> Figure:
        """The score distribution: every response, and the best response of each instruction."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        frame = self.score_table().drop(index="unscored", errors="ignore")
        if frame.empty:
            ax.text(0.5, 0.5, "no scored responses", ha="center", va="center", transform=ax.transAxes)
        else:
            frame.plot.bar(ax=ax, rot=0)
        ax.set_xlabel("judge score (0-10)")
        ax.set_ylabel("responses")
        ax.set_title("Judge scores of the sampled responses")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        return fig

    def card(self, figure_path: str | None = None) -> str:
        """The markdown stage 03 puts into the dataset card."""
        lines = ["## Generation: human-written instructions (arXiv 2503.23714)", "",
                 f"{self.sources:,} source instructions; each filter's count, in the order applied (a row counts "
                 "under the first reason that drops it):", ""]
        if self.filters is not None:
            f = self.filters
            counts = {**{k: f.dropped.get(k, 0) for k in REASONS}, "kept": f.kept,
                      "kept, with NAME_n placeholders (flagged)": f.placeholders_kept}
            lines += [pd.DataFrame({"rows": counts}).to_markdown(), ""]
            if f.templates:
                lines += ["Templates found: " + ", ".join(f"{k} ({v})" for k, v in sorted(f.templates.items())) + ".", ""]
        lines += ["Translation: " + (", ".join(f"{k} {v:,}" for k, v in sorted(self.translation.items())) or "none")
                  + "; by " + (", ".join(f"{k} {v:,}" for k, v in sorted(self.translated_by.items())) or "-") + ".",
                  f"Responses: {self.responses:,} for {self.answered:,} instructions "
                  f"({self.repetitive:,} flagged repetitive).", "", "### Score distribution", "",
                  self.score_table().to_markdown(), ""]
        if figure_path:
            lines += [f"![score distribution]({figure_path})", ""]
        if self.selection is not None:
            lines += [f"Selection: {self.selection.kept:,} records kept (best response of each instruction).", ""]
            if self.selection.dropped:
                dropped = pd.DataFrame([{"sub-stage": st, "reason": why, "rows": n}
                                        for (st, why), n in sorted(self.selection.dropped.items())])
                lines += [dropped.to_markdown(index=False), ""]
        return "\n".join(lines)


def human_instructions_report(layout: RunLayout) -> Report:
    """Read a run's files back into a `Report` (the sub-stages that have not run yet are left empty)."""
    rep = Report()
    if read_state(layout.hi_sources):
        rep.sources = int(read_state(layout.hi_sources)["lines"])  # type: ignore[index]
    if read_state(layout.hi_filtered):
        rep.filters = outcome(final_lines(layout.hi_filtered))
    if read_state(layout.hi_translated):
        for r in final_lines(layout.hi_translated):
            rep.translation[r["translation_status"]] += 1
            rep.translated_by[r["translation"]] += 1
    if read_state(layout.hi_responses):
        for r in final_lines(layout.hi_responses):
            rep.answered += 1
            rep.responses += len(r["responses"])
    if read_state(layout.hi_scored):
        for r in final_lines(layout.hi_scored):
            for resp in r["responses"]:
                rep.scores[resp["preference_score"]] += 1
                rep.repetitive += bool(resp["repetition_flag"])
    if layout.hi_dropped.exists() and layout.generated.exists():
        rep.selection = Selection()
        for _, r in stream_jsonl(layout.generated):
            if r.get("recipe") == RECIPE:
                rep.selection.kept += 1
                rep.best_scores[r["preference_score"]] += 1
        for _, r in stream_jsonl(layout.hi_dropped):
            rep.selection.dropped[(r["stage"], r["reason"])] += 1
    return rep


# ----- the recipe ----------------------------------------------------------------------------------------------------


def run_human_instructions(cfg: HumanInstructionsConfig, layout: RunLayout, *, translator_client: LLMClient | None,
                           responder: LLMClient | None, judge: LLMClient | None, seed: int | None = 0,
                           deepl: Any = None, progress: bool = True) -> Report:
    """Run the configured sub-stages in order (each skipped when already complete) and write the generation card
    and the score figure once selection has run."""
    selected = False
    for name in SUBSTAGES:
        if name not in cfg.stages:
            continue
        if name == "sources":
            collect_sources(cfg, layout)
        elif name == "filters":
            filter_sources(cfg, layout)
        elif name == "translate":
            translate_instructions(cfg, layout, translator_client, deepl, progress)
        elif name == "responses":
            assert responder is not None
            sample_responses(cfg, layout, responder, seed, progress)
        elif name == "scores":
            assert judge is not None
            score_responses(cfg, layout, judge, seed, progress)
        else:
            select_best(cfg, layout)
            selected = True
    rep = human_instructions_report(layout)
    if selected:
        from jinstruct.plotting import save_figures

        figure = layout.figure("02_scores")
        fig = rep.figure()
        save_figures(fig, figure)
        import matplotlib.pyplot as plt

        plt.close(fig)
        card_link = (figure.with_suffix(".png")).relative_to(layout.root).as_posix()
        atomic_write_text(layout.generation_card, rep.card(f"../{card_link}"))
    return rep


def _kept_rows(cfg: HumanInstructionsConfig, layout: RunLayout) -> tuple[list[dict[str, Any]], str]:
    """The instructions to price translation with, and a note on where they come from: the run's kept rows, else
    its sources, else the source itself (or, when that cannot be read here, e.g. a gated dataset offline, the
    shipped sample's texts, for their lengths)."""
    for path, kept in ((layout.hi_filtered, True), (layout.hi_sources, False)):
        if read_state(path):
            return [r for r in final_lines(path) if not kept or r["kept"]], ""
    try:
        if cfg.source.dataset is None:
            return list(iter_source(cfg.source)), ""
        return list(islice(iter_source(cfg.source), cfg.estimate_sample)), ""
    except Exception as e:  # any failure to reach the dataset: the estimate goes on with the sample's lengths
        note = f" (lengths from {SHIPPED}: {cfg.source.describe()} unreadable here, {type(e).__name__})"
        return list(iter_source(SourceSpec(path=SHIPPED))), note


def _scaled(est: Estimate, factor: float) -> Estimate:
    if factor == 1:
        return est
    whole = {k: int(round(getattr(est, k) * factor)) for k in ("requests", "cached", "to_send", "prompt_tokens",
                                                                "completion_tokens")}
    return est.model_copy(update={
        **whole, "max_completion_tokens": None if est.max_completion_tokens is None else
        int(round(est.max_completion_tokens * factor)),
        "cost_usd": est.cost_usd * factor, "max_cost_usd": None if est.max_cost_usd is None else est.max_cost_usd * factor,
        "gpu_hours": None if est.gpu_hours is None else est.gpu_hours * factor})


def estimate_human_instructions(cfg: HumanInstructionsConfig, translator: str, stage: Any) -> list[Part]:
    """Requests, tokens and cost of translation, responses and scores, calling nothing: the requests of up to
    `estimate_sample` instructions, scaled to `estimate_instructions` (else the run's own count). Before a sub-stage
    has run, its inputs are stood in for: the source texts for translations, `expected_response_tokens` for each
    response; completions are priced at those expected lengths. After the run, what it sent is cached and free."""
    layout, seed = stage.layout, stage.cfg.seed
    kept, note = _kept_rows(cfg, layout)
    parts = []
    if cfg.translate == "llm":
        prompt = load_prompt(resolve_path(cfg.translation_prompt) if cfg.translation_prompt else TRANSLATION_PROMPT)
        sample = kept[: cfg.estimate_sample]
        todo = [r["instruction"] for r in sample if needs_translation(cfg, r)]
        factor = (cfg.estimate_instructions or len(kept)) / max(1, len(sample))
        requests = [translation_request(t, prompt, max_tokens=cfg.translation_max_tokens,
                                        max_chars=cfg.translation_max_chars) for t in todo]
        per = max(1, round(sum(estimate_text_tokens(t) for t in todo) / max(1, len(todo))))
        est = stage.client(translator).estimate(requests, expected_output_tokens=per)
        parts.append(Part(f"translate {round(len(todo) * factor):,} instructions{note}", translator,
                          _scaled(est, factor)))
    if read_state(layout.hi_translated):
        answerable = list(_answerable(layout))
    else:
        answerable = [{"conversation_id": r["conversation_id"], "instruction_ja": normalize(r["instruction"])}
                      for r in kept if normalize(r["instruction"])]
    total = cfg.estimate_instructions or len(answerable)
    sample = answerable[: cfg.estimate_sample]
    factor = total / max(1, len(sample))
    requests = [req for row in sample for req in response_requests(cfg, row, seed)]
    est = stage.client(cfg.responder).estimate(requests, expected_output_tokens=cfg.expected_response_tokens)
    parts.append(Part(f"{total:,} instructions x {cfg.n} responses{note}", cfg.responder, _scaled(est, factor)))
    if read_state(layout.hi_responses):
        answered = list(islice(final_lines(layout.hi_responses), cfg.estimate_sample))
        items = [(r["instruction_ja"], x["content"]) for r in answered for x in r["responses"] if x["content"].strip()]
        factor = total * cfg.n / max(1, len(items))
    else:
        typical = "あ" * cfg.expected_response_tokens  # a response as long as expected (1 token per kana)
        items = [(row["instruction_ja"], typical) for row in sample for _ in range(cfg.n)]
    judge = stage.client(cfg.judge)
    requests = make_grader(cfg, judge, seed).grade_requests(items)
    est = judge.estimate(requests, expected_output_tokens=cfg.expected_judgement_tokens)
    parts.append(Part(f"{total * cfg.n:,} responses graded 0-10{note}", cfg.judge, _scaled(est, factor)))
    return parts


class HumanInstructions:
    """Recipe `human_instructions`: human-written instructions, translated, answered n times, judged, best kept."""

    name = RECIPE
    Config = HumanInstructionsConfig

    @staticmethod
    def describe(cfg: HumanInstructionsConfig) -> str:
        return (f"human-written instructions from {cfg.source.describe()}, {cfg.n} responses each from "
                f"'{cfg.responder}', graded 0-10 by '{cfg.judge}', best kept")

    @staticmethod
    def estimate(cfg: HumanInstructionsConfig, endpoint: str, stage: Any) -> list[Part]:
        return estimate_human_instructions(cfg, cfg.translator or endpoint, stage)

    @staticmethod
    def run(cfg: HumanInstructionsConfig, endpoint: str, stage: Any) -> Report:
        layout = stage.layout
        needs = set(cfg.stages)
        translator = (stage.client(cfg.translator or endpoint)
                      if "translate" in needs and cfg.translate != "none" else None)
        return run_human_instructions(
            cfg, layout, translator_client=translator,
            responder=stage.client(cfg.responder) if "responses" in needs else None,
            judge=stage.client(cfg.judge) if "scores" in needs else None, seed=stage.cfg.seed)
