"""Post-editing of machine-translated seed tasks: the sheet a person edits, its checks, and the effort measured.

The sheet is a CSV (UTF-8 with a byte-order mark, so Excel shows Japanese correctly; JupyterLab and
LibreOffice open it too) with one row per field of each task:

    task_id, field, english, machine, edited, note

`field` is `instruction`, `instances.0.input`, `instances.0.output`, ...; `edited` starts as the machine
translation, and the person changes only that column. `note` holds the translation's problems for the task.
Reading it back checks that every (task_id, field) row is there exactly once, that none was added or
renamed, and that no field was emptied where the English has text; every error names the file, the CSV line
and the column.

In Excel, cells that begin with "=", "+", "-" or "@" can be taken for formulas when the file is opened by
double-click; import with Data > From Text/CSV and set the columns to Text, or use LibreOffice or JupyterLab.
A cell that came back as a spreadsheet error (#NAME? ...) is reported; an edited cell that starts with "=" where
the machine text does not (a formula typed by mistake, `=1+1`) is kept as text with a warning naming its line.
A row whose task id or field was changed is reported on that row: its machine text belongs to another (task, field).

A person's sheet is never overwritten: `export_sheet_safely` writes the sheet only where none is, leaves a sheet
that holds the same rows (the same English and machine text, whatever its edits) as it is, and writes a new export
next to a sheet made from another translation (`postedit_sheet.2.csv`, ...), saying so.

The effort report compares the machine translation with the edited text, field by field: tasks touched,
fields touched, characters changed (Levenshtein distance over characters), the share of fields accepted as
they were, and the normalised edit distance of each field (distance / length of the longer text). It compares
like with like: only the tasks whose post-edit matches a machine-translated task by id are compared (the others
are counted, not compared), and when the Japanese seeds are not post-edits of the translation at all (the shipped
original seeds standing in for a person's edits) there is no effort to measure: `EffortReport.not_comparable`
says so and reports no edit distance.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from rapidfuzz.distance import Levenshtein

from jinstruct.io import DataError, DataWarning, atomic_write_bytes
from jinstruct.plotting import count_axis, label, new_figure
from jinstruct.formats.seed_task import SeedTask, task_fields, with_fields

COLUMNS = ["task_id", "field", "english", "machine", "edited", "note"]
REQUIRED = ["task_id", "field", "english", "machine", "edited"]
_SPREADSHEET_ERRORS = {"#NAME?", "#VALUE!", "#REF!", "#DIV/0!", "#N/A", "#NUM!", "#NULL!", "#SPILL!", "#CALC!"}

Key = tuple[str, str]  # (task id, field)


def _pair(english: Sequence[SeedTask], machine: Sequence[SeedTask]) -> list[tuple[SeedTask | None, SeedTask]]:
    by_id = {t.id: t for t in english}
    pairs: list[tuple[SeedTask | None, SeedTask]] = []
    for m in machine:
        e = by_id.get(m.id)
        if e is None:
            raise ValueError(f"machine translation {m.id!r} has no English task with that id")
        if len(e.instances) != len(m.instances):
            raise ValueError(f"task {m.id!r}: {len(e.instances)} English instances, {len(m.instances)} translated")
        pairs.append((e, m))
    return pairs


def _sheet_bytes(rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8-sig")


def _write(path: str | os.PathLike[str], rows: list[dict[str, str]]) -> Path:
    return atomic_write_bytes(path, _sheet_bytes(rows))


def _rows(
    pairs: Sequence[tuple[SeedTask | None, SeedTask]],
    edited: Mapping[str, SeedTask],
    notes: Mapping[str, Sequence[str]],
    english_fallback: bool = False,
) -> list[dict[str, str]]:
    """One row per field; `edited` prefilled from the edited task, else the machine text, else (with
    `english_fallback`, for stand-in edits only) the English, so that no edited cell is empty where the English
    is not."""
    rows = []
    for e, m in pairs:
        eng = dict(task_fields(e)) if e is not None else {}
        ed = {f: t for f, t in task_fields(edited[m.id]) if t.strip()} if m.id in edited else {}
        note = "; ".join(notes.get(m.id, []))
        for field, text in task_fields(m):
            rows.append(
                {
                    "task_id": m.id,
                    "field": field,
                    "english": eng.get(field, ""),
                    "machine": text,
                    "edited": ed.get(field) or text or (eng.get(field, "") if english_fallback else ""),
                    "note": note if field == "instruction" else "",
                }
            )
    return rows


def export_sheet(
    english: Sequence[SeedTask],
    machine: Sequence[SeedTask],
    path: str | os.PathLike[str],
    notes: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """Write the post-editing sheet for `machine` (paired with `english` by id); `notes`: task id -> problems."""
    return _write(path, _rows(_pair(english, machine), {}, notes or {}))


def _same_rows(path: Path, rows: list[dict[str, str]]) -> bool:
    """Whether the sheet at `path` holds exactly `rows` in its task_id, field, english and machine columns."""
    try:
        header, found = _read_rows(path)
    except DataError:
        return False
    if not all(c in header for c in ("task_id", "field", "english", "machine")):
        return False
    col = {c: header.index(c) for c in ("task_id", "field", "english", "machine")}
    have = [tuple((cells + [""] * len(header))[col[c]].strip() if c in ("task_id", "field")
                  else (cells + [""] * len(header))[col[c]] for c in col) for _, cells in found]
    want = [(r["task_id"], r["field"], r["english"].replace("\r\n", "\n"), r["machine"].replace("\r\n", "\n"))
            for r in rows]
    return have == want


def export_sheet_safely(
    english: Sequence[SeedTask],
    machine: Sequence[SeedTask],
    path: str | os.PathLike[str],
    notes: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """Export the post-editing sheet to `path` without ever writing over a person's edits; returns the sheet to edit.

    No sheet at `path`: it is written. A sheet with the same rows (the same English and machine text; a person's
    edits in `edited` do not matter): left as it is. A sheet made from another machine translation: left as it is,
    and the fresh export goes to the first free `<stem>.N.csv` (N = 2, 3, ...; one with the same content is reused),
    with a warning that names both files."""
    path = Path(path)
    rows = _rows(_pair(english, machine), {}, notes or {})
    if not path.exists():
        return _write(path, rows)
    if _same_rows(path, rows):
        return path
    data = _sheet_bytes(rows)
    n = 2
    while True:
        version = path.with_name(f"{path.stem}.{n}{path.suffix}")
        if not version.exists():
            atomic_write_bytes(version, data)
            break
        if version.read_bytes() == data or _same_rows(version, rows):
            break
        n += 1
    warnings.warn(DataWarning(path, None, None, f"made from another machine translation, and perhaps edited: it is "
                              f"left as it is; the sheet of this translation is {version}"), stacklevel=2)
    return version


def sheet_from_tasks(
    machine: Sequence[SeedTask],
    edited_tasks: Sequence[SeedTask],
    path: str | os.PathLike[str],
    english: Sequence[SeedTask] | None = None,
) -> Path:
    """Write a sheet as a person would return it, the edits taken from `edited_tasks` (paired by id).

    Each field of a machine task takes the same field of the edited task with its id; a field the edited
    task lacks (it has fewer instances) or leaves empty where the machine's is not, and every field of a
    machine task with no edited task, keeps the machine translation, so the sheet passes `import_sheet`.
    Edited tasks with no machine translation, and instances beyond the machine's, are ignored. The tiny
    config passes the shipped Japanese seeds here as the stand-in for a person's edits.
    """
    edited = {t.id: t for t in edited_tasks}
    pairs = _pair(english, machine) if english is not None else [(None, m) for m in machine]
    return _write(path, _rows(pairs, edited, {}, english_fallback=True))


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (starting CSV line, cells) of each non-blank row; a cell may span lines."""
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(path, None, None, f"not UTF-8 ({e.reason}); save the sheet as 'CSV UTF-8'") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(path, start, None, f"not valid CSV ({e})") from None
        if header is None:
            header = [c.strip() for c in cells]
        elif any(c.strip() for c in cells):
            rows.append((start, [c.replace("\r\n", "\n") for c in cells]))
    if header is None:
        raise DataError(path, None, None, "empty file: expected a header row " + ",".join(COLUMNS))
    return header, rows


