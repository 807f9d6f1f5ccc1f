"""Benchmark answers in FastChat's format: records from generated texts, per-category sampling, conversations.

This module is the pure part of answering (notebook 05): it turns generated texts into FastChat answer
records, chooses the sampling temperature of a question's category, and builds the chat messages of each
turn. The generation itself (transformers or an OpenAI-compatible endpoint) calls these.

Sampling temperatures follow FastChat's `gen_model_answer.py` for MT-Bench's categories (0.7 for writing
and roleplay, 0.0 where an answer is right or wrong: extraction, math, coding, reasoning; 0.1 for stem and
humanities; 0.7 for a category it does not know). The Vicuna-style categories of ja-vicuna-qa-benchmark and
of our `ja_qa80` benchmark are mapped by the same reasoning:

- `coding-math`, `coding`, `math`: 0.0 (a checkable answer; judged against a reference).
- `fermi`: 0.0. A Fermi estimate is step-by-step reasoning to a number, FastChat's `reasoning` case;
  sampling noise only makes the estimate less repeatable.
- `knowledge`, `common-sense`, `generic`, `counterfactual`: 0.1, FastChat's choice for open questions that
  still rest on facts (stem, humanities). Counterfactuals are speculative, but a good answer reasons from
  what actually happened, so they sit with humanities rather than with writing.
- `writing`, `roleplay`: 0.7.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence

from jinstruct.formats.fastchat import Answer, Choice, Question, QuestionId

TEMPERATURES: dict[str, float] = {
    # FastChat (MT-Bench)
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    # Vicuna-style categories (ja-vicuna-qa-benchmark, ja_qa80)
    "coding-math": 0.0,
    "fermi": 0.0,
    "knowledge": 0.1,
    "common-sense": 0.1,
    "generic": 0.1,
    "counterfactual": 0.1,
}
DEFAULT_TEMPERATURE = 0.7  # FastChat's value for a category it has no entry for


def temperature_for(category: str, table: Mapping[str, float] = TEMPERATURES,
                    default: float = DEFAULT_TEMPERATURE) -> float:
    """The sampling temperature for a question's category ("common sense" and "common_sense" read as
    "common-sense")."""
    key = category.strip().lower().replace("_", "-").replace(" ", "-")
    return table.get(category, table.get(key, default))


def answer_id(model_id: str, question_id: QuestionId, choices: Sequence[Sequence[str]]) -> str:
    """A stable id (22 hex characters, the length of FastChat's random shortuuid) from what the answer is:
    the same model, question and texts always give the same id."""
    payload = json.dumps([model_id, str(question_id), [list(c) for c in choices]], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:22]


def make_answer(question_id: QuestionId, model_id: str, choices: Sequence[Sequence[str]],
                tstamp: float | None = None) -> Answer:
    """A FastChat answer record from generated texts: `choices` holds one list of turn texts per sample
    (FastChat's `num_choices`; usually one)."""
    if isinstance(choices, str) or not choices or any(isinstance(c, str) for c in choices):
        raise TypeError("choices must be a non-empty list of turn lists, e.g. [['answer to turn 1']]")
    return Answer(question_id=question_id, answer_id=answer_id(model_id, question_id, choices), model_id=model_id,
                  choices=[Choice(index=i, turns=list(turns)) for i, turns in enumerate(choices)],
                  tstamp=time.time() if tstamp is None else tstamp)


def turn_messages(question: Question, previous_answers: Sequence[str], system: str | None = None) -> list[dict[str, str]]:
    """Chat messages for the next turn of a question: each earlier user turn followed by the model's own
    answer to it (FastChat feeds back the model's answers), then the next user turn."""
    k = len(previous_answers)
    if k >= len(question.turns):
        raise ValueError(f"question {question.question_id!r} has {len(question.turns)} turn(s); {k} already answered")
    messages = [{"role": "system", "content": system}] if system else []
    for user, assistant in zip(question.turns[:k], previous_answers):
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages + [{"role": "user", "content": question.turns[k]}]


def missing_answers(questions: Iterable[Question], answers: Iterable[Answer]) -> list[QuestionId]:
    """Questions without an answer, or whose answer has fewer turns than the question (a resumed run
    answers these)."""
    have = {str(a.question_id): a for a in answers}
    out = []
    for q in questions:
        a = have.get(str(q.question_id))
        if a is None or any(len(c.turns) < len(q.turns) for c in a.choices):
            out.append(q.question_id)
    return out
