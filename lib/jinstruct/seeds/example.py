"""Notebook 01's worked example: one seed task's machine translation beside its post-edit, field by field, with
the edit distance between them.

The task is translated before the others, by the same request the stage sends for it (so the stage finds the answer
in the LLM cache and pays once). Its post-edit comes from the person's edited sheet (`seeds.edited_sheet`) when there
is one, else from the shipped Japanese seed with the same id, the stand-in the stage uses (where the machine
translation dropped a field, the stand-in keeps the English, as the stage does).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from jinstruct.formats.seed_task import SeedTask, load_seed_tasks, task_fields, with_fields
from jinstruct.paths import resolve_path
from jinstruct.seeds.postedit import _read_rows, effort_report, import_sheet, sheet_from_tasks
from jinstruct.seeds.translate import translate_seed_tasks
from jinstruct.show import Part, Shown


@dataclass(repr=False)
class EditExample(Shown):
    """One task: per field the English, the machine translation, the post-edit, and the edit distance."""

    task_id: str
    source: str  # where the post-edit came from
    fields: pd.DataFrame  # field, english, machine translation, post-edit, distance, normalized

    @property
    def title(self) -> str:
        changed = int((self.fields["distance"] > 0).sum())
        return (f"Seed {self.task_id}: {len(self.fields)} fields, {changed} changed by the post-edit, "
                f"{int(self.fields['distance'].sum())} characters edited")

    def parts(self) -> list[Part]:
        return [(f"Machine translation and post-edit ({self.source}); distance: characters changed (Levenshtein), "
                 "normalized: divided by the longer text's length", self.fields)]


def edit_example(english: SeedTask, machine: SeedTask, edited: SeedTask, source: str) -> EditExample:
    """The comparison of one task's machine translation and post-edit (same id and fields)."""
    effort = effort_report([machine], [edited]).fields
    english_fields = dict(task_fields(english))
    edited_fields = dict(task_fields(edited))
    table = pd.DataFrame({
        "field": effort["field"],
        "english": [english_fields.get(f, "") for f in effort["field"]],
        "machine translation": [dict(task_fields(machine))[f] for f in effort["field"]],
        "post-edit": [edited_fields[f] for f in effort["field"]],
        "distance": effort["distance"].astype(int),
        "normalized": effort["normalized"].round(3),
    })
    return EditExample(machine.id, source, table)


def _from_sheet(path: Path, machine: SeedTask) -> SeedTask:
    header, rows = _read_rows(path)
    col = {name: header.index(name) for name in ("task_id", "field", "edited")}
    fields = {cells[col["field"]].strip(): cells[col["edited"]] for _, cells in rows
              if cells[col["task_id"]].strip() == machine.id}
    return with_fields(machine, fields)


def example_edit(task: SeedTask, client: Any, *, shipped_seeds: str | Path, edited_sheet: str | Path | None = None,
                 **translate_kw: Any) -> EditExample:
    """Translate `task` through `client` and compare it with its post-edit (see the module doc)."""
    translation = translate_seed_tasks([task], client, desc="translating one seed", **translate_kw)
    if not translation.tasks:
        raise RuntimeError(f"the translation of {task.id} failed: {translation.problems()}")
    machine = translation.tasks[0]
    if edited_sheet is not None:
        return edit_example(task, machine, _from_sheet(resolve_path(edited_sheet), machine),
                            f"edited sheet {edited_sheet}")
    shipped = load_seed_tasks(resolve_path(shipped_seeds))
    with tempfile.TemporaryDirectory() as tmp:  # the stage's stand-in sheet, for this one task
        sheet = sheet_from_tasks([machine], shipped, Path(tmp) / "stand_in.csv", english=[task])
        edited = import_sheet(sheet, [machine])[0]
    return edit_example(task, machine, edited, f"stand-in: the shipped Japanese seed {task.id}")
