"""Figures of the judging results (notebooks 06 and 09), drawn from `jinstruct.judge.metrics`'s tables.

- `win_tie_loss_figure`: per category, the share of games each model won, tied and lost (stacked horizontal
  bars, one panel per model), from `results.pairwise_by_category` (and `results.pairwise_summary` for the
  overall bar). Shares are of n = wins + ties + losses; error games are left out and named beside the bar.
- `score_figure`: per category, each model's mean 1-10 score with its bootstrap interval, from
  `results.mean_scores(..., by=["model", "category"])` (and `by=["model"]` for the overall bar).

Both return a matplotlib `Figure` (no pyplot state) with Japanese labels rendered in a bundled Japanese font.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from jinstruct.plotting import setup_japanese_font

OVERALL = "全体"
RESULTS = ("wins", "ties", "losses")
RESULT_LABELS = {"wins": "勝ち", "ties": "引き分け", "losses": "負け"}
RESULT_COLORS = {"wins": "#4c72b0", "ties": "#bdbdbd", "losses": "#dd8452"}
MIN_LABELLED_SHARE = 0.12  # segments narrower than this get no percentage written in them


def _levels(index: pd.Index, level: int) -> list[str]:
    return list(dict.fromkeys(index.get_level_values(level)))


def _model_order(names: Sequence[str], overall: pd.DataFrame | None) -> list[str]:
    """The overall table's order (best first) when there is one, else alphabetical."""
    present = set(names)
    if overall is not None:
        return [m for m in overall.index if m in present] + sorted(present - set(overall.index))
    return sorted(present)


def _rows(categories: Sequence[str], overall: bool) -> list[str]:
    return ([OVERALL] if overall else []) + list(categories)


def win_tie_loss_figure(by_category: pd.DataFrame, overall: pd.DataFrame | None = None,
                        models: Sequence[str] | None = None, categories: Sequence[str] | None = None,
                        baseline: str | None = None, title: str | None = None) -> Figure:
    """Stacked win / tie / loss bars per category, one panel per model.

    by_category: `results.pairwise_by_category` (index category, model; columns wins, ties, losses,
    errors, n). overall: `results.pairwise_summary` (index model), drawn as the top bar. models / categories:
    which to draw and in what order (default: as they appear). baseline: named in the panel titles.
    """
    setup_japanese_font()
    if by_category.empty:
        raise ValueError("no games to draw (the by-category table is empty)")
    models = list(models) if models is not None else _model_order(by_category.index.get_level_values(1), overall)
    categories = list(categories) if categories is not None else _levels(by_category.index, 0)
    rows = _rows(categories, overall is not None)
    fig = Figure(figsize=(4.2 * len(models) + 1.5, 0.42 * len(rows) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(models), sharey=True, squeeze=False)[0]
    y = np.arange(len(rows))
    for ax, model in zip(axes, models):
        table = pd.DataFrame([_counts(by_category, overall, model, row) for row in rows], index=rows)
        n = table["n"].to_numpy(dtype=float)
        left = np.zeros(len(rows))
        for result in RESULTS:
            share = np.divide(table[result].to_numpy(dtype=float), n, out=np.zeros(len(rows)), where=n > 0)
            ax.barh(y, share, left=left, color=RESULT_COLORS[result], label=RESULT_LABELS[result],
                    edgecolor="white", height=0.75)
            for yi, (x0, w) in enumerate(zip(left, share)):
                if w >= MIN_LABELLED_SHARE:
                    ax.text(x0 + w / 2, yi, f"{w:.0%}", ha="center", va="center", fontsize=8,
                            color="white" if result != "ties" else "black")
            left += share
        for yi, (count, errors) in enumerate(zip(table["n"], table["errors"])):
            note = f"n={int(count)}" + (f", エラー{int(errors)}" if errors else "")
            ax.text(1.01, yi, note, va="center", fontsize=8, transform=ax.get_yaxis_transform())
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
        ax.set_title(f"{model} 対 {baseline}" if baseline else model, fontsize=10)
        ax.set_xlabel("対戦の割合")
        ax.axvline(0.5, color="black", linewidth=0.6, linestyle=":")
    axes[0].set_yticks(y, rows)
    axes[0].invert_yaxis()
    axes[-1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / len(rows)), ncols=3, frameon=False)
    fig.suptitle(title or "カテゴリ別の勝敗 (両順序で判定)")
    return fig


def _counts(by_category: pd.DataFrame, overall: pd.DataFrame | None, model: str, row: str) -> dict[str, int]:
    if row == OVERALL:
        assert overall is not None
        source = overall.loc[model] if model in overall.index else None
    else:
        key = (row, model)
        source = by_category.loc[key] if key in by_category.index else None
    if source is None:
        return {"wins": 0, "ties": 0, "losses": 0, "errors": 0, "n": 0}
    return {c: int(source[c]) for c in ("wins", "ties", "losses", "errors", "n")}


def score_figure(scores: pd.DataFrame, overall: pd.DataFrame | None = None, models: Sequence[str] | None = None,
                 categories: Sequence[str] | None = None, scale: tuple[float, float] = (1, 10),
                 title: str | None = None) -> Figure:
    """Mean score per category with its confidence interval, one bar per model in each category.

    scores: `results.mean_scores(frame, by=["model", "category"])` (index model, category; columns mean,
    ci_low, ci_high, n, errors). overall: `results.mean_scores(frame)` (index model), drawn as the top group.
    """
    setup_japanese_font()
    if scores.empty:
        raise ValueError("no scores to draw (the table is empty)")
    models = list(models) if models is not None else _model_order(scores.index.get_level_values(0), overall)
    categories = list(categories) if categories is not None else _levels(scores.index, 1)
    rows = _rows(categories, overall is not None)
    fig = Figure(figsize=(7.5, 0.32 * len(rows) * max(2, len(models)) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    height = 0.8 / len(models)
    palette = [f"C{i}" for i in range(len(models))]
    for k, model in enumerate(models):
        stats = pd.DataFrame([_score(scores, overall, model, row) for row in rows], index=rows)
        y = np.arange(len(rows)) - 0.4 + height * (k + 0.5)
        mean = stats["mean"].to_numpy(dtype=float)
        err = np.vstack([mean - stats["ci_low"].to_numpy(dtype=float), stats["ci_high"].to_numpy(dtype=float) - mean])
        ax.barh(y, mean, height=height * 0.9, color=palette[k], label=model,
                xerr=np.nan_to_num(err, nan=0.0), error_kw={"elinewidth": 1, "capsize": 2})
    ax.set_yticks(np.arange(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlim(0, scale[1])
    ax.set_xlabel(f"平均スコア ({scale[0]:g}-{scale[1]:g}、95%信頼区間)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(title or "カテゴリ別の平均スコア")
    return fig


def _score(scores: pd.DataFrame, overall: pd.DataFrame | None, model: str, row: str) -> dict[str, float]:
    empty = {"mean": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    if row == OVERALL:
        assert overall is not None
        source = overall.loc[model] if model in overall.index else None
    else:
        source = scores.loc[(model, row)] if (model, row) in scores.index else None
    if source is None:
        return empty
    return {c: float(source[c]) for c in empty}
