"""The post-editing sheet (export, edit, import with checks) and the effort report."""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
from matplotlib.figure import Figure

from jinstruct.io import DataError
from jinstruct.seeds.postedit import (
    COLUMNS,
    apply_edits,
    EffortReport,
    effort_report,
    export_sheet,
    import_sheet,
    plot_edit_distance,
    read_edits,
    sheet_from_tasks,
)
from jinstruct.formats.seed_task import SeedTask, load_seed_tasks, write_seed_tasks


def seed(tid: str, instruction: str, *instances: tuple[str, str], cls: bool = False) -> SeedTask:
    return SeedTask(
        id=tid,
        name=tid + "_name",
        instruction=instruction,
        instances=[{"input": i, "output": o} for i, o in instances],  # type: ignore[misc]
        is_classification=cls,
    )


ENGLISH = [
    seed("t1", "Give three tips for sleeping well.", ("", "- Keep a schedule\n- Avoid caffeine\n- Dim the lights")),
    seed("t2", "Is the review positive?", ("Great food.", "yes"), ("Cold soup, 2 stars.", "no"), cls=True),
]
MACHINE = [
    seed(
        "t1", "よく眠るためのヒントを3つ挙げてください。", ("", "- 予定を守る\n- カフェインを避ける\n- 照明を暗くする")
    ),
    seed(
        "t2", "そのレビューは肯定的ですか?", ("素晴らしい料理。", "はい"), ("冷たいスープ、星2つ。", "いいえ"), cls=True
    ),
]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header or COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode("utf-8-sig"))
    return path


def start_line(path: Path, needle: str) -> int:
    """The CSV line (1-based, physical) on which the first cell equal to `needle` starts a row."""
    text = path.read_bytes().decode("utf-8-sig")
    return text[: text.index("\r\n" + needle + ",")].count("\n") + 2


def test_export_writes_one_row_per_field_with_bom(tmp_path: Path) -> None:
    path = export_sheet(ENGLISH, MACHINE, tmp_path / "sheet.csv", notes={"t2": ["instruction: lost '2'"]})
    assert path.read_bytes().startswith(b"\xef\xbb\xbftask_id,field,english,machine,edited,note\r\n")
    df = pd.read_csv(path, encoding="utf-8-sig", keep_default_na=False, dtype=str)
    assert list(df.columns) == COLUMNS
    assert list(zip(df["task_id"], df["field"], strict=True)) == [
        ("t1", "instruction"),
        ("t1", "instances.0.input"),
        ("t1", "instances.0.output"),
        ("t2", "instruction"),
        ("t2", "instances.0.input"),
        ("t2", "instances.0.output"),
        ("t2", "instances.1.input"),
        ("t2", "instances.1.output"),
    ]
    assert (df["edited"] == df["machine"]).all()
    assert df.loc[2, "english"] == "- Keep a schedule\n- Avoid caffeine\n- Dim the lights"
    assert df.loc[2, "machine"] == "- 予定を守る\n- カフェインを避ける\n- 照明を暗くする"
    assert list(df["note"]) == ["", "", "", "instruction: lost '2'", "", "", "", ""]


def test_export_needs_an_english_task_of_the_same_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no English task"):
        export_sheet(ENGLISH[:1], MACHINE, tmp_path / "s.csv")
    with pytest.raises(ValueError, match="1 English instances, 2 translated"):
        export_sheet([ENGLISH[0], seed("t2", "x", ("", "y"))], MACHINE, tmp_path / "s.csv")


def test_round_trip_export_edit_import(tmp_path: Path) -> None:
    sheet = export_sheet(ENGLISH, MACHINE, tmp_path / "sheet.csv")
    assert import_sheet(sheet, MACHINE) == MACHINE  # untouched sheet: the machine translation as is

    rows = read_rows(sheet)
    rows[0]["edited"] = "ぐっすり眠るためのコツを3つ教えてください。"
    rows[7]["edited"] = "いいえ\n(星2つなので否定的)"
    rows.reverse()  # row order does not matter
    rows[0]["note"] = "checked by A."  # notes and other columns are free
    edited_sheet = write_rows(tmp_path / "edited.csv", rows)

    edited = import_sheet(edited_sheet, MACHINE)
    assert edited[0].instruction == "ぐっすり眠るためのコツを3つ教えてください。"
    assert edited[1].instances[1].output == "いいえ\n(星2つなので否定的)"
    assert edited[0].instances == MACHINE[0].instances
    assert edited[1].instruction == MACHINE[1].instruction
    assert [(t.id, t.name, t.is_classification) for t in edited] == [
        (t.id, t.name, t.is_classification) for t in MACHINE
    ]
    assert load_seed_tasks(write_seed_tasks(tmp_path / "ja.jsonl", edited)) == edited


