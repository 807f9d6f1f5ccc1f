"""Stage 01 in one call: translate the English seeds, export the post-editing sheet, take the edits back, measure
the effort, and settle which Japanese seeds the later stages use.

With `edited_sheet` (a sheet a person edited) the post-edited translations become the seeds. Without it, the
project's shipped Japanese seeds stand in for the person's edits: the edited sheet is built from them (paired by
id), the effort report compares them with the machine translation, and the shipped set is what generation reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinstruct.postedit import EffortReport, effort_report, export_sheet, import_sheet, sheet_from_tasks
from jinstruct.seeds import SeedTask, load_seed_tasks, write_seed_tasks
from jinstruct.translate import Translation, translate_seed_tasks


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


def edit_seeds(english: list[SeedTask], client: Any, out_dir: Path, *, shipped_seeds: Path,
               edited_sheet: Path | None = None, **translate_kw: Any) -> SeedEditing:
    """Write into `out_dir`: machine_translated.jsonl, translation_report.csv, postedit_sheet.csv,
    (postedit_sheet_edited.csv), post_edited.jsonl and ja_seed_tasks.jsonl."""
    translation = translate_seed_tasks(english, client, **translate_kw)
    machine = translation.tasks
    if not machine:
        raise RuntimeError(f"every translation failed: {translation.problems()}")
    write_seed_tasks(out_dir / "machine_translated.jsonl", machine)
    translation.table().to_csv(out_dir / "translation_report.csv", index=False)
    sheet = export_sheet(english, machine, out_dir / "postedit_sheet.csv",
                         notes={r.task_id: r.problems for r in translation.reports if r.problems})
    shipped = load_seed_tasks(shipped_seeds)
    by_person = edited_sheet is not None
    if edited_sheet is None:
        edited_sheet = sheet_from_tasks(machine, shipped, out_dir / "postedit_sheet_edited.csv", english=english)
    edited = import_sheet(edited_sheet, machine)
    write_seed_tasks(out_dir / "post_edited.jsonl", edited)
    final = edited if by_person else shipped
    seeds_path = write_seed_tasks(out_dir / "ja_seed_tasks.jsonl", final)
    return SeedEditing(english, translation, sheet, edited_sheet, edited, effort_report(machine, edited), final,
                       seeds_path)
