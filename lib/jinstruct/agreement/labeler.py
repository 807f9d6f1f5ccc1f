"""Labeling small sets inside notebook 07, with ipywidgets.

`LabelSession` is the labeler without a screen: the items this annotator has not labelled yet, one at a time; each
label is saved at once (the whole label file rewritten atomically, every annotator's labels kept), so a closed
notebook loses nothing and the next session resumes where this one stopped.

`Labeler` shows it: the question, the two answers side by side, three buttons (left, tie, right), a skip button
and a progress bar. Keyboard: ipywidgets has no key events, so the labeler has a small input box that takes one
key and clears itself: `1`/`l`/`a` left, `2`/`t`/`c` tie, `3`/`r`/`b` right, `s` skip (click into it once, then keep
typing).
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinstruct.agreement.labels import (SPELLINGS, Choice, Label, LabelError, check_labels, read_label_file,
                                        write_label_file)
from jinstruct.agreement.sampling import Item, turns_text

SKIP_KEYS = {"s", "skip"}
BUTTONS: tuple[tuple[Choice, str], ...] = (("left", "← 左が良い (1)"), ("tie", "引き分け (2)"), ("right", "右が良い (3) →"))


class LabelSession:
    """An annotator's pass over the items, saved to `path` after every label."""

    def __init__(self, items: Sequence[Item], annotator: str, path: str | os.PathLike[str]):
        if not annotator.strip():
            raise ValueError("give the annotator's name")
        self.items = list(items)
        self.by_id = {i.item_id: i for i in self.items}
        self.annotator = annotator.strip()
        self.path = Path(path)
        self.labels = check_labels(read_label_file(self.path), self.by_id)
        self.skipped: list[str] = []

    def done_ids(self) -> set[str]:
        return {x.item_id for x in self.labels if x.annotator == self.annotator}

    def pending(self) -> list[Item]:
        """Items this annotator has not labelled, skipped ones last."""
        done = self.done_ids()
        todo = [i for i in self.items if i.item_id not in done]
        return [i for i in todo if i.item_id not in self.skipped] + [i for i in todo if i.item_id in self.skipped]

    @property
    def current(self) -> Item | None:
        todo = self.pending()
        return todo[0] if todo else None

    @property
    def progress(self) -> tuple[int, int]:
        return len(self.done_ids()), len(self.items)

    def label(self, choice: Choice) -> Item | None:
        """Label the current item, save, and return the next one (None when all are done)."""
        item = self.current
        if item is None:
            raise LabelError(self.path, None, None, self.annotator, "every item is labelled already")
        if choice not in ("left", "right", "tie"):
            raise LabelError(self.path, None, item.item_id, self.annotator, f"choice {choice!r} is not left, right or tie")
        self.labels.append(Label(item.item_id, self.annotator, choice, str(self.path), "", time.time()))
        write_label_file(self.path, self.labels)
        if item.item_id in self.skipped:
            self.skipped.remove(item.item_id)
        return self.current

    def skip(self) -> Item | None:
        """Put the current item last for now; return the next one."""
        item = self.current
        if item is not None:
            if item.item_id in self.skipped:
                self.skipped.remove(item.item_id)
            self.skipped.append(item.item_id)
        return self.current


def _box(title: str, text: str) -> str:
    body = html.escape(text).replace("\n", "<br>")
    return (f"<div style='border:1px solid #ccc;border-radius:4px;padding:8px;height:100%'>"
            f"<b>{html.escape(title)}</b><div style='margin-top:6px;line-height:1.5'>{body}</div></div>")


class Labeler:
    """The session on screen. `Labeler(items, "your name", layout.notebook_labels).widget` in a notebook cell."""

    def __init__(self, items: Sequence[Item], annotator: str, path: str | os.PathLike[str]):
        import ipywidgets as w

        self.session = LabelSession(items, annotator, path)
        self.question = w.HTML()
        self.left, self.right = w.HTML(layout=w.Layout(width="50%")), w.HTML(layout=w.Layout(width="50%"))
        self.buttons = {}
        for choice, text in BUTTONS:
            button = w.Button(description=text, layout=w.Layout(width="auto"))
            button.on_click(lambda _, c=choice: self.choose(c))
            self.buttons[choice] = button
        self.skip_button = w.Button(description="スキップ (s)", layout=w.Layout(width="auto"))
        self.skip_button.on_click(lambda _: self.skip())
        self.keys = w.Text(placeholder="ここをクリックして 1 / 2 / 3 (s: スキップ)", continuous_update=True,
                           layout=w.Layout(width="22em"))
        self.keys.observe(self._key, names="value")
        self.bar = w.IntProgress(min=0, max=max(1, len(self.session.items)))
        self.status = w.Label()
        self.widget = w.VBox([
            w.HBox([self.bar, self.status]), self.question, w.HBox([self.left, self.right]),
            w.HBox([*self.buttons.values(), self.skip_button, self.keys]),
        ])
        self.show()

    def _key(self, change: dict[str, Any]) -> None:
        typed = str(change["new"]).strip().lower()
        if not typed:
            return
        self.keys.value = ""
        if typed in SKIP_KEYS:
            self.skip()
        elif typed in SPELLINGS:
            self.choose(SPELLINGS[typed])
        else:
            self.status.value = f"'{typed}' is no key: 1/l/a left, 2/t/c tie, 3/r/b right, s skip"

    def choose(self, choice: Choice) -> None:
        if self.session.current is not None:
            self.session.label(choice)
        self.show()

    def skip(self) -> None:
        self.session.skip()
        self.show()

    def show(self) -> None:
        done, total = self.session.progress
        self.bar.value = done
        item = self.session.current
        self.status.value = f"{done}/{total} labelled by {self.session.annotator}, saved to {self.session.path.name}"
        for button in [*self.buttons.values(), self.skip_button]:
            button.disabled = item is None
        if item is None:
            self.question.value = "<b>All items are labelled. Thank you.</b>"
            self.left.value = self.right.value = ""
            return
        self.question.value = _box(f"質問 ({item.category or ''}, {item.item_id})", turns_text(item.question, "質問"))
        self.left.value = _box("回答 A (左)", turns_text(item.answer_left, "回答"))
        self.right.value = _box("回答 B (右)", turns_text(item.answer_right, "回答"))