def read_edits(path: str | os.PathLike[str], machine: Sequence[SeedTask]) -> dict[Key, str]:
    """The edited text of every (task id, field) of `machine`, from a sheet, checked row by row."""
    path = Path(path)
    header, rows = _read_rows(path)
    for column in REQUIRED:
        if column not in header:
            raise DataError(path, 1, column, f"missing column (the header must have {', '.join(REQUIRED)})")
    col = {name: header.index(name) for name in REQUIRED}
    expected = {m.id: dict(task_fields(m)) for m in machine}
    owner: dict[str, list[Key]] = {}  # machine text -> the (task, field) rows it belongs to
    for t, fields in expected.items():
        for f, text in fields.items():
            owner.setdefault(text, []).append((t, f))
    edits: dict[Key, str] = {}
    first_line: dict[Key, int] = {}
    for line, cells in rows:
        cells = cells + [""] * (len(header) - len(cells))
        task_id, field = cells[col["task_id"]].strip(), cells[col["field"]].strip()
        english, edited = cells[col["english"]], cells[col["edited"]]
        machine_cell = cells[header.index("machine")] if "machine" in header else None
        if task_id not in expected:
            raise DataError(path, line, "task_id", f"unknown task id {task_id!r} (ids must stay as exported)")
        if field not in expected[task_id]:
            known = ", ".join(expected[task_id])
            raise DataError(path, line, "field", f"task {task_id!r} has no field {field!r} (it has {known})")
        key = (task_id, field)
        if machine_cell is not None and machine_cell != expected[task_id][field]:
            others = [k for k in owner.get(machine_cell, []) if k != key]
            if others:
                t, f = others[0]
                column = "task_id" if t != task_id else "field"
                raise DataError(path, line, column, f"this row reads '{task_id} {field}', but its machine text is "
                                f"that of '{t} {f}': was its {column} changed? (ids and fields must stay as exported)")
        if key in first_line:
            raise DataError(
                path, line, "field", f"duplicate row for {task_id} {field} (first on line {first_line[key]})"
            )
        if not edited.strip() and (english.strip() or expected[task_id][field].strip()):
            raise DataError(
                path,
                line,
                "edited",
                f"empty for {task_id} {field}, but the English (or the machine translation) is not",
            )
        if edited.strip() in _SPREADSHEET_ERRORS:
            raise DataError(path, line, "edited", f"{edited.strip()} is a spreadsheet error, not text")
        if edited.lstrip().startswith("=") and not expected[task_id][field].lstrip().startswith("="):
            warnings.warn(DataWarning(path, line, "edited", f"{edited.strip()[:40]!r} looks like a spreadsheet "
                                      "formula; it is kept as the text it is"), stacklevel=2)
        first_line[key] = line
        edits[key] = edited
    missing = [(t, f) for t, fields in expected.items() for f in fields if (t, f) not in edits]
    if missing:
        shown = ", ".join(f"{t} {f}" for t, f in missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise DataError(path, None, "field", f"{len(missing)} missing rows: {shown}")
    return edits


def apply_edits(machine: Sequence[SeedTask], edits: Mapping[Key, str]) -> list[SeedTask]:
    """The machine tasks with each (task id, field) in `edits` replaced by its edited text."""
    ids = {m.id for m in machine}
    unknown = sorted(k for k in edits if k[0] not in ids)
    if unknown:
        raise KeyError(f"edits for tasks not in the machine translation: {unknown[:5]}")
    return [with_fields(m, {f: text for (t, f), text in edits.items() if t == m.id}) for m in machine]


def import_sheet(path: str | os.PathLike[str], machine: Sequence[SeedTask]) -> list[SeedTask]:
    """The post-edited seed tasks from an edited sheet of `machine`, after every check."""
    return apply_edits(machine, read_edits(path, machine))


FIELD_COLUMNS = ["task_id", "field", "machine_chars", "edited_chars", "distance", "normalized", "accepted"]


@dataclass(frozen=True)
class EffortReport:
    """Per-field comparison of machine translation and post-edit, and the totals (`summary["comparable"]` False:
    nothing was compared, and `summary["note"]` says why)."""

    fields: pd.DataFrame  # task_id, field, machine_chars, edited_chars, distance, normalized, accepted
    summary: dict[str, Any]

    @property
    def comparable(self) -> bool:
        return bool(self.summary.get("comparable", True))

    @classmethod
    def not_comparable(cls, note: str, machine_tasks: int) -> EffortReport:
        """The report when the seeds in use are not post-edits of the machine translation: no edit distance."""
        return cls(pd.DataFrame(columns=FIELD_COLUMNS),
                   {"comparable": False, "note": note, "tasks": 0, "machine_tasks": machine_tasks})

    def per_task(self) -> pd.DataFrame:
        """One row per task: fields, fields touched, characters changed."""
        g = self.fields.groupby("task_id", sort=False)
        return pd.DataFrame(
            {
                "fields": g.size(),
                "fields_touched": g["accepted"].apply(lambda s: int((~s).sum())),
                "chars_changed": g["distance"].sum(),
            }
        ).reset_index()


def effort_report(machine: Sequence[SeedTask], edited: Sequence[SeedTask]) -> EffortReport:
    """How much a person changed, over the tasks of `edited` that match a task of `machine` by id (a matched task
    must have the same fields in both).

    `summary`: comparable (True), tasks (compared), machine_tasks, edited_tasks, tasks_touched, share_tasks_touched,
    fields, fields_touched, share_fields_accepted, chars_changed (sum of Levenshtein distances), machine_chars,
    edited_chars, char_edit_rate (chars_changed / edited_chars, the character-level analogue of HTER),
    mean_normalized_distance (over fields).
    """
    edited_by_id = {t.id: t for t in edited}
    if len(edited_by_id) != len(edited):
        raise ValueError("the edited tasks have repeated ids")
    compared = [m for m in machine if m.id in edited_by_id]
    if not compared:
        raise ValueError("no edited task matches a machine-translated task by id: nothing to compare")
    records = []
    for m in compared:
        e_fields = dict(task_fields(edited_by_id[m.id]))
        for field, m_text in task_fields(m):
            if field not in e_fields:
                raise ValueError(f"task {m.id!r}: the edited task has no {field}")
            e_text = e_fields[field]
            records.append(
                {
                    "task_id": m.id,
                    "field": field,
                    "machine_chars": len(m_text),
                    "edited_chars": len(e_text),
                    "distance": Levenshtein.distance(m_text, e_text),
                    "normalized": Levenshtein.normalized_distance(m_text, e_text),
                    "accepted": m_text == e_text,
                }
            )
        if len(e_fields) != sum(1 for _ in task_fields(m)):
            raise ValueError(f"task {m.id!r}: the edited task has other fields than the machine translation")
    df = pd.DataFrame(records, columns=FIELD_COLUMNS)
    touched = df.groupby("task_id", sort=False)["accepted"].apply(lambda s: not s.all())
    n_tasks, n_fields = len(compared), len(df)
    edited_chars = int(df["edited_chars"].sum())
    chars_changed = int(df["distance"].sum())
    summary: dict[str, Any] = {
        "comparable": True,
        "tasks": n_tasks,
        "machine_tasks": len(machine),
        "edited_tasks": len(edited),
        "tasks_touched": int(touched.sum()),
        "share_tasks_touched": float(touched.mean()) if n_tasks else 0.0,
        "fields": n_fields,
        "fields_touched": int((~df["accepted"]).sum()),
        "share_fields_accepted": float(df["accepted"].mean()) if n_fields else 0.0,
        "chars_changed": chars_changed,
        "machine_chars": int(df["machine_chars"].sum()),
        "edited_chars": edited_chars,
        "char_edit_rate": chars_changed / edited_chars if edited_chars else 0.0,
        "mean_normalized_distance": float(df["normalized"].mean()) if n_fields else 0.0,
    }
    return EffortReport(df, summary)


def plot_edit_distance(report: EffortReport, bins: int = 20) -> Figure:
    """Histogram of the per-field normalised edit distance (0: accepted as is, 1: rewritten)."""
    fig, (ax,) = new_figure(6, 3.5)
    if not report.comparable:  # nothing was compared: the figure says why instead of showing a distance
        ax.set_axis_off()
        ax.text(0.5, 0.5, "編集距離なし: 使用中の日本語シードは機械翻訳のポストエディットではありません\n"
                + report.summary["note"], ha="center", va="center", wrap=True, fontsize=8)
        return fig
    values = report.fields["normalized"].to_numpy()
    ax.hist(values, bins=bins, range=(0.0, 1.0), color="#4c72b0", edgecolor="white")
    ax.set_xlim(0, 1)
    count_axis(ax, "y")
    ax.set_xlabel(label("正規化編集距離 (0 = 機械翻訳のまま, 1 = 全面的に書き換え)",
                        "normalised edit distance (0 = machine translation kept, 1 = rewritten)"))
    ax.set_ylabel(label("フィールド数", "fields"))
    s = report.summary
    ax.set_title(label(f"ポストエディットの編集量: {s['fields']} フィールド中 {s['share_fields_accepted']:.0%} がそのまま採用",
                       f"Post-editing effort: {s['share_fields_accepted']:.0%} of {s['fields']} fields kept as translated"))
    return fig
