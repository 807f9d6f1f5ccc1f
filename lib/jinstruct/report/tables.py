"""The tables the cross-run figures are drawn from, one function each (each saved beside its figure as CSV).

Each takes a `Report` (`jinstruct.report.summary`) and returns a long table with a `cell` column naming the grid
cell, or an empty table when nothing in the runs applies (e.g. no run ran notebook 08).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from jinstruct.judge.metrics import bt_ratings, mean_scores, model_view, win_loss_counts
from jinstruct.report.summary import Report

WIN_RATE_COLUMNS = ["n", "wins", "ties", "losses", "errors", "win_rate_adjusted", "adjusted_ci_low",
                    "adjusted_ci_high"]


def win_rates(report: Report, summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per cell: its coordinates and its adjusted win rate against the baseline with the interval."""
    summary = report.summary() if summary is None else summary
    keep = list(dict.fromkeys(["run", *report.axes, "cell", "model", "baseline", *WIN_RATE_COLUMNS]))
    return summary.loc[summary["win_rate_adjusted"].notna(), keep].reset_index(drop=True)


def category_counts(report: Report) -> pd.DataFrame:
    """Per cell and category: wins, losses, ties, errors and n against the baseline."""
    parts = []
    for cell in report.cells:
        games = cell.run.games
        if games is None or games.empty or not cell.model or games["category"].isna().any():
            continue
        baseline = cell.run.baseline if cell.run.baseline in set(games["model_1"]) | set(games["model_2"]) else None
        view = model_view(games, baseline)
        view = view[view["model"] == cell.model]
        for category, part in view.groupby("category", sort=False):
            counts = win_loss_counts(part).reset_index(drop=True)
            parts.append(counts.assign(cell=cell.label, category=category))
    if not parts:
        return pd.DataFrame(columns=["cell", "category", "wins", "losses", "ties", "errors", "n"])
    return pd.concat(parts, ignore_index=True)[["cell", "category", "wins", "losses", "ties", "errors", "n"]]


def category_scores(report: Report) -> pd.DataFrame:
    """Per cell and category (and `全体`/overall): mean 1-10 score, its interval and n; the baseline as one more
    cell (from the first run that graded it)."""
    parts, baselines = [], []
    baseline_done: set[str] = set()
    for cell in report.cells:
        scores = cell.run.scores
        if scores is None or scores.empty or scores["category"].isna().any():
            continue
        rounds, seed = report.rounds_for(cell.run), cell.run.seed
        wanted = [(cell.model, cell.label, parts)]
        base = cell.run.baseline
        if base and base not in baseline_done and (scores["model"] == base).any():
            wanted.append((base, f"{base} (baseline)", baselines))  # drawn after the cells
            baseline_done.add(base)
        for model, label, into in wanted:
            mine = scores[scores["model"] == model]
            if mine.empty:
                continue
            by_cat = mean_scores(mine, ("model", "category"), rounds, seed).reset_index()
            order = {c: i for i, c in enumerate(dict.fromkeys(mine["category"]))}  # the benchmark's order
            by_cat = by_cat.sort_values("category", key=lambda c: c.map(order), kind="stable")
            overall = mean_scores(mine, ("model",), rounds, seed).reset_index().assign(category="overall")
            into.append(pd.concat([overall, by_cat], ignore_index=True).assign(cell=label))
    parts += baselines
    if not parts:
        return pd.DataFrame(columns=["cell", "category", "mean", "ci_low", "ci_high", "n", "errors"])
    return pd.concat(parts, ignore_index=True)[["cell", "category", "mean", "ci_low", "ci_high", "n", "errors"]]