def test_excel_style_crlf_inside_cells_is_read_as_lf(tmp_path: Path) -> None:
    rows = read_rows(export_sheet(ENGLISH, MACHINE, tmp_path / "sheet.csv"))
    rows[2]["edited"] = "- 一\r\n- 二"
    edited = import_sheet(write_rows(tmp_path / "e.csv", rows), MACHINE)
    assert edited[0].instances[0].output == "- 一\n- 二"


def test_apply_edits_replaces_only_the_named_fields() -> None:
    out = apply_edits(MACHINE, {("t2", "instances.0.output"): "肯定"})
    assert out[1].instances[0].output == "肯定" and out[0] == MACHINE[0]
    with pytest.raises(KeyError):
        apply_edits(MACHINE, {("t9", "instruction"): "x"})
    with pytest.raises(KeyError):
        apply_edits(MACHINE, {("t1", "instances.3.output"): "x"})


Edit = Callable[[list[dict[str, str]]], list[dict[str, str]]]


def _set(i: int, column: str, value: str) -> Edit:
    def edit(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        rows[i][column] = value
        return rows

    return edit


@pytest.mark.parametrize(
    ("edit", "column", "words", "row"),
    [
        (_set(5, "task_id", "t2x"), "task_id", "unknown task id 't2x'", "t2x"),
        (_set(4, "field", "instances.0.inptu"), "field", "has no field 'instances.0.inptu'", 4),
        (_set(7, "field", "instances.2.output"), "field", "has no field 'instances.2.output'", 7),
        (
            lambda rows: rows[:6] + [dict(rows[3])] + rows[6:],
            "field",
            "duplicate row for t2 instruction (first on line",
            6,
        ),
        (
            _set(6, "edited", "   "),
            "edited",
            "empty for t2 instances.1.input, but the English (or the machine translation) is not",
            6,
        ),
        (_set(3, "edited", "#NAME?"), "edited", "#NAME? is a spreadsheet error", 3),
    ],
)
def test_each_bad_row_is_an_error_naming_file_line_and_column(
    tmp_path: Path, edit: Edit, column: str, words: str, row: int | str
) -> None:
    rows = read_rows(export_sheet(ENGLISH, MACHINE, tmp_path / "sheet.csv"))
    bad = write_rows(tmp_path / "bad.csv", edit(rows))
    with pytest.raises(DataError) as err:
        import_sheet(bad, MACHINE)
    e = err.value
    assert (e.path, e.field) == (str(bad), column)
    assert words in e.problem
    # Line numbers count physical lines: the multi-line output of t1 (row 2) spans three.
    if isinstance(row, int):
        text = bad.read_bytes().decode("utf-8-sig")
        starts = [1]
        reader = csv.reader(io.StringIO(text, newline=""))
        for _ in reader:
            starts.append(reader.line_num + 1)
        assert e.line == starts[row + 1]
        assert e.line > row + 2  # past the multi-line cell
    else:
        assert e.line == start_line(bad, row)
    assert f"{bad}, line {e.line}: field '{column}'" in str(e)


def test_an_empty_field_is_fine_where_the_english_is_empty(tmp_path: Path) -> None:
    rows = read_rows(export_sheet(ENGLISH, MACHINE, tmp_path / "sheet.csv"))
    assert rows[1]["english"] == "" and rows[1]["edited"] == ""
    assert import_sheet(write_rows(tmp_path / "ok.csv", rows), MACHINE) == MACHINE


def test_missing_rows_are_listed(tmp_path: Path) -> None:
    rows = read_rows(export_sheet(ENGLISH, MACHINE, tmp_path / "sheet.csv"))
    bad = write_rows(tmp_path / "missing.csv", [r for i, r in enumerate(rows) if i not in (2, 7)])
    with pytest.raises(DataError) as err:
        import_sheet(bad, MACHINE)
    assert (err.value.line, err.value.field) == (None, "field")
    assert err.value.problem == "2 missing rows: t1 instances.0.output, t2 instances.1.output"


def test_a_missing_column_and_blank_lines(tmp_path: Path) -> None:
    rows = read_rows(export_sheet(ENGLISH, MACHINE, tmp_path / "sheet.csv"))
    no_edited = write_rows(tmp_path / "cols.csv", rows, header=["task_id", "field", "english", "machine"])
    with pytest.raises(DataError) as err:
        read_edits(no_edited, MACHINE)
    assert (err.value.line, err.value.field) == (1, "edited")
    # Trailing blank rows (as spreadsheets add) are ignored.
    blank = tmp_path / "blank.csv"
    blank.write_bytes(write_rows(tmp_path / "x.csv", rows).read_bytes() + b",,,,,\r\n\r\n")
    assert import_sheet(blank, MACHINE) == MACHINE
    latin = tmp_path / "latin.csv"
    latin.write_bytes("task_id,field,english,machine,edited\r\nt1,instruction,é,é,é\r\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        import_sheet(latin, MACHINE)


def test_sheet_from_tasks_pairs_edited_tasks_by_id(tmp_path: Path) -> None:
    stand_in = [
        seed(
            "t2",
            "このレビューは好意的ですか?",
            ("素晴らしい料理でした。", "はい"),
            ("スープが冷めていた。星2つ。", "いいえ"),
            cls=True,
        ),
        seed("t99", "対になる機械翻訳がないタスク", ("", "無視される")),
    ]
    path = sheet_from_tasks(MACHINE, stand_in, tmp_path / "stand_in.csv", english=ENGLISH)
    rows = read_rows(path)
    assert rows[0]["english"] == ENGLISH[0].instruction
    edited = import_sheet(path, MACHINE)
    assert edited == [MACHINE[0], stand_in[0]]  # t1 has no stand-in: accepted as translated
    assert read_rows(sheet_from_tasks(MACHINE, stand_in, tmp_path / "no_en.csv"))[0]["english"] == ""
    # A stand-in with fewer instances edits what it has; one with more gives only as many as the machine's.
    fewer = sheet_from_tasks(MACHINE, [seed("t2", "別の指示", ("", "y"))], tmp_path / "fewer.csv")
    assert import_sheet(fewer, MACHINE)[1] == seed(
        "t2",
        "別の指示",
        (MACHINE[1].instances[0].input, "y"),  # an empty stand-in input where the machine has one: kept
        (MACHINE[1].instances[1].input, MACHINE[1].instances[1].output),
        cls=True,
    )
    more = sheet_from_tasks(MACHINE, [seed("t1", "指示", ("a", "b"), ("c", "d"))], tmp_path / "more.csv")
    assert import_sheet(more, MACHINE)[0] == seed("t1", "指示", ("a", "b"))


# --- effort --------------------------------------------------------------------------------------------------

EFFORT_MACHINE = [
    seed("A", "kitten", ("", "abc")),
    seed("B", "同じ", ("東京都", "はい")),
    seed("C", "x", ("", "y")),
]
EFFORT_EDITED = [
    seed("A", "sitting", ("", "abc")),  # instruction: 3 edits (k->s, e->i, +g), 3/7
    seed("B", "同じ", ("京都", "いいえ")),  # input: 1 deletion, 1/3; output: は->い, +え = 2, 2/3
    seed("C", "x", ("", "y")),
]


def test_effort_numbers_on_a_hand_computed_example() -> None:
    report = effort_report(EFFORT_MACHINE, list(reversed(EFFORT_EDITED)))
    df = report.fields
    assert list(df["distance"]) == [3, 0, 0, 0, 1, 2, 0, 0, 0]
    assert list(df["normalized"]) == pytest.approx([3 / 7, 0, 0, 0, 1 / 3, 2 / 3, 0, 0, 0])
    assert list(df["accepted"]) == [False, True, True, True, False, False, True, True, True]
    assert report.summary == pytest.approx(
        {
            "comparable": True,
            "tasks": 3,
            "machine_tasks": 3,
            "edited_tasks": 3,
            "tasks_touched": 2,
            "share_tasks_touched": 2 / 3,
            "fields": 9,
            "fields_touched": 3,
            "share_fields_accepted": 6 / 9,
            "chars_changed": 6,
            "machine_chars": 6 + 3 + 2 + 3 + 2 + 1 + 1,
            "edited_chars": 7 + 3 + 2 + 2 + 3 + 1 + 1,
            "char_edit_rate": 6 / 19,
            "mean_normalized_distance": (3 / 7 + 1 / 3 + 2 / 3) / 9,
        }
    )
    assert report.per_task().to_dict("records") == [
        {"task_id": "A", "fields": 3, "fields_touched": 1, "chars_changed": 3},
        {"task_id": "B", "fields": 3, "fields_touched": 2, "chars_changed": 3},
        {"task_id": "C", "fields": 3, "fields_touched": 0, "chars_changed": 0},
    ]


def test_effort_compares_only_the_tasks_matched_by_id() -> None:
    # B has no edit and D no machine translation: A and C are compared, like with like
    edited = [EFFORT_EDITED[0], EFFORT_EDITED[2], seed("D", "別の課題", ("", "答え"))]
    report = effort_report(EFFORT_MACHINE, edited)
    s = report.summary
    assert (s["tasks"], s["machine_tasks"], s["edited_tasks"]) == (2, 3, 3)
    assert list(report.fields["task_id"].unique()) == ["A", "C"]
    assert (s["fields"], s["fields_touched"], s["chars_changed"], s["edited_chars"]) == (6, 1, 3, 7 + 3 + 1 + 1)
    assert s["char_edit_rate"] == pytest.approx(3 / 12)
    with pytest.raises(ValueError, match="nothing to compare"):
        effort_report(EFFORT_MACHINE, [seed("D", "別の課題", ("", "答え"))])
    with pytest.raises(ValueError, match="has no instances.1.input"):
        effort_report([seed("A", "a", ("", "b"), ("c", "d"))], [seed("A", "a", ("", "b"))])


def test_original_seeds_are_not_post_edits_and_report_no_edit_distance() -> None:
    report = EffortReport.not_comparable("the shipped original seeds are in use", machine_tasks=3)
    assert not report.comparable
    assert report.summary == {"comparable": False, "note": "the shipped original seeds are in use", "tasks": 0,
                              "machine_tasks": 3}
    assert "chars_changed" not in report.summary and report.fields.empty and report.per_task().empty
    fig = plot_edit_distance(report)
    (ax,) = fig.axes
    assert not ax.patches and "編集距離なし" in ax.texts[0].get_text()


def test_effort_of_the_round_trip_matches_the_edits(tmp_path: Path) -> None:
    rows = read_rows(export_sheet(ENGLISH, MACHINE, tmp_path / "sheet.csv"))
    rows[5]["edited"] = "はい。"  # one character added
    report = effort_report(MACHINE, import_sheet(write_rows(tmp_path / "e.csv", rows), MACHINE))
    assert (report.summary["tasks_touched"], report.summary["fields_touched"], report.summary["chars_changed"]) == (
        1,
        1,
        1,
    )


def test_plot_edit_distance_histogram_with_japanese_labels() -> None:
    report = effort_report(EFFORT_MACHINE, EFFORT_EDITED)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph is a warning: make it fail the test
        fig = plot_edit_distance(report, bins=10)
        assert isinstance(fig, Figure)
        fig.savefig(io.BytesIO(), format="png")
    (ax,) = fig.axes
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 10 and sum(heights) == 9
    assert heights[0] == 6  # the six accepted fields
    assert heights[3] == 1 and heights[4] == 1 and heights[6] == 1  # 0.33, 3/7 = 0.43, 0.67
    assert "正規化編集距離" in ax.get_xlabel()
    assert "67%" in ax.get_title()
    families = matplotlib.rcParams["font.family"]
    assert any("IPAex" in f or "Noto" in f for f in families)


def test_stand_in_sheet_fills_a_field_the_machine_dropped_with_the_english(tmp_path):
    # the machine translation lost t2's second input; the stand-in edits have one instance only
    machine = [MACHINE[0], seed("t2", "そのレビューは肯定的ですか?", ("素晴らしい料理。", "はい"), ("", "いいえ"), cls=True)]
    stand_in = [seed("t2", "このレビューは好意的ですか?", ("料理が最高。", "はい"))]
    path = sheet_from_tasks(machine, stand_in, tmp_path / "edited.csv", english=ENGLISH)
    rows = {(r["task_id"], r["field"]): r["edited"] for r in read_rows(path)}
    assert rows[("t2", "instances.1.input")] == "Cold soup, 2 stars."
    assert rows[("t2", "instruction")] == "このレビューは好意的ですか?"
    edited = import_sheet(path, machine)
    assert edited[1].instances[1].input == "Cold soup, 2 stars."
    # a sheet for a person keeps the dropped field empty, so that importing it unfilled is an error
    blank = export_sheet(ENGLISH, machine, tmp_path / "sheet.csv")
    assert {(r["task_id"], r["field"]): r["edited"] for r in read_rows(blank)}[("t2", "instances.1.input")] == ""
    with pytest.raises(DataError, match="instances.1.input"):
        import_sheet(blank, machine)
