"""Stage 01 in one call: translate the English seeds, export the post-editing sheet, take the edits back, measure
the effort, and settle which Japanese seeds the later stages use.

With `edited_sheet` (a sheet a person edited) the post-edited translations become the seeds, and the effort report
compares them with the machine translation (the tasks matched by id). Without it, the project's shipped Japanese
seeds stand in for the person's edits: the edited sheet is built from them (paired by id) so the files of the stage
exist, and the shipped set is what generation reads; but those seeds were written in Japanese, not post-edited from
this translation, so the effort report says so and reports no edit distance (comparing them would measure a
rewrite, not an edit).

A person's work is never overwritten: the sheet is exported with `export_sheet_safely` (a sheet already there with
the same rows, edited or not, is left as it is; one made from another translation is kept and the new export gets a
versioned name), and every input (the shipped seeds, the edited sheet) is read and checked before any file of the
stage is written, so a bad input leaves the run folder as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinstruct.formats.layout import RunLayout
from jinstruct.io import write_json
from jinstruct.paths import resolve_path
from jinstruct.seeds.postedit import EffortReport, effort_report, export_sheet_safely, import_sheet, sheet_from_tasks
from jinstruct.formats.seed_task import SeedTask, load_seed_tasks, write_seed_tasks
from jinstruct.seeds.translate import Translation, translate_seed_tasks

STAND_IN_NOTE = ("The Japanese seeds in use are the shipped original seeds ({path}), written in Japanese, not "
                 "post-edits of this machine translation: there is no edit distance to report. To measure the "
                 "effort, post-edit seeds/postedit_sheet.csv and set seeds.edited_sheet to it.")


@dataclass
class SeedEditing:
    english: list[SeedTask]
    translation: Translation
    sheet: Path  # the sheet to edit
    edited_sheet: Path  # the sheet the edits came from
    edited: list[SeedTask]  # post-edited translations
    effort: EffortReport
    seeds: list[SeedTask]  # what the later stages use
    seeds_path: Path


def edit_seeds(english: list[SeedTask], client: Any, layout: RunLayout, *, shipped_seeds: str | Path,
               edited_sheet: str | Path | None = None, **translate_kw: Any) -> SeedEditing:
    """Write the run's seed files (the machine translation, its report, the post-editing sheet, the post-edited
    tasks, the Japanese seeds: see `RunLayout`). Relative paths are relative to the project root."""
    layout.seeds.mkdir(parents=True, exist_ok=True)
    shipped_seeds = resolve_path(shipped_seeds)
    edited_sheet = resolve_path(edited_sheet) if edited_sheet else None
    shipped = load_seed_tasks(shipped_seeds)  # every input is checked before anything is written
    translation = translate_seed_tasks(english, client, **translate_kw)
    machine = translation.tasks
    if not machine:
        raise RuntimeError(f"every translation failed: {translation.problems()}")
    by_person = edited_sheet is not None
    edited = import_sheet(edited_sheet, machine) if edited_sheet is not None else None
    write_seed_tasks(layout.machine_translated, machine)
    translation.table().to_csv(layout.translation_report, index=False)
    sheet = export_sheet_safely(english, machine, layout.postedit_sheet,
                                notes={r.task_id: r.problems for r in translation.reports if r.problems})
    if edited_sheet is None:
        edited_sheet = sheet_from_tasks(machine, shipped, layout.postedit_sheet_stand_in, english=english)
        edited = import_sheet(edited_sheet, machine)
    assert edited is not None
    write_seed_tasks(layout.post_edited, edited)
    final = edited if by_person else shipped
    seeds_path = write_seed_tasks(layout.japanese_seeds, final)
    effort = (effort_report(machine, edited) if by_person
              else EffortReport.not_comparable(STAND_IN_NOTE.format(path=shipped_seeds), len(machine)))
    return SeedEditing(english, translation, sheet, edited_sheet, edited, effort, final, seeds_path)


def save_effort(effort: EffortReport, path: Path) -> Path:
    """The effort summary (fields, characters changed, edit rates) as JSON, for the manifest and notebook 09."""
    return write_json(path, effort.summary)
