"""Tables notebook 05 shows: the benchmark's categories, what each answering run did, answers side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict

import pandas as pd

from jinstruct.answer.engines import AnswerReport
from jinstruct.formats.fastchat import Answer, Question, QuestionId


def category_counts(questions: Sequence[Question]) -> pd.Series:
    """Questions per category."""
    return pd.Series([q.category for q in questions], name="questions").value_counts().sort_index()


def reports_table(reports: Mapping[str, AnswerReport]) -> pd.DataFrame:
    """One row per model: questions, answered before and now, cut at the token limit, failed, seconds."""
    rows = []
    for model_id, r in reports.items():
        row = asdict(r)
        row["failed"] = len(r.failed)
        row["path"] = str(r.path)
        rows.append(row)
    return pd.DataFrame(rows, index=list(reports)).drop(columns=["model_id"])


def side_by_side(questions: Sequence[Question], answers: Mapping[str, Mapping[QuestionId, Answer]],
                 chars: int = 120) -> pd.DataFrame:
    """The first turn of each question and each model's first answer turn (cut at `chars` characters)."""
    rows = {}
    for q in questions:
        row = {"question": q.turns[0][:chars]}
        for model_id, by_q in answers.items():
            a = by_q.get(q.question_id)
            row[model_id] = a.choices[0].turns[0][:chars] if a is not None else ""
        rows[q.question_id] = row
    return pd.DataFrame.from_dict(rows, orient="index")
