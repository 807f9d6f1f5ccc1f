"""Notebook 05's worked example: one question answered by each model, side by side, before the whole benchmark.

Each model answers the question through the stage's own path (`answer_model` with that one question), so the answer
is recorded in the model's answer file and the full run then answers the other questions only; a local model is
loaded once more for it. Beside each answer: what the model was given, its prompt rendered with the template it is
prompted with (the chat template, or the `### 指示:` / `### 応答:` prompt), or the messages sent to an endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from jinstruct.answer.engines import read_answer_file
from jinstruct.answer.records import temperature_for, turn_messages
from jinstruct.answer.stage import answer_model, local_model
from jinstruct.formats.fastchat import Question
from jinstruct.show import Part, Shown
from jinstruct.train.qlora import load_tokenizer
from jinstruct.train.templates import render


@dataclass(repr=False)
class QuestionExample(Shown):
    """One question, and per model: how it was asked (its prompt) and what it answered."""

    question: Question
    temperature: float
    answers: pd.DataFrame  # model_id, model, prompt, answer

    @property
    def title(self) -> str:
        return (f"Question {self.question.question_id} ({self.question.category}, temperature {self.temperature:g}) "
                f"answered by {len(self.answers)} models")

    def parts(self) -> list[Part]:
        return [("The question (turn 1)", self.question.turns[0]),
                ("Each model: what it is given, and its answer", self.answers)]


def _prompt(spec: Any, question: Question, stage: Any) -> tuple[str, str]:
    """(what the model is, its prompt for turn 1 as text)."""
    messages = turn_messages(question, [])
    if spec.endpoint:
        shown = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)
        return f"endpoint {spec.endpoint}", shown
    local = local_model(spec, stage)
    tokenizer = load_tokenizer(local.adapter or local.base, need_chat_template=local.template == "chat")
    what = f"{'tuned: ' + str(spec.trained) if spec.trained else 'base'} ({local.template} template)"
    return what, render(tokenizer, local.template, messages)  # type: ignore[arg-type]


def example_answers(question: Question, stage: Any) -> QuestionExample:
    """Let every model of the stage's config answer `question` (recorded, see the module doc) and show them."""
    rows = []
    for spec in stage.cfg.answer.models:
        answer_model(spec, [question], stage)
        recorded = read_answer_file(stage.layout.answer_file(spec.model_id), spec.model_id)
        answer = recorded.get(str(question.question_id))
        what, prompt = _prompt(spec, question, stage)
        rows.append({"model_id": spec.model_id, "model": what, "prompt": prompt,
                     "answer": answer.choices[0].turns[0] if answer is not None else "(no answer: see the report)"})
    return QuestionExample(question, temperature_for(question.category), pd.DataFrame(rows))
