"""Every step's figures: one language at a time, every character drawable, count axes in whole numbers, no empty
panel drawn as a plot, the 1-10 axis from 1, both lines of 02 visible, and the one save (PDF + PNG at 200 dpi) that
a notebook shows once."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from jinstruct import plotting
from jinstruct.filter import stats as fs
from jinstruct.filter.heuristics import FilterParams
from jinstruct.filter.stage import filter_records
from jinstruct.formats.seed_task import Instance, SeedTask
from jinstruct.generate.self_instruct import plot_kept_vs_generated
from jinstruct.judge.figures import score_figure, win_tie_loss_figure
from jinstruct.seeds.postedit import effort_report, plot_edit_distance
from jinstruct.train.figures import loss_figure

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
RECORDS = [
    {"id": "a", "instruction": "日本の四季について説明してください。", "input": "", "output": "春夏秋冬があります。"},
    {"id": "b", "instruction": "日本の四季について説明してください。", "input": "", "output": "重複です。"},
    {"id": "c", "instruction": "、句読点から始まる指示です。", "input": "", "output": "出力"},
    {"id": "d", "instruction": "次の文章を要約してください。", "input": "", "output": "要約です。"},
]


def drawn(fig: Figure) -> Figure:
    fig.savefig(io.BytesIO(), format="png")  # lays out and draws: ticks and texts are final
    return fig


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_text() and t.get_visible()]


def seed(task_id: str, instruction: str) -> SeedTask:
    return SeedTask(id=task_id, name=task_id, instruction=instruction, instances=[Instance(input="", output="出力")],
                    is_classification=False)


def every_figure() -> dict[str, Figure]:
    result = filter_records(RECORDS, [], FilterParams(min_instruction_chars=2))
    series = pd.DataFrame({"request": [0, 1, 2], "generated": [3, 6, 9], "kept_total": [3, 6, 9],
                           "keep_rate": [1.0, 1.0, 1.0]})
    losses = pd.DataFrame({"model": ["m"] * 3, "step": [1, 2, 3], "loss": [2.0, 1.5, 1.2],
                           "eval_loss": [np.nan, np.nan, 1.4]})
    by_cat = pd.DataFrame({"wins": [2, 1], "ties": [1, 0], "losses": [0, 1], "errors": [0, 0], "n": [3, 2]},
                          index=pd.MultiIndex.from_tuples([("writing", "tuned"), ("coding-math", "tuned")]))
    overall = pd.DataFrame({"wins": [3], "ties": [1], "losses": [1], "errors": [0], "n": [5]}, index=["tuned"])
    scores = pd.DataFrame({"mean": [8.0, 3.0], "ci_low": [7.0, 2.0], "ci_high": [9.0, 4.0], "n": [2, 2],
                           "errors": [0, 0]},
                          index=pd.MultiIndex.from_tuples([("tuned", "writing"), ("base", "writing")]))
    machine, edited = [seed("t1", "機械の翻訳です。")], [seed("t1", "人の翻訳です。")]
    return {
        "01": plot_edit_distance(effort_report(machine, edited)),
        "02": plot_kept_vs_generated(series),
        "03_rejections": fs.plot_rejections(fs.rejection_table(result)),
        "03_lengths": fs.plot_lengths(fs.lengths(result.kept)),
        "03_rouge": fs.plot_rouge_histogram(fs.nearest_seed_scores(result.kept, ["四季を説明してください。"])),
        "03_predicates": fs.plot_predicate_objects(fs.top_predicate_objects(fs.predicate_objects(result.kept))),
        "04": loss_figure(losses),
        "06_wtl": win_tie_loss_figure(by_cat, overall, baseline="base"),
        "06_scores": score_figure(scores),
    }


def test_one_language_sets_every_label_title_and_category():
    with plotting.in_language("en"):
        english = {name: texts(drawn(fig)) for name, fig in every_figure().items()}
    japanese = {name: texts(drawn(fig)) for name, fig in every_figure().items()}
    data = {"春", "四季", "要約", "説明する", "文章"}  # text that comes from the records themselves
    for name, found in english.items():
        foreign = [t for t in found if JAPANESE.search(t) and not any(d in t for d in data)]
        assert not foreign, (name, foreign)
    for name, found in japanese.items():
        assert any(JAPANESE.search(t) for t in found), name
    assert "Filtering by reason" in english["03_rejections"] and "kept" in english["03_rejections"]
    assert "採用" in japanese["03_rejections"] and "句読点で始まる" in japanese["03_rejections"]
    assert {"overall", "writing", "coding and math"} <= set(english["06_wtl"])
    assert {"全体", "作文", "コーディング・数学"} <= set(japanese["06_wtl"])
    assert plotting.language() == "ja"
    with pytest.raises(ValueError, match="ja, en"):
        plotting.set_language("fr")


def test_undrawable_characters_become_the_geta_mark_without_a_warning(tmp_path: Path):
    fig, (ax,) = plotting.new_figure()
    ax.set_title("豃を説明する")  # U+8C43: not in IPAexGothic nor DejaVu Sans
    ax.set_xlabel("≤ 0.7 → kept")  # symbols the Japanese font lacks come from the fallback font
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" is a warning
        pdf, png = plotting.save_figures(fig, tmp_path / "f")
    assert ax.get_title() == "〓を説明する" and ax.get_xlabel() == "≤ 0.7 → kept"
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.suffix == ".pdf"
    with Image.open(png) as image:
        assert image.info["dpi"][0] >= 199.9 and image.size[0] >= 1100  # 6 inches at 200 dpi


def test_a_field_without_text_gets_a_note_not_an_empty_histogram():
    fig = drawn(fs.plot_lengths(fs.lengths(RECORDS)))  # no record has an input
    instruction, inputs, _ = fig.axes
    assert not inputs.patches and list(inputs.get_xticks()) == [] and list(inputs.get_yticks()) == []
    assert any("入力のある記録はありません" in t.get_text() for t in inputs.texts)
    assert inputs.get_title() == "入力の長さ (n=0)" and instruction.patches


def test_count_axes_have_whole_number_ticks():
    figs = every_figure()
    counts = {"01": figs["01"].axes[0].get_yticks(), "02": figs["02"].axes[0].get_yticks(),
              "03_rejections": drawn(figs["03_rejections"]).axes[0].get_xticks(),
              "03_lengths": drawn(figs["03_lengths"]).axes[0].get_yticks(),
              "03_rouge": drawn(figs["03_rouge"]).axes[0].get_yticks(),
              "04_steps": drawn(figs["04"]).axes[0].get_xticks()}
    for name, ticks in counts.items():
        assert len(ticks) and all(float(t).is_integer() for t in ticks), (name, ticks)


def test_the_score_axis_starts_at_one():
    fig = drawn(every_figure()["06_scores"])
    ax = fig.axes[0]
    assert ax.get_xlim() == (1.0, 10.0) and list(ax.get_xticks()) == list(range(1, 11))
    bars = [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches]
    assert sorted(bars) == [(1.0, 3.0), (1.0, 8.0)]  # each bar runs from 1 to the mean


def test_generated_stays_visible_where_it_equals_kept():
    ax = every_figure()["02"].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    generated, kept = lines["生成 (解析できた候補)"], lines["採用 (ROUGE-L ≤ しきい値)"]
    assert list(generated.get_ydata()) == list(kept.get_ydata())  # the tiny run's case: nothing dropped
    assert generated.get_linestyle() == "--" and generated.get_marker() == "o"
    assert generated.get_zorder() > kept.get_zorder() and ax.collections  # drawn over kept's filled area


def test_save_figure_shows_the_saved_png_once_and_bare_figures_inline(tmp_path: Path):
    import base64

    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from jinstruct.run.stage import Stage

    shell = InteractiveShell.instance()
    st = Stage.open("test", None, tmp_path / "run", {"figures.language": "en"})
    assert plotting.language() == "en"
    try:
        with capture_output() as shown:
            result = st.save_figure(every_figure()["04"], "04_loss")
        assert result is None
        pngs = [base64.b64decode(o.data["image/png"]) for o in shown.outputs if "image/png" in o.data]
        saved = (tmp_path / "run" / "figures" / "04_loss.png").read_bytes()
        assert len(pngs) == 1 and pngs[0] == saved
        assert (tmp_path / "run" / "figures" / "04_loss.pdf").exists()
        # a Figure as a cell's value shows as an image too, not as "<Figure size 640x380 with 1 Axes>"
        bundle, _ = shell.display_formatter.format(every_figure()["01"])
        png = bundle["image/png"]
        assert (png if isinstance(png, bytes) else base64.b64decode(png))[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        plotting.set_language("ja")
        InteractiveShell.clear_instance()
