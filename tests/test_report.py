"""Cross-run reporting on hand-built run folders: every number of the summary, the paired bootstrap, the figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jinstruct.formats.layout import RunLayout, SweepLayout
from jinstruct.formats.sweep import Comparison, SweepRecord, SweepRunRecord, write_sweep_record
from jinstruct.io import DataError, write_json, write_jsonl
from jinstruct.judge.metrics import adjusted_win_rate, pairwise_frame, pairwise_summary
from jinstruct.formats.fastchat import load_pairwise_judgments
from jinstruct.report import Report, paired_bootstrap, question_counts, write_report
from jinstruct.report import tables

JUDGE = "judge-x"
# a game's two verdicts from the tuned model's side (model_1 = tuned, model_2 = baseline; g2 mapped back)
VERDICTS = {"win": ("model_1", "model_1"), "loss": ("model_2", "model_2"), "tie": ("tie", "tie"),
            "bias": ("model_1", "model_2"), "error": ("error", "model_1")}


def bench(root: Path) -> Path:
    folder = root / "bench"
    folder.mkdir(exist_ok=True)
    write_jsonl(folder / "question.jsonl", [{"question_id": q, "category": "writing" if q <= 3 else "math",
                                             "turns": [f"質問{q}"]} for q in range(1, 7)])
    return folder


def make_run(path: Path, results: list[str], *, scores: tuple[list[int], list[int]] = ([7] * 6, [5] * 6),
             generated: int = 10, kept: int = 8, n_train: int = 7, loss: float = 1.5, cost: float = 0.25,
             tasks: list[dict] | None = None, agreement: dict | None = None, models=("sft", "base"),
             extra_games: list[dict] | None = None, bench_dir: Path | None = None) -> Path:
    """A finished run: manifest with config and ledgers, data files, a training card, answers, judgments."""
    layout = RunLayout(path)
    tuned, base = models
    config = {"name": path.name, "seed": 0, "judge": {"name": JUDGE, "baseline": base, "bootstrap_rounds": 300},
              "answer": {"benchmark": str(bench_dir), "models": [{"model_id": tuned, "trained": "qlora"},
                                                                  {"model_id": base, "endpoint": "baseline"}]}}
    write_json(layout.manifest, {"name": path.name, "config": config, "stages": {
        "02_generation": {"status": "ok", "seconds": 10.0, "llm": {"calls": 5, "cost_usd": cost}},
        "06_judging": {"status": "ok", "seconds": 5.5, "llm": {"calls": 12, "cost_usd": 0.5}},
        "04_qlora_training": {"status": "ok", "seconds": 20.0}}})
    write_jsonl(layout.generated, [{"id": i, "recipe": "self_instruct"} for i in range(generated)])
    write_jsonl(layout.filtered, [{"id": i} for i in range(kept)])
    write_json(layout.training_card("qlora"), {"n_train": n_train, "final_train_loss": loss, "final_eval_loss": 2.0})
    for model, width in ((tuned, 30), (base, 10)):
        write_jsonl(layout.answer_file(model), [{"question_id": q, "model_id": model, "choices": [
            {"index": 0, "turns": ["あ" * (width + q)]}]} for q in range(1, 7)])
    games = [{"question_id": q, "model_1": tuned, "model_2": base, "g1_winner": VERDICTS[r][0],
              "g2_winner": VERDICTS[r][1], "judge": [JUDGE, "pair-v2"], "turn": 1}
             for q, r in enumerate(results, start=1)]
    write_jsonl(layout.judgment_file(JUDGE, "pair"), games + (extra_games or []))
    write_jsonl(layout.judgment_file(JUDGE, "single"), [
        {"question_id": q, "model": m, "judge": [JUDGE, "single-v1"], "score": s, "turn": 1}
        for m, ss in zip(models, scores) for q, s in enumerate(ss, start=1)])
    if tasks is not None:
        layout.tasks.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(tasks).to_csv(layout.tasks_summary, index=False)
    if agreement is not None:
        write_json(layout.agreement_summary, agreement)
    return path


A_RESULTS = ["win", "win", "win", "tie", "loss", "win"]  # 4 wins, 1 tie, 1 loss: adjusted 0.75
B_RESULTS = ["win", "loss", "loss", "tie", "loss", "bias"]  # 1 win, 2 ties (one by position bias), 3 losses: 1/3

TASKS = [{"task": "jnli", "model": "sft", "metric": "acc", "value": 0.6, "stderr": 0.05, "n": 100, "num_fewshot": 2},
         {"task": "jnli", "model": "base", "metric": "acc", "value": 0.5, "stderr": 0.05, "n": 100, "num_fewshot": 2}]
AGREEMENT = {"judge_human": {"with_ties": 0.66, "without_ties": 0.85, "kappa": 0.45,
                             "ci": {"with_ties": [0.55, 0.76], "without_ties": [0.75, 0.93], "kappa": [0.3, 0.6]}},
             "human_human": {"with_ties": 0.63, "without_ties": 0.81, "kappa": 0.4}, "alpha": 0.42,
             "n_questions": 6, "per_category": {}}


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A 1 x 2 x 2 grid (base x source x size) with its record, as `jinstruct.run.sweep` leaves it."""
    root = tmp_path / "runs" / "grid"
    b = bench(tmp_path)
    cells = [("self_instruct", "1K", A_RESULTS), ("self_instruct", "5K", A_RESULTS[:5] + ["loss"]),
             ("translated", "1K", B_RESULTS), ("translated", "5K", B_RESULTS[:5] + ["win"])]
    records = []
    for i, (source, size, results) in enumerate(cells, start=1):
        name = f"grid-{i:02d}"
        extra = {"tasks": TASKS, "agreement": AGREEMENT} if i == 1 else {}
        make_run(root / name, results, bench_dir=b, generated=1000 if size == "1K" else 5000, **extra)
        records.append(SweepRunRecord(name=name, coordinates={"base": "tiny", "source": source, "size": size},
                                      status="ok", seconds=30.0 + i))
    write_sweep_record(SweepLayout(root).record, SweepRecord(
        name="grid", config="configs/tiny.yaml", axes={"base": ["tiny"], "source": ["self_instruct", "translated"],
                                                        "size": ["1K", "5K"]},
        compare=[Comparison(a={"source": "self_instruct"}, b={"source": "translated"})], runs=records))
    return root