def judge_games(report: Report) -> pd.DataFrame:
    """Per game of a cell against its baseline: result, whether both orders agreed, the single-order verdicts
    that went to the first-shown answer / named a winner, and both answers' lengths (characters) and their
    difference, for the judge diagnostics."""
    parts = []
    for cell in report.cells:
        games = cell.run.games
        if games is None or games.empty or not cell.model:
            continue
        baseline = cell.run.baseline if cell.run.baseline in set(games["model_1"]) | set(games["model_2"]) else None
        view = model_view(games, baseline)
        view = view[(view["model"] == cell.model) & ~view["game_error"]].copy()
        view["question_id"] = view["question_id"].astype(str)
        chars = cell.run.answer_chars
        if chars is not None and not chars.empty:
            lengths = chars.set_index(["model", "question_id", "turn"])["chars"]
            view["model_chars"] = [lengths.get((m, q, t), np.nan) for m, q, t in
                                   zip(view["model"], view["question_id"], view["turn"])]
            view["opponent_chars"] = [lengths.get((m, q, t), np.nan) for m, q, t in
                                      zip(view["opponent"], view["question_id"], view["turn"])]
        else:
            view["model_chars"] = view["opponent_chars"] = np.nan
        view["length_difference"] = view["model_chars"] - view["opponent_chars"]
        parts.append(view.assign(cell=cell.label))
    columns = ["cell", "model", "opponent", "question_id", "turn", "category", "result", "consistent",
               "first_wins", "decisive", "model_chars", "opponent_chars", "length_difference"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def diagnostics(games: pd.DataFrame) -> pd.DataFrame:
    """Per cell, from `judge_games`: games, position_consistency, first_position_win_share, and the win rate when
    the model's answer is the longer one and when it is the shorter."""
    rows = []
    for cell, g in games.groupby("cell", sort=False):
        decisive = g["decisive"].sum()
        longer, shorter = g[g["length_difference"] > 0], g[g["length_difference"] < 0]
        rows.append({"cell": cell, "games": len(g), "position_consistency": g["consistent"].mean(),
                     "first_position_win_share": g["first_wins"].sum() / decisive if decisive else np.nan,
                     "win_rate_when_longer": (longer["result"] == "win").mean() if len(longer) else np.nan,
                     "win_rate_when_shorter": (shorter["result"] == "win").mean() if len(shorter) else np.nan})
    return pd.DataFrame(rows, columns=["cell", "games", "position_consistency", "first_position_win_share",
                                       "win_rate_when_longer", "win_rate_when_shorter"])


def ratings(report: Report) -> pd.DataFrame:
    """Bradley-Terry ratings (Elo scale, the baseline at 1000 when there is one) with intervals, per run that
    judged all pairs of three or more models."""
    parts = []
    for run in report.runs:
        if not run.all_pairs():
            continue
        assert run.games is not None
        models = set(run.games["model_1"]) | set(run.games["model_2"])
        anchor = run.baseline if run.baseline in models else None
        table = bt_ratings(run.games, anchor=anchor, rounds=report.rounds_for(run), seed=run.seed).reset_index()
        parts.append(table.assign(cell=report.sources.label(run.ref)))
    columns = ["cell", "model", "rating", "ci_low", "ci_high", "games", "wins", "losses", "ties"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def _value_and_interval(entry: Any, ci: Any, metric: str) -> tuple[float, float, float]:
    """A number, or {value, ci}; its interval from `ci[metric]` (a [low, high] pair) when given."""
    value, low, high = entry, np.nan, np.nan
    if isinstance(entry, dict):
        value = entry.get("value", entry.get("estimate", np.nan))
        ci = entry.get("ci", ci if not isinstance(ci, dict) else ci.get(metric))
    elif isinstance(ci, dict):
        ci = ci.get(metric)
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        low, high = ci
    return (float(value) if value is not None else np.nan, float(low) if low is not None else np.nan,
            float(high) if high is not None else np.nan)


def agreement(report: Report) -> pd.DataFrame:
    """Per run that ran notebook 07: who (judge-human, human-human, all), metric (with_ties, without_ties, kappa,
    alpha), value and interval, n_questions."""
    rows = []
    for run in report.runs:
        data = run.agreement
        if data is None:
            continue
        label = report.sources.label(run.ref)
        for who in ("judge_human", "human_human"):
            block = data.get(who)
            if not isinstance(block, dict):
                continue
            for metric in ("with_ties", "without_ties", "kappa"):
                if block.get(metric) is None:
                    continue
                value, low, high = _value_and_interval(block[metric], block.get("ci"), metric)
                rows.append({"cell": label, "who": who, "metric": metric, "value": value, "ci_low": low,
                             "ci_high": high, "n_questions": data.get("n_questions")})
        if data.get("alpha") is not None:
            value, low, high = _value_and_interval(data["alpha"], None, "alpha")
            rows.append({"cell": label, "who": "all", "metric": "alpha", "value": value, "ci_low": low,
                         "ci_high": high, "n_questions": data.get("n_questions")})
    return pd.DataFrame(rows, columns=["cell", "who", "metric", "value", "ci_low", "ci_high", "n_questions"])


def tasks(report: Report) -> pd.DataFrame:
    """Notebook 08's results of every run that ran it, with the run's cell."""
    parts = [run.tasks.assign(cell=report.sources.label(run.ref)) for run in report.runs if run.tasks is not None]
    columns = ["cell", "task", "model", "metric", "value", "stderr", "n", "num_fewshot"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
