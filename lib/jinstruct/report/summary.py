"""The results of many runs in one table, and the comparisons the paper makes between them.

`Report.open(paths)` reads every run of the given sweeps and run folders. A **cell** is one compared model of one
run (a run trains one model per grid point, so a cell is usually a grid point). `summary()` has one row per cell:

    run, <grid axes>, cell (the axes' values as a label), model, baseline, judge, status,
    n, wins, ties, losses, errors, win_rate_adjusted, adjusted_ci_low, adjusted_ci_high,   (against the baseline)
    position_consistency, first_position_win_share,                                        (the judge's behaviour)
    score, score_ci_low, score_ci_high, baseline_score,                                    (1-10 single grading)
    generated, kept, trained, train_loss, eval_loss,                                       (data and training)
    llm_calls, llm_cost_usd, seconds,                                                      (what it took)
    agreement_with_ties, agreement_without_ties, agreement_kappa,                          (when 07 ran)
    task:<task>:<metric>, ...                                                              (when 08 ran)

`significance()` has one row per pair of cells a comparison names (`compare` in the sweep file; by default
self-instruct against translated data on the same base and size): both adjusted win rates, their difference and
its paired bootstrap interval over questions (`jinstruct.report.significance`).

Intervals are percentile bootstraps over questions with the run's `judge.bootstrap_rounds` and seed, as in
notebook 06's tables, so a cell's numbers here equal that run's own `judgments/pairwise.csv`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from jinstruct.formats.layout import SweepLayout
from jinstruct.formats.sweep import Comparison
from jinstruct.io import atomic_write_text, read_json
from jinstruct.judge.metrics import mean_scores, pairwise_summary
from jinstruct.report.collect import RunData, count_records, load_run
from jinstruct.report.significance import paired_bootstrap, question_counts
from jinstruct.report.sources import RunRef, Sources, open_sources


@dataclass(frozen=True)
class Cell:
    run: RunData
    model: str
    label: str

    @property
    def coordinates(self) -> dict[str, str]:
        return self.run.ref.coordinates


def _empty_run(ref: RunRef) -> RunData:
    """A run of a sweep that never started (its data source failed): a row with its status, nothing else."""
    return RunData(ref=ref, manifest={}, config={})


@dataclass
class Report:
    sources: Sources
    runs: list[RunData]
    rounds: int | None = None  # None: each run's judge.bootstrap_rounds

    @classmethod
    def open(cls, paths: Sequence[str | os.PathLike[str]], rounds: int | None = None) -> Report:
        sources = open_sources(paths)
        runs = [load_run(r) if r.layout.manifest.exists() or r.status is None else _empty_run(r)
                for r in sources.runs]
        return cls(sources=sources, runs=runs, rounds=rounds)

    @property
    def axes(self) -> dict[str, list[str]]:
        return self.sources.axes

    def rounds_for(self, run: RunData) -> int:
        return run.bootstrap_rounds if self.rounds is None else self.rounds

    @cached_property
    def cells(self) -> list[Cell]:
        several = any(len(r.compared_models()) > 1 for r in self.runs)
        out = []
        for run in self.runs:
            label = self.sources.label(run.ref)
            for model in run.compared_models() or [""]:
                out.append(Cell(run, model, f"{label} : {model}" if several and model else label))
        return out

    # ---- the summary ----------------------------------------------------------------------------------------

    def summary(self) -> pd.DataFrame:
        rows = [self._row(cell) for cell in self.cells]
        frame = pd.DataFrame(rows)
        tasks = sorted(c for c in frame.columns if c.startswith("task:"))
        return frame[[c for c in frame.columns if not c.startswith("task:")] + tasks]

    def _row(self, cell: Cell) -> dict[str, Any]:
        run, model = cell.run, cell.model
        row: dict[str, Any] = {"run": run.ref.name, **{a: run.ref.coordinates.get(a, "") for a in self.axes},
                               "cell": cell.label, "model": model, "baseline": run.baseline, "judge": run.judge,
                               "status": run.ref.status or _status(run)}
        row |= _pairwise_columns(run, model, self.rounds_for(run))
        row |= _score_columns(run, model, self.rounds_for(run))
        row |= _data_columns(run, model)
        row |= _cost_columns(run)
        row |= _agreement_columns(run)
        row |= _task_columns(run, model)
        return row

    # ---- comparisons ----------------------------------------------------------------------------------------

    def comparisons(self) -> list[Comparison]:
        return self.sources.comparisons

    def pairs(self, comparison: Comparison) -> list[tuple[Cell, Cell]]:
        """Every (a, b) pair of cells the comparison names that agree on every axis it leaves free (and on the
        model when runs compare several)."""
        named = set(comparison.a) | set(comparison.b)
        free = [a for a in self.axes if a not in named]
        several = any(len(r.compared_models()) > 1 for r in self.runs)

        def matches(cell: Cell, side: dict[str, Any]) -> bool:
            return all(cell.coordinates.get(k) == str(v) for k, v in side.items())

        def key(cell: Cell) -> tuple[str, ...]:
            return tuple(cell.coordinates.get(a, "") for a in free) + ((cell.model,) if several else ())

        bs = {key(c): c for c in self.cells if matches(c, comparison.b)}
        return [(a, bs[key(a)]) for a in self.cells if matches(a, comparison.a) and key(a) in bs]

    def significance(self) -> pd.DataFrame:
        """One row per compared pair: comparison, the free coordinates, both cells, a, b, difference, ci_low,
        ci_high, p_value, n_questions (adjusted win rates against the baseline, paired over questions)."""
        rows = []
        for comparison in self.comparisons():
            named = set(comparison.a) | set(comparison.b)
            for a, b in self.pairs(comparison):
                row: dict[str, Any] = {"comparison": comparison.label(),
                                       **{ax: a.coordinates.get(ax, "") for ax in self.axes if ax not in named},
                                       "cell_a": a.label, "cell_b": b.label}
                stats = _paired(a, b, self.rounds_for(a.run))
                rows.append(row | stats)
        columns = ["comparison", "cell_a", "cell_b", "a", "b", "difference", "ci_low", "ci_high", "p_value",
                   "n_questions"]
        frame = pd.DataFrame(rows)
        return frame if not frame.empty else pd.DataFrame(columns=columns)


def _status(run: RunData) -> str:
    stages = run.manifest.get("stages", {})
    if not stages:
        return "not run"
    return "failed" if any(s.get("status") != "ok" for s in stages.values()) else "ok"


def _nan_row(keys: Sequence[str]) -> dict[str, Any]:
    return {k: np.nan for k in keys}


PAIRWISE = ["n", "wins", "ties", "losses", "errors", "win_rate_adjusted", "adjusted_ci_low", "adjusted_ci_high",
            "position_consistency", "first_position_win_share"]


def _pairwise_columns(run: RunData, model: str, rounds: int) -> dict[str, Any]:
    games = run.games
    if games is None or games.empty or not model:
        return _nan_row(PAIRWISE)
    baseline = run.baseline if run.baseline in set(games["model_1"]) | set(games["model_2"]) else None
    table = pairwise_summary(games, baseline, rounds, run.seed)
    if model not in table.index:
        return _nan_row(PAIRWISE)
    r = table.loc[model]
    return {k: (int(r[k]) if k in ("n", "wins", "ties", "losses", "errors") else float(r[k])) for k in PAIRWISE}


def _score_columns(run: RunData, model: str, rounds: int) -> dict[str, Any]:
    keys = ["score", "score_ci_low", "score_ci_high", "baseline_score"]
    scores = run.scores
    if scores is None or scores.empty:
        return _nan_row(keys)
    table = mean_scores(scores, ("model",), rounds, run.seed)
    out = _nan_row(keys)
    if model in table.index:
        out |= {"score": table.loc[model, "mean"], "score_ci_low": table.loc[model, "ci_low"],
                "score_ci_high": table.loc[model, "ci_high"]}
    if run.baseline in table.index:
        out["baseline_score"] = table.loc[run.baseline, "mean"]
    return out


def _data_columns(run: RunData, model: str) -> dict[str, Any]:
    layout = run.layout
    out: dict[str, Any] = {"generated": count_records(layout.generated), "kept": count_records(layout.filtered),
                           "trained": None, "train_loss": np.nan, "eval_loss": np.nan}
    trained = run.trained_name(model) if model else None
    if trained and layout.training_card(trained).exists():
        card = read_json(layout.training_card(trained))
        out["trained"] = card.get("n_train")
        out["train_loss"] = card.get("final_train_loss", np.nan)
        out["eval_loss"] = card.get("final_eval_loss", np.nan)
    return out


def _cost_columns(run: RunData) -> dict[str, Any]:
    stages = run.manifest.get("stages", {}).values()
    llm = [s["llm"] for s in stages if s.get("llm")]
    stage_seconds = sum(float(s.get("seconds", 0.0)) for s in stages)
    seconds = run.ref.seconds if run.ref.seconds else stage_seconds
    return {"llm_calls": sum(int(x.get("calls", 0)) for x in llm),
            "llm_cost_usd": round(sum(float(x.get("cost_usd", 0.0)) for x in llm), 6),
            "seconds": round(seconds, 1) if stages or run.ref.seconds else np.nan}


def _agreement_columns(run: RunData) -> dict[str, Any]:
    if run.agreement is None:
        return {}
    jh = run.agreement["judge_human"]
    return {"agreement_with_ties": jh.get("with_ties"), "agreement_without_ties": jh.get("without_ties"),
            "agreement_kappa": jh.get("kappa")}


def _task_columns(run: RunData, model: str) -> dict[str, Any]:
    if run.tasks is None or not model:
        return {}
    mine = run.tasks[run.tasks["model"].astype(str) == model]
    return {f"task:{r.task}:{r.metric}": float(r.value) for r in mine.itertuples()}


def _paired(a: Cell, b: Cell, rounds: int) -> dict[str, float]:
    nan = {"a": np.nan, "b": np.nan, "difference": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan,
           "n_questions": 0}
    if a.run.games is None or b.run.games is None or a.run.games.empty or b.run.games.empty:
        return nan
    qa = question_counts(a.run.games, a.model, a.run.baseline)
    qb = question_counts(b.run.games, b.model, b.run.baseline)
    if qa.index.intersection(qb.index).empty:
        return nan
    out = paired_bootstrap(qa, qb, rounds=rounds, seed=a.run.seed)
    out["n_questions"] = int(out["n_questions"])
    return out


# ---- writing --------------------------------------------------------------------------------------------------


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _count(x: Any) -> str:
    """A count (a float once a column holds a missing value) as a whole number."""
    return str(int(round(float(x)))) if _fmt(x) else ""


def _interval(value: Any, low: Any, high: Any) -> str:
    if not _fmt(value):
        return ""
    return f"{_fmt(value)} [{_fmt(low)}, {_fmt(high)}]" if _fmt(low) else _fmt(value)


def summary_markdown(summary: pd.DataFrame, significance: pd.DataFrame, axes: Sequence[str]) -> str:
    """The summary as readable Markdown: one line per cell, then the comparisons."""
    axes = [a for a in axes if a != "run"]
    tasks = [c for c in summary.columns if c.startswith("task:")]
    agreement = "agreement_with_ties" in summary.columns
    rows = []
    for r in summary.to_dict("records"):
        wtl = "/".join(_count(r[k]) for k in ("wins", "ties", "losses")) if _fmt(r["wins"]) else ""
        data = "/".join(_count(r[k]) or "-" for k in ("generated", "kept", "trained"))
        rows.append([r["run"], *(r[a] for a in axes), r["model"], r["status"], wtl,
                     _interval(r["win_rate_adjusted"], r["adjusted_ci_low"], r["adjusted_ci_high"]),
                     _interval(r["score"], r["score_ci_low"], r["score_ci_high"]), data, _fmt(r["train_loss"]),
                     _fmt(r["llm_cost_usd"], 4), _count(r["seconds"]),
                     *([_fmt(r["agreement_with_ties"])] if agreement else []), *(_fmt(r[t]) for t in tasks)])
    headers = ["run", *axes, "model", "status", "W/T/L", "adjusted win rate [95% CI]", "score [95% CI]",
               "generated/kept/trained", "train loss", "LLM $", "seconds", *(["agreement"] if agreement else []),
               *(t.removeprefix("task:") for t in tasks)]
    text = "## Runs\n\n" + tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True) + "\n"
    if not significance.empty:
        sig = [[r["comparison"], r["cell_a"], r["cell_b"], _fmt(r["a"]), _fmt(r["b"]),
                _interval(r["difference"], r["ci_low"], r["ci_high"]), _fmt(r["p_value"]), _count(r["n_questions"])]
               for r in significance.to_dict("records")]
        text += ("\n## Comparisons (difference of adjusted win rates, paired bootstrap over questions)\n\n"
                 + tabulate(sig, headers=["comparison", "a", "b", "a rate", "b rate", "difference [95% CI]",
                                          "p", "questions"], tablefmt="pipe", disable_numparse=True) + "\n")
    return text


def write_summary(sweep_dir: str | os.PathLike[str], rounds: int | None = None) -> tuple[pd.DataFrame, str]:
    """A sweep's `summary.csv`, `summary.md` and `significance.csv`; returns the summary and its Markdown."""
    layout = SweepLayout(Path(sweep_dir))
    report = Report.open([layout.root], rounds=rounds)
    summary, significance = report.summary(), report.significance()
    text = summary_markdown(summary, significance, list(report.axes))
    atomic_write_text(layout.summary_csv, summary.to_csv(index=False))
    atomic_write_text(layout.significance_csv, significance.to_csv(index=False))
    atomic_write_text(layout.summary_md, f"# Sweep {layout.root.name}\n\n{text}")
    return summary, text
