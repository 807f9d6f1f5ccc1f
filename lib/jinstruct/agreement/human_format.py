"""FastChat's human judgment format: MT-Bench's published human votes, and what this project writes for them.

A file is a JSON list (JSON Lines is read too) of `{question_id, model_a, model_b, winner, judge, turn}`: `winner`
is `model_a`, `model_b`, `tie` or `tie (bothbad)`; `judge` names the annotator (`expert_0`, ...), or, in the files
of the LLM judge's votes (`gpt4_pair`), is a list `[model, prompt]`. Other fields are kept.

`load_human_judgments` checks each record (a bad winner, an annotator voting twice on the same game in either model
order, and, given the known games, a game the judgments do not hold), raising a `LabelError` that names the file,
the record, the game and the annotator. `from_labels` maps labels on items back to model names through each item's
recorded left/right order: `model_a` is the model shown on the left, so the record keeps what the annotator saw.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from jinstruct.agreement.labels import LABEL_TO_WINNER, Label, LabelError
from jinstruct.agreement.sampling import Item
from jinstruct.agreement.votes import GameKey, Vote, normalize_winner
from jinstruct.formats.fastchat import QuestionId
from jinstruct.io import DataError, iter_jsonl, read_json, write_json


class HumanJudgment(BaseModel):
    """One vote in FastChat's human judgment format."""

    model_config = ConfigDict(extra="allow")
    question_id: QuestionId
    model_a: str
    model_b: str
    winner: str
    judge: str | list[str]
    turn: int = 1

    @field_validator("winner")
    @classmethod
    def known_winner(cls, value: str) -> str:
        normalize_winner(value)
        return value

    @property
    def annotator(self) -> str:
        return self.judge if isinstance(self.judge, str) else self.judge[0]

    def vote(self) -> Vote:
        return Vote(self.question_id, self.turn, self.model_a, self.model_b, self.winner, self.annotator)

    def game(self) -> str:
        return f"question {self.question_id}, turn {self.turn}, {self.model_a} vs {self.model_b}"


def _records(path: Path) -> list[tuple[str, Any]]:
    """(where, object) for each record of a JSON list or a JSON Lines file."""
    text = path.read_text(encoding="utf-8") if path.exists() else None
    if text is None:
        raise DataError(path, None, None, "file not found")
    if text.lstrip().startswith("["):
        data = read_json(path)
        return [(f"record {i}", obj) for i, obj in enumerate(data, start=1)]
    return [(f"line {line}", obj) for line, obj in iter_jsonl(path)]


def load_human_judgments(path: str | os.PathLike[str], known: Collection[GameKey] | None = None,
                         annotator_prefix: str | None = None) -> list[HumanJudgment]:
    """A FastChat human judgment file, checked (see the module). `annotator_prefix` keeps only annotators whose
    name starts with it (FastChat's agreement script counts `expert*` as humans and leaves `author*` out)."""
    path = Path(path)
    out: list[HumanJudgment] = []
    seen: dict[tuple[str, GameKey], str] = {}
    for where, obj in _records(path):
        if not isinstance(obj, dict):
            raise LabelError(path, where, None, None, f"expected a JSON object, got {type(obj).__name__}")
        game = f"question {obj.get('question_id')}, turn {obj.get('turn', 1)}"
        judge = obj.get("judge")
        name = judge if isinstance(judge, str) else (judge[0] if isinstance(judge, list) and judge else None)
        try:
            record = HumanJudgment.model_validate(obj)
            key, _ = record.vote().canonical()
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise LabelError(path, where, game, name, f"field '{field}': {err['msg']}") from None
        except ValueError as e:
            raise LabelError(path, where, game, name, str(e)) from None
        if annotator_prefix is not None and not record.annotator.startswith(annotator_prefix):
            continue
        if known is not None and key not in known:
            raise LabelError(path, where, record.game(), record.annotator,
                             "unknown item: the judgments hold no such game")
        if (record.annotator, key) in seen:
            raise LabelError(path, where, record.game(), record.annotator,
                             f"duplicate label: the annotator voted on this game already ({seen[record.annotator, key]})")
        seen[record.annotator, key] = where
        out.append(record)
    return out


def write_human_judgments(path: str | os.PathLike[str], records: Iterable[HumanJudgment]) -> Path:
    """Write FastChat's JSON list, atomically."""
    return write_json(path, [r.model_dump(mode="json") for r in records])


def from_labels(labels: Iterable[Label], items: Mapping[str, Item]) -> list[HumanJudgment]:
    """Labels on items as FastChat votes, through each item's left/right order (model_a: the left answer)."""
    out = []
    for label in labels:
        item = items[label.item_id]
        out.append(HumanJudgment(question_id=item.question_id, model_a=item.model_left, model_b=item.model_right,
                                 winner=LABEL_TO_WINNER[label.choice], judge=label.annotator, turn=item.turn,
                                 item_id=item.item_id))
    return out

