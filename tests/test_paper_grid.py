"""The tiny paper grid end to end, as the README runs it: `sweep configs/sweeps/tiny_paper_grid.yaml --jobs 2`, then
`figures runs/tiny-paper-grid`: four runs (self-instruct / translated x two sizes), the smaller sizes taking the
larger runs' data, the summary with results, and every figure that applies."""

from __future__ import annotations

import pandas as pd
import pytest

from jinstruct.formats.layout import SweepLayout
from jinstruct.io import read_json, read_jsonl
from jinstruct.paths import configs_dir
from jinstruct.report import write_report
from jinstruct.run.sweep import execute, load_sweep

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    spec = load_sweep(configs_dir() / "sweeps" / "tiny_paper_grid.yaml")
    spec.set["llm.cache"] = str(runs / "llm_cache.sqlite")  # a cache of its own: the test starts from nothing
    done = execute(spec, jobs=2, runs_dir=runs, log=lambda m: None)
    return SweepLayout(runs / spec.name), done


def test_every_run_ends_well_and_smaller_sizes_reuse_the_larger_data(grid):
    sweep, done = grid
    assert [r.status for r in done] == ["ok"] * 4, [r.message for r in done]
    by_cell = {(r.coordinates["source"], r.coordinates["size"]): r for r in done}
    for source in ("self_instruct", "translated"):
        small, big = by_cell[(source, "10")], by_cell[(source, "20")]
        assert small.from_run == big.name and big.from_run is None
        small_data = read_jsonl(sweep.run(small.name).generated)
        assert small_data == read_jsonl(sweep.run(big.name).generated)[:10]
        assert {r["recipe"] for r in small_data} == {"self_instruct" if source == "self_instruct" else "translate"}
        generation = read_json(sweep.run(small.name).manifest)["stages"]["02_generation"]
        assert "llm" not in generation  # no client was opened: nothing was generated again


def test_the_summary_has_a_row_per_run_with_its_results(grid):
    sweep, done = grid
    summary = pd.read_csv(sweep.summary_csv).set_index("run")
    assert list(summary.index) == [r.name for r in done]
    assert set(summary["size"].astype(str)) == {"10", "20"} and set(summary["source"]) == {"self_instruct", "translated"}
    assert (summary["n"] == 8).all() and (summary[["wins", "ties", "losses"]].sum(axis=1) == 8).all()
    assert summary["win_rate_adjusted"].between(0, 1).all()
    assert (summary["adjusted_ci_low"] <= summary["win_rate_adjusted"]).all()
    assert summary["score"].between(1, 10).all() and (summary["trained"] <= summary["kept"]).all()
    assert (summary["kept"] <= summary["generated"]).all() and (summary["train_loss"] > 0).all()
    assert (summary.loc[summary["size"].astype(str) == "10", "generated"] == 10).all()
    significance = pd.read_csv(sweep.significance_csv)
    assert len(significance) == 2 and set(significance["size"].astype(str)) == {"10", "20"}
    assert "## Comparisons" in sweep.summary_md.read_text(encoding="utf-8")


def test_figures_of_the_grid(grid):
    sweep, _ = grid
    folder, drawn = write_report([sweep.root])
    assert folder == sweep.figures
    names = [d.name for d in drawn]
    assert names == ["win_rates", "size_curve", "significance", "win_tie_loss_by_category", "scores_by_category",
                     "judge_diagnostics"]
    for name in names:
        for suffix in (".pdf", ".png", ".csv"):
            assert (folder / f"{name}{suffix}").stat().st_size > 0