def test_the_summary_has_every_number_of_each_run(sweep):
    summary = Report.open([sweep]).summary().set_index("run")
    first = summary.loc["grid-01"]
    assert (first["base"], first["source"], first["size"], first["model"], first["baseline"]) == (
        "tiny", "self_instruct", "1K", "sft", "base")
    assert (first["wins"], first["ties"], first["losses"], first["errors"], first["n"]) == (4, 1, 1, 0, 6)
    assert first["win_rate_adjusted"] == pytest.approx(0.75)
    # the interval is judge.metrics' own, with the run's bootstrap rounds and seed
    games = pairwise_frame(load_pairwise_judgments(RunLayout(sweep / "grid-01").judgment_file(JUDGE, "pair")))
    own = pairwise_summary(games, "base", rounds=300, seed=0).loc["sft"]
    assert (first["adjusted_ci_low"], first["adjusted_ci_high"]) == (own["adjusted_ci_low"], own["adjusted_ci_high"])
    assert first["adjusted_ci_low"] <= 0.75 <= first["adjusted_ci_high"]
    assert first["score"] == 7 and first["baseline_score"] == 5 and first["score_ci_low"] == 7
    assert (first["generated"], first["kept"], first["trained"], first["train_loss"]) == (1000, 8, 7, 1.5)
    assert first["llm_calls"] == 17 and first["llm_cost_usd"] == pytest.approx(0.75)
    assert first["seconds"] == 31.0 and first["status"] == "ok"
    assert first["task:jnli:acc"] == 0.6 and first["agreement_with_ties"] == 0.66 and first["agreement_kappa"] == 0.45
    third = summary.loc["grid-03"]
    assert (third["wins"], third["ties"], third["losses"]) == (1, 2, 3)
    assert third["win_rate_adjusted"] == pytest.approx(1 / 3)
    assert third["position_consistency"] == pytest.approx(5 / 6)
    assert np.isnan(third["task:jnli:acc"])


def test_comparisons_pair_cells_on_the_same_base_and_size(sweep):
    sig = Report.open([sweep]).significance()
    assert list(sig["size"]) == ["1K", "5K"]
    assert list(sig["cell_a"]) == ["self_instruct / 1K", "self_instruct / 5K"]
    assert list(sig["cell_b"]) == ["translated / 1K", "translated / 5K"]
    first = sig.iloc[0]
    assert first["a"] == pytest.approx(0.75) and first["b"] == pytest.approx(1 / 3)
    assert first["difference"] == pytest.approx(0.75 - 1 / 3) and first["n_questions"] == 6
    assert first["ci_low"] <= first["difference"] <= first["ci_high"] and 0 <= first["p_value"] <= 1


