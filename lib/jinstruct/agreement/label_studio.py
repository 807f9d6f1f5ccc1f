"""Label Studio: the items as tasks with a labeling config for a pairwise choice, and its JSON export read back.

Export (import both into a Label Studio project as they are):

- tasks: a JSON list of `{"data": {item_id, category, question, answer_left, answer_right}}` (Label Studio's task
  format; the `data` keys are what the config's `$question`, `$answer_left`, `$answer_right` show). Multi-turn
  games show every turn up to the judged one, each under a heading;
- labeling config: the question above the two answers side by side, and one required single choice
  (`Choices name="winner"`) of left, tie, right, with hotkeys 1, 2, 3. Each `Choice` shows Japanese text and exports
  its `alias` (`left`, `tie`, `right`), so the export does not depend on the wording.

Import: Label Studio's JSON export (Export -> JSON): a list of tasks, each with `data` (ours, with `item_id`) and
`annotations[]`, each annotation with `completed_by` (a user id, or `{id, email, ...}`), `was_cancelled` and
`result[]`; the choice is the `choices` result's `value.choices[0]`. Skipped (cancelled) annotations are no labels.
The annotator is the user's email when the export has it, else `label-studio-user-<id>`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from jinstruct.agreement.labels import Choice, Label, LabelError, check_labels, parse_choice
from jinstruct.agreement.sampling import Item, turns_text
from jinstruct.io import atomic_write_text, read_json, write_json

CONTROL = "winner"  # the Choices tag's name
# (alias exported, text shown, hotkey), in the order shown
CHOICE_TAGS: tuple[tuple[Choice, str, str], ...] = (
    ("left", "左の回答 (A) の方が良い", "1"),
    ("tie", "引き分け (同程度)", "2"),
    ("right", "右の回答 (B) の方が良い", "3"),
)
INSTRUCTIONS = ("質問に対してより役に立ち、正確で、自然な日本語の回答を選んでください。"
                "回答の順序や長さに左右されないようにしてください。どちらとも言えなければ引き分けを選びます。")


def tasks(items: Iterable[Item]) -> list[dict[str, Any]]:
    """Label Studio tasks, one per item (no judge verdict, no model names)."""
    return [{"data": {"item_id": i.item_id, "category": i.category or "",
                      "question": turns_text(i.question, "質問"),
                      "answer_left": turns_text(i.answer_left, "回答"),
                      "answer_right": turns_text(i.answer_right, "回答")}} for i in items]


def labeling_config() -> str:
    """The labeling config (XML) for the tasks: the question, the two answers side by side, one choice."""
    choices = "\n".join(f'    <Choice value={quoteattr(text)} alias="{alias}" hotkey="{key}"/>'
                        for alias, text, key in CHOICE_TAGS)
    return f"""<View>
  <Header value="質問"/>
  <Text name="question" value="$question"/>
  <View style="display: flex; gap: 1em;">
    <View style="flex: 1 1 50%;">
      <Header value="回答 A (左)"/>
      <Text name="answer_left" value="$answer_left"/>
    </View>
    <View style="flex: 1 1 50%;">
      <Header value="回答 B (右)"/>
      <Text name="answer_right" value="$answer_right"/>
    </View>
  </View>
  <Header value={quoteattr(INSTRUCTIONS)} size="6"/>
  <Choices name="{CONTROL}" toName="question" choice="single-radio" required="true" showInline="true">
{choices}
  </Choices>
</View>
"""


def write_label_studio(items: Iterable[Item], tasks_path: str | os.PathLike[str],
                       config_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write the tasks (JSON) and the labeling config (XML), atomically."""
    return write_json(tasks_path, tasks(items)), atomic_write_text(config_path, labeling_config())


def annotator_name(completed_by: Any) -> str | None:
    """`completed_by` as an annotator name: the email when the export carries it, else `label-studio-user-<id>`."""
    if isinstance(completed_by, dict):
        if completed_by.get("email"):
            return str(completed_by["email"])
        completed_by = completed_by.get("id")
    if isinstance(completed_by, int | str) and not isinstance(completed_by, bool) and str(completed_by) != "":
        return f"label-studio-user-{completed_by}"
    return None


_SHOWN_TEXT = {text: alias for alias, text, _ in CHOICE_TAGS}


def _choice(annotation: dict[str, Any], path: Path, where: str, item: str, annotator: str) -> Choice:
    results = [r for r in annotation.get("result") or [] if isinstance(r, dict) and r.get("type") == "choices"]
    ours = [r for r in results if r.get("from_name") == CONTROL] or results
    if len(ours) != 1:
        raise LabelError(path, where, item, annotator,
                         f"expected one '{CONTROL}' choice in the annotation's result, found {len(ours)}")
    chosen = (ours[0].get("value") or {}).get("choices")
    if not isinstance(chosen, list) or len(chosen) != 1:
        raise LabelError(path, where, item, annotator, f"expected exactly one choice, got {chosen!r}")
    return parse_choice(_SHOWN_TEXT.get(chosen[0], chosen[0]), path, where, item, annotator)


def read_export(path: str | os.PathLike[str]) -> list[Label]:
    """The labels in a Label Studio JSON export, unchecked against the items (see `load_export`)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise LabelError(path, None, None, None, "expected Label Studio's JSON export: a list of tasks")
    labels = []
    for n, task in enumerate(data, start=1):
        task_where = f"task {task.get('id', n) if isinstance(task, dict) else n}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise LabelError(path, task_where, None, None, "a task without 'data'")
        item = task["data"].get("item_id")
        if not isinstance(item, str):
            raise LabelError(path, task_where, None, None, "the task's data has no item_id (not a task jinstruct exported)")
        for m, annotation in enumerate(task.get("annotations") or [], start=1):
            where = f"{task_where}, annotation {annotation.get('id', m) if isinstance(annotation, dict) else m}"
            if not isinstance(annotation, dict):
                raise LabelError(path, where, item, None, "an annotation is not a JSON object")
            if annotation.get("was_cancelled"):
                continue
            annotator = annotator_name(annotation.get("completed_by"))
            if annotator is None:
                raise LabelError(path, where, item, None, "the annotation has no completed_by")
            labels.append(Label(item, annotator, _choice(annotation, path, where, item, annotator), str(path), where))
    return labels


def load_export(path: str | os.PathLike[str], items: Mapping[str, Item],
                seen: dict[tuple[str, str], Label] | None = None) -> list[Label]:
    """The labels in a Label Studio JSON export, checked against the items (unknown item, duplicates)."""
    return check_labels(read_export(path), items, seen)
