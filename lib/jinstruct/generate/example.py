"""Notebook 02's worked example: one request of the chosen recipe, sent before the run, taken apart.

self_instruct: request 0 (the first the run sends, so the run finds its answer in the LLM cache and pays once), its
prompt with the demonstrations drawn for it, the raw reply, the tasks parsed from it, and for each task its highest
ROUGE-L against the pool (the seeds, then the tasks before it in the same reply) and whether the 0.7 rule keeps it.
translate: record 0 of the English data, the request, the raw reply and the Japanese record it becomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from jinstruct.filter.dedup import Deduper
from jinstruct.generate.self_instruct import Demo, SelfInstruct, SelfInstructRecipe
from jinstruct.generate.translate import TranslateAlpaca, as_task, english_alpaca, read_translation, translation_request
from jinstruct.llm.request import ChatResult
from jinstruct.show import Part, Shown


@dataclass(repr=False)
class RequestExample(Shown):
    """One self-instruct request: its demonstrations, prompt, raw reply and parsed tasks with their ROUGE-L."""

    demos: pd.DataFrame  # id, instruction, input, output (in prompt order)
    prompt: str
    reply: str
    tasks: pd.DataFrame  # instruction, input, output, rouge_l, most_similar, kept
    rejected: list[str]  # reply items that did not parse into a task, with the reason
    threshold: float
    cached: bool

    @property
    def title(self) -> str:
        kept = int(self.tasks["kept"].sum()) if len(self.tasks) else 0
        return (f"Request 0: {len(self.demos)} demonstrations in, {len(self.tasks)} tasks parsed, {kept} kept "
                f"(ROUGE-L <= {self.threshold})")

    def parts(self) -> list[Part]:
        parts: list[Part] = [
            ("The demonstrations drawn for this request (seed tasks)", self.demos),
            ("The prompt as sent", self.prompt),
            ("The raw reply" + (" (from the LLM cache)" if self.cached else ""), self.reply),
            ("The tasks parsed from it, each with its highest ROUGE-L against the pool", self.tasks),
        ]
        if self.rejected:
            parts.append(("Items that did not parse", "\n".join(self.rejected)))
        return parts


@dataclass(repr=False)
class TranslationExample(Shown):
    """One English record, the translation request and the Japanese record it became."""

    english: dict[str, str]
    prompt: str
    reply: str
    record: pd.DataFrame  # field, english, japanese

    title = "Record 0: an English Alpaca record translated"

    def parts(self) -> list[Part]:
        return [("The prompt as sent", self.prompt), ("The raw reply", self.reply),
                ("English and Japanese, field by field", self.record)]


def _reply_text(result: ChatResult) -> str:
    if result.error is not None:
        return f"(no reply: {result.error})"
    return result.text


def request_example(recipe: SelfInstructRecipe, client: Any, threshold: float = 0.7, tokens: str = "char",
                    r: int = 0) -> RequestExample:
    """Send request `r` of `recipe` (seed demonstrations only, as the run's first wave) and take its reply apart."""
    request = recipe.request(r)
    demos: list[Demo] = recipe.demos(r)
    result = client.chat(request)
    parsed = recipe.parse(result) if result.error is None else None
    pool = Deduper(threshold=threshold, tokens=tokens, k=1, floor=0.0)
    pool.seed(d.instruction for d in recipe.seeds)
    names = [d.id for d in recipe.seeds]
    rows = []
    for task in parsed.tasks if parsed else []:
        decision = pool.add(task.instruction)
        nearest = decision.neighbours[0] if decision.neighbours else None
        rows.append({"instruction": task.instruction, "input": task.input, "output": task.output,
                     "rouge_l": round(decision.best_score, 3),
                     "most_similar": f"{names[nearest[0]]}: {pool.texts[nearest[0]]}" if nearest else "",
                     "kept": decision.kept})
        if decision.kept:
            names.append(f"task {len(rows)}")
    columns = ["instruction", "input", "output", "rouge_l", "most_similar", "kept"]
    return RequestExample(
        demos=pd.DataFrame([{"id": d.id, "instruction": d.instruction, "input": d.input, "output": d.output}
                            for d in demos]),
        prompt=request.messages[-1]["content"], reply=_reply_text(result), tasks=pd.DataFrame(rows, columns=columns),
        rejected=[f"{x.reason}: {x.text}" for x in parsed.rejected] if parsed else [], threshold=threshold,
        cached=result.cached)


def translation_example(cfg: TranslateAlpaca.Config, client: Any) -> TranslationExample:
    """Translate record 0 of the recipe's English data (the run's first request, so it is paid once)."""
    record = english_alpaca(cfg.english, limit=1)[0]
    request = translation_request(0, record, max_tokens=cfg.max_tokens, max_field_chars=cfg.max_field_chars)
    task = as_task(0, record)
    if request is None or task is None:
        raise ValueError("the first English record has an empty instruction: nothing to translate")
    result = client.chat(request)
    translated, report = read_translation(task, result)
    english = {"instruction": record.instruction, "input": record.input, "output": record.output}
    japanese = ({"instruction": translated.instruction, "input": translated.instances[0].input,
                 "output": translated.instances[0].output} if translated is not None else {})
    table = pd.DataFrame([{"field": k, "english": v, "japanese": japanese.get(k, f"({report.status})")}
                          for k, v in english.items()])
    return TranslationExample(english=english, prompt=request.messages[-1]["content"], reply=_reply_text(result),
                              record=table)


def worked_example(section: Any, stage: Any) -> Shown | None:
    """The worked example of the recipe `section` (a `GenerateSection`) chooses, through the stage's client. None
    where there is nothing to ask: a run that takes its records from another run (`from_run`, no LLM call), or a
    recipe whose notebook cell shows its own report instead (`from_datasets`, `human_instructions`)."""
    if getattr(section, "from_run", None) or section.recipe not in (SelfInstruct.name, TranslateAlpaca.name):
        return None
    client = stage.client(section.endpoint)
    if section.recipe == SelfInstruct.name:
        cfg = section.self_instruct
        recipe = SelfInstruct.recipe(cfg, stage.layout.japanese_seeds, stage.cfg.seed)
        return request_example(recipe, client, threshold=cfg.threshold, tokens=cfg.tokens)
    if section.recipe == TranslateAlpaca.name:
        return translation_example(section.translate, client)
    return None