def counts(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["wins", "losses", "ties"], index=pd.Index([str(i) for i in range(len(rows))]))


def test_paired_bootstrap_of_equal_and_of_opposite_cells():
    same = counts([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 0)])
    out = paired_bootstrap(same, same, rounds=200)
    assert (out["difference"], out["ci_low"], out["ci_high"], out["p_value"]) == (0, 0, 0, 1)
    wins, losses = counts([(1, 0, 0)] * 5), counts([(0, 1, 0)] * 5)
    out = paired_bootstrap(wins, losses, rounds=200)
    assert (out["a"], out["b"], out["difference"], out["ci_low"], out["ci_high"], out["p_value"]) == (1, 0, 1, 1, 1, 0)


def test_paired_bootstrap_matches_a_plain_resampling_of_questions():
    rng = np.random.default_rng(5)
    a = counts([tuple(rng.multinomial(1, [0.6, 0.25, 0.15])) for _ in range(40)])
    b = counts([tuple(rng.multinomial(1, [0.4, 0.4, 0.2])) for _ in range(40)])
    out = paired_bootstrap(a, b, rounds=4000, seed=1)

    def rate(c: pd.DataFrame) -> float:  # by hand: (wins + ties / 2) / n
        return (c["wins"].sum() + 0.5 * c["ties"].sum()) / c[["wins", "losses", "ties"]].to_numpy().sum()

    assert out["difference"] == pytest.approx(rate(a) - rate(b))
    draws = np.random.default_rng(2).integers(0, 40, size=(4000, 40))
    diffs = [rate(a.iloc[d]) - rate(b.iloc[d]) for d in draws]
    low, high = np.percentile(diffs, [2.5, 97.5])
    assert out["ci_low"] == pytest.approx(low, abs=0.03) and out["ci_high"] == pytest.approx(high, abs=0.03)


def test_paired_bootstrap_uses_any_statistic_and_only_common_questions():
    a = counts([(1, 0, 0), (1, 0, 0), (0, 0, 1)])
    b = counts([(0, 1, 0), (0, 0, 1)])
    out = paired_bootstrap(a, b, statistic=adjusted_win_rate, rounds=0)
    assert out["n_questions"] == 2 and out["a"] == 1.0 and out["b"] == 0.25 and np.isnan(out["ci_low"])
    with pytest.raises(ValueError, match="share no"):
        paired_bootstrap(a.iloc[:1], b.iloc[1:], rounds=10)


def test_question_counts_leave_out_errors_and_other_opponents(tmp_path):
    path = make_run(tmp_path / "r", ["win", "error", "bias", "loss", "tie", "win"], bench_dir=bench(tmp_path))
    games = pairwise_frame(load_pairwise_judgments(RunLayout(path).judgment_file(JUDGE, "pair")))
    table = question_counts(games, "sft", "base")
    assert list(table.index) == ["1", "3", "4", "5", "6"]
    assert table.sum().to_dict() == {"wins": 2, "losses": 1, "ties": 2}


def test_figure_tables_hold_the_numbers_drawn(sweep):
    report = Report.open([sweep])
    by_cat = tables.category_counts(report).set_index(["cell", "category"])
    assert by_cat.loc[("self_instruct / 1K", "writing"), ["wins", "ties", "losses"]].tolist() == [3, 0, 0]
    assert by_cat.loc[("self_instruct / 1K", "math"), ["wins", "ties", "losses"]].tolist() == [1, 1, 1]
    scores = tables.category_scores(report)
    assert set(scores["cell"]) == {"self_instruct / 1K", "self_instruct / 5K", "translated / 1K",
                                   "translated / 5K", "base (baseline)"}
    assert list(scores.loc[scores["cell"] == "base (baseline)", "category"]) == ["overall", "writing", "math"]
    games = tables.judge_games(report)
    first = games[games["cell"] == "self_instruct / 1K"]
    assert (first["length_difference"] == 20).all() and len(first) == 6
    diag = tables.diagnostics(games).set_index("cell")
    assert diag.loc["translated / 1K", "position_consistency"] == pytest.approx(5 / 6)
    assert diag.loc["self_instruct / 1K", "win_rate_when_longer"] == pytest.approx(4 / 6)
    agree = tables.agreement(report).set_index(["who", "metric"])
    assert agree.loc[("judge_human", "with_ties"), ["value", "ci_low", "ci_high"]].tolist() == [0.66, 0.55, 0.76]
    assert np.isnan(agree.loc[("human_human", "kappa"), "ci_low"]) and agree.loc[("all", "alpha"), "value"] == 0.42
    assert tables.tasks(report)["value"].tolist() == [0.6, 0.5]
    assert tables.ratings(report).empty  # each run judged one pair only


