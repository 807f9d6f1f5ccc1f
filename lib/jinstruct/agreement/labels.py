"""A person's label on an item: which side was better (left, right or tie), and the checks every import makes.

Every source of labels (Label Studio's export, the CSV sheet, the notebook's labeler) becomes a list of `Label`s,
checked the same way before anything is counted: the item must be one of the sampled items, the choice one of
left / right / tie, and an annotator labels an item once. A failed check is a `LabelError` naming the file, the
record or line, the item and the annotator.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jinstruct.agreement.sampling import Item
from jinstruct.io import DataError, read_json, write_json

Choice = Literal["left", "right", "tie"]
# what a person may type in a sheet for each choice (compared after NFKC and lower-casing)
SPELLINGS: dict[str, Choice] = {
    "left": "left", "l": "left", "a": "left", "1": "left", "左": "left",
    "right": "right", "r": "right", "b": "right", "3": "right", "右": "right",
    "tie": "tie", "t": "tie", "c": "tie", "2": "tie", "引き分け": "tie", "同等": "tie",
}
LABEL_TO_WINNER: dict[Choice, str] = {"left": "model_a", "right": "model_b", "tie": "tie"}


class LabelError(DataError):
    """Bad label input: names the file, where in it (record or line), the item and the annotator."""

    def __init__(self, path: str | os.PathLike[str], where: str | None, item: str | None, annotator: str | None,
                 problem: str):
        super().__init__(path, None, None, problem)
        self.where, self.item, self.annotator = where, item, annotator
        parts = [str(path)] + ([where] if where else [])
        who = ", ".join(x for x in (f"item {item!r}" if item else "", f"annotator {annotator!r}" if annotator else "") if x)
        self.args = (", ".join(parts) + (f" ({who})" if who else "") + f": {problem}",)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Label:
    """An annotator's choice on an item; `where` says where it was read (for error messages)."""

    item_id: str
    annotator: str
    choice: Choice
    source: str = ""
    where: str = ""
    tstamp: float = 0.0


def parse_choice(text: object, path: str | os.PathLike[str], where: str, item: str | None,
                 annotator: str | None) -> Choice:
    """A choice as written (left/right/tie, l/r/t, a/b/c, 1/3/2, 左/右/引き分け); anything else is a LabelError."""
    key = unicodedata.normalize("NFKC", str(text)).strip().lower() if isinstance(text, str) else None
    if key is None or key not in SPELLINGS:
        raise LabelError(path, where, item, annotator,
                         f"choice {text!r} is not one of left, right, tie (or l/r/t, a/b/c, 1/3/2, 左/右/引き分け)")
    return SPELLINGS[key]


def check_labels(labels: Iterable[Label], items: Mapping[str, Item],
                 seen: dict[tuple[str, str], Label] | None = None) -> list[Label]:
    """The labels, checked: every item known, one label per (annotator, item). `seen` carries the labels of
    sources checked before, so a label repeated across two files is caught too."""
    seen = {} if seen is None else seen
    out = []
    for label in labels:
        if label.item_id not in items:
            raise LabelError(label.source, label.where, label.item_id, label.annotator,
                             "unknown item: not among the sampled items")
        if not label.annotator.strip():
            raise LabelError(label.source, label.where, label.item_id, None, "no annotator")
        key = (label.annotator, label.item_id)
        if key in seen:
            first = seen[key]
            raise LabelError(label.source, label.where, label.item_id, label.annotator,
                             f"duplicate label: the annotator labelled this item already ({first.source}, {first.where})")
        seen[key] = label
        out.append(label)
    return out


# ---- the notebook's label file: a JSON list of {item_id, annotator, choice, tstamp} -------------------------------


def read_label_file(path: str | os.PathLike[str]) -> list[Label]:
    """Labels saved by the notebook's labeler (nothing when the file does not exist yet), unchecked."""
    path = Path(path)
    if not path.exists():
        return []
    data = read_json(path)
    if not isinstance(data, list):
        raise LabelError(path, None, None, None, "expected a JSON list of labels")
    labels = []
    for n, obj in enumerate(data, start=1):
        where = f"record {n}"
        if not isinstance(obj, dict) or not isinstance(obj.get("item_id"), str) or not isinstance(obj.get("annotator"), str):
            raise LabelError(path, where, None, None, "expected {item_id, annotator, choice}")
        choice = parse_choice(obj.get("choice"), path, where, obj["item_id"], obj["annotator"])
        labels.append(Label(obj["item_id"], obj["annotator"], choice, str(path), where, float(obj.get("tstamp", 0.0))))
    return labels


def write_label_file(path: str | os.PathLike[str], labels: Iterable[Label]) -> Path:
    """Save every label (all annotators), atomically."""
    return write_json(path, [{"item_id": x.item_id, "annotator": x.annotator, "choice": x.choice, "tstamp": x.tstamp}
                             for x in labels])
