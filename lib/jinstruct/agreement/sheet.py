"""The annotation sheet: the items as a CSV a person fills in a spreadsheet, and the filled sheet read back.

Columns: item_id, category, question, answer_left, answer_right, choice, annotator, note. A person writes `left`,
`right` or `tie` (or l/r/t, a/b/c, 1/3/2, 左/右/引き分け) in `choice` and their name in `annotator` (or the name is given
when the sheet is read); rows left blank are not labelled yet. Written as UTF-8 with a byte-order mark so that
Excel opens the Japanese text correctly; read with or without it. Several annotators: one copy of the sheet each,
or one sheet with a row per (item, annotator).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from jinstruct.agreement.labels import Label, LabelError, check_labels, parse_choice
from jinstruct.agreement.sampling import Item, turns_text
from jinstruct.io import atomic_write_text

COLUMNS = ["item_id", "category", "question", "answer_left", "answer_right", "choice", "annotator", "note"]
REQUIRED = ("item_id", "choice")


def write_sheet(path: str | os.PathLike[str], items: Iterable[Item]) -> Path:
    """The blank sheet, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for i in items:
        writer.writerow({"item_id": i.item_id, "category": i.category or "", "question": turns_text(i.question, "質問"),
                         "answer_left": turns_text(i.answer_left, "回答"),
                         "answer_right": turns_text(i.answer_right, "回答"),
                         "choice": "", "annotator": "", "note": ""})
    return atomic_write_text(path, "\ufeff" + buffer.getvalue())


def read_sheet(path: str | os.PathLike[str], annotator: str | None = None) -> list[Label]:
    """The labelled rows of a filled sheet, unchecked against the items (see `load_sheet`). A row's annotator is its
    `annotator` cell, else `annotator`."""
    path = Path(path)
    if not path.exists():
        raise LabelError(path, None, None, None, "file not found")
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise LabelError(path, "line 1", None, None, f"the sheet has no column(s) {missing}")
        labels = []
        start = 2
        for row in reader:
            where = f"line {start}"
            start = reader.line_num + 1
            item = (row.get("item_id") or "").strip()
            written = (row.get("choice") or "").strip()
            if not written:
                continue
            who = (row.get("annotator") or "").strip() or annotator
            if not item:
                raise LabelError(path, where, None, who, "a choice without an item_id")
            if not who:
                raise LabelError(path, where, item, None, "no annotator: fill the annotator column or give one")
            labels.append(Label(item, who, parse_choice(written, path, where, item, who), str(path), where))
    return labels


def load_sheet(path: str | os.PathLike[str], items: Mapping[str, Item], annotator: str | None = None,
               seen: dict[tuple[str, str], Label] | None = None) -> list[Label]:
    """The labels of a filled sheet, checked against the items (unknown item, duplicates)."""
    return check_labels(read_sheet(path, annotator), items, seen)