def test_ratings_when_all_pairs_were_judged(tmp_path):
    extra = [{"question_id": q, "model_1": m1, "model_2": m2, "g1_winner": "model_1", "g2_winner": "model_1",
              "judge": [JUDGE, "pair-v2"], "turn": 1} for q in range(1, 7) for m1, m2 in (("sft", "other"),
                                                                                       ("other", "base"))]
    path = make_run(tmp_path / "all-pairs", ["win"] * 5 + ["loss"], bench_dir=bench(tmp_path), extra_games=extra)
    report = Report.open([path])
    assert report.runs[0].all_pairs()
    rated = tables.ratings(report).set_index("model")
    assert rated.loc["base", "rating"] == pytest.approx(1000)
    assert rated.loc["sft", "rating"] > rated.loc["other", "rating"] > 1000
    assert list(report.summary()["model"]) == ["other", "sft"]


def test_figures_command_writes_every_figure_that_applies(sweep, tmp_path, capsys):
    from jinstruct.__main__ import main

    assert main(["figures", str(sweep)]) == 0
    printed = capsys.readouterr().out
    figures = SweepLayout(sweep).figures
    expected = ["win_rates", "size_curve", "significance", "win_tie_loss_by_category", "scores_by_category",
                "judge_diagnostics", "agreement", "tasks"]
    for name in expected:
        for suffix in (".pdf", ".png", ".csv"):
            assert (figures / f"{name}{suffix}").stat().st_size > 0, name + suffix
        assert f"{figures / name}.pdf|png|csv" in printed
    assert not (figures / "ratings.png").exists()
    assert pd.read_csv(figures / "win_rates.csv")["win_rate_adjusted"].round(4).tolist() == [0.75, 0.5833, 0.3333,
                                                                                             0.4167]
    assert "| grid-01 " in (figures / "summary.md").read_text(encoding="utf-8")
    out = tmp_path / "elsewhere"
    folder, drawn = write_report([sweep / "grid-01", sweep / "grid-03"], out)
    assert folder == out and "size_curve" not in [d.name for d in drawn]  # two runs on their own: no grid
    assert (out / "win_rates.png").exists()


def test_a_folder_that_is_neither_a_run_nor_a_sweep_is_named(tmp_path):
    with pytest.raises(DataError, match="neither a sweep folder"):
        Report.open([tmp_path])
    assert main_rc(["figures", str(tmp_path)]) == 1


def test_a_malformed_task_table_is_named(tmp_path):
    path = make_run(tmp_path / "r", A_RESULTS, bench_dir=bench(tmp_path), tasks=[{"task": "x", "value": 1}])
    with pytest.raises(DataError, match=r"tasks/summary.csv.*missing column"):
        Report.open([path])


def main_rc(argv: list[str]) -> int:
    from jinstruct.__main__ import main

    return main(argv)


def test_notebook_09_draws_a_sweep_given_as_sources(sweep, tmp_path):
    import papermill as pm

    from jinstruct.paths import configs_dir, notebooks_dir

    out = tmp_path / "nb-figures"
    pm.execute_notebook(str(notebooks_dir() / "09_figures.ipynb"), str(tmp_path / "09.ipynb"), kernel_name="python3",
                        language="python",
                        parameters={"config_path": str(configs_dir() / "tiny.yaml"), "run_dir": str(tmp_path / "run"),
                                    "sources": [str(sweep)], "out": str(out)}, progress_bar=False)
    assert (out / "size_curve.png").exists() and (out / "tasks.pdf").exists() and (out / "summary.md").exists()
    assert not (tmp_path / "run" / "figures").exists()  # a sweep's figures do not land in the notebook's own run
