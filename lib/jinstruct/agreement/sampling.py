"""The games people label: a stratified sample of the judged games, each shown in a random left/right order.

An item is one game (a question, a turn, two models' answers) as an annotator sees it: the question's turns up to the
judged turn, the two answers side by side in a left/right order drawn at random and recorded in the item
(`model_left`, `model_right`), and nothing about the judge's verdict. Its id is a short hash of the game, so it
names neither model.

Sampling, seeded (the same judgments and settings give the same items):

- strata: the games are grouped by category and by the judge's verdict (the answer first shown by the judge wins,
  the second wins, tie) or by either alone; each stratum is shuffled and the strata are taken in turn, one game
  each, until `size` games are chosen, so small strata (a rare verdict, a small category) are as represented as
  large ones as long as they last;
- disagreements: with `disagreement_weight` w > 1, games whose two judge orders disagree (the judge's position
  bias at work) come earlier in their stratum's order: the order is a weighted sample without replacement
  (Efraimidis and Spirakis: sort by u^(1/weight), u uniform), each such game having weight w and the others 1;
- games whose verdict is an error are left out (the judge has no vote to compare with).

Written by hand: no sampling library does balanced allocation across strata with per-item weights in a few lines.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from jinstruct.agreement.votes import combined_verdict
from jinstruct.formats.fastchat import Answer, PairwiseJudgment, Question, QuestionId
from jinstruct.io import DataError, iter_jsonl, validation_error, write_jsonl

Stratum = Literal["category", "verdict"]


class Item(BaseModel):
    """One game as an annotator sees it. `question` and the answers hold the turns up to `turn`."""

    model_config = ConfigDict(extra="forbid")
    item_id: str
    question_id: QuestionId
    turn: int = 1
    category: str | None = None
    model_left: str
    model_right: str
    question: list[str]
    answer_left: list[str]
    answer_right: list[str]


def turns_text(turns: list[str], label: str) -> str:
    """One turn as is; several under numbered headings."""
    if len(turns) == 1:
        return turns[0]
    return "\n\n".join(f"【{label} {i}】\n{t}" for i, t in enumerate(turns, start=1))


def item_id(question_id: QuestionId, turn: int, model_1: str, model_2: str) -> str:
    """`q<question>-t<turn>-<8 hex digits>`: stable for a game whatever the models' order, naming neither model."""
    a, b = sorted((model_1, model_2))
    digest = hashlib.sha256(f"{question_id}\n{turn}\n{a}\n{b}".encode()).hexdigest()[:8]
    return f"q{question_id}-t{turn}-{digest}"


def _order(judgments: Sequence[PairwiseJudgment], rng: np.random.Generator, weight: float) -> list[PairwiseJudgment]:
    weights = np.array([weight if j.g1_winner != j.g2_winner else 1.0 for j in judgments])
    keys = rng.random(len(judgments)) ** (1.0 / weights)
    return [judgments[i] for i in np.argsort(-keys, kind="stable")]


def sample_games(judgments: Iterable[PairwiseJudgment], size: int | None, categories: Mapping[str, str],
                 strata: Sequence[Stratum] = ("category", "verdict"), disagreement_weight: float = 1.0,
                 seed: int = 0) -> list[PairwiseJudgment]:
    """Choose up to `size` judged games (None: all), stratified as the module says; error verdicts are left out."""
    if disagreement_weight <= 0:
        raise ValueError(f"disagreement_weight must be positive, got {disagreement_weight}")
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, ...], list[PairwiseJudgment]] = defaultdict(list)
    for j in judgments:
        verdict = combined_verdict(j)
        if verdict == "error":
            continue
        parts = {"category": categories.get(str(j.question_id)) or "", "verdict": verdict}
        groups[tuple(parts[s] for s in strata)].append(j)
    queues = [_order(groups[k], rng, disagreement_weight) for k in sorted(groups)]
    total = sum(len(q) for q in queues)
    size = total if size is None else min(size, total)
    chosen: list[PairwiseJudgment] = []
    depth = 0
    while len(chosen) < size:
        for q in queues:
            if depth < len(q) and len(chosen) < size:
                chosen.append(q[depth])
        depth += 1
    return chosen


def make_items(games: Iterable[PairwiseJudgment], questions: Mapping[str, Question],
               answers: Mapping[str, Mapping[str, Answer]], seed: int = 0) -> list[Item]:
    """The items for the chosen games, each in a left/right order drawn at random (seeded). `questions` maps
    question ids (as text) to questions; `answers` maps model -> question id (as text) -> answer."""
    rng = np.random.default_rng(seed)
    items = []
    for g in games:
        qid = str(g.question_id)
        if qid not in questions:
            raise KeyError(f"question {g.question_id!r} of the judgments is not in the benchmark")
        left, right = (g.model_1, g.model_2) if rng.random() < 0.5 else (g.model_2, g.model_1)
        turns = {}
        for model in (left, right):
            answer = answers.get(model, {}).get(qid)
            if answer is None:
                raise KeyError(f"no answer of {model!r} to question {g.question_id!r}")
            if len(answer.turns) < g.turn:
                raise KeyError(f"the answer of {model!r} to question {g.question_id!r} has no turn {g.turn}")
            turns[model] = list(answer.turns[: g.turn])
        q = questions[qid]
        items.append(Item(item_id=item_id(g.question_id, g.turn, g.model_1, g.model_2), question_id=g.question_id,
                          turn=g.turn, category=q.category, model_left=left, model_right=right,
                          question=list(q.turns[: g.turn]), answer_left=turns[left], answer_right=turns[right]))
    return items


def write_items(path: str | os.PathLike[str], items: Iterable[Item]) -> None:
    write_jsonl(path, (i.model_dump(mode="json") for i in items))


def load_items(path: str | os.PathLike[str]) -> list[Item]:
    """An items file; ids must be unique."""
    items: list[Item] = []
    seen: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        try:
            item = Item.model_validate(obj)
        except ValidationError as e:
            raise validation_error(path, line, e) from None
        if item.item_id in seen:
            raise DataError(path, line, "item_id", f"duplicate item {item.item_id!r} (first on line {seen[item.item_id]})")
        seen[item.item_id] = line
        items.append(item)
    return items
