"""Figures of the judging results (notebooks 06 and 09), drawn from `jinstruct.judge.metrics`'s tables.

- `win_tie_loss_figure`: per category, the share of games each model won, tied and lost (stacked horizontal
  bars, one panel per model), from `results.pairwise_by_category` (and `results.pairwise_summary` for the
  overall bar). Shares are of n = wins + ties + losses; error games are left out and named beside the bar.
- `score_figure`: per category, each model's mean 1-10 score with its bootstrap interval, from
  `results.mean_scores(..., by=["model", "category"])` (and `by=["model"]` for the overall bar).

Both return a matplotlib `Figure` (no pyplot state); labels, titles and category names follow the figure language
(`jinstruct.plotting.label`: `figures.language` in the run config).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from jinstruct.plotting import label, names, setup_japanese_font

OVERALL = "overall"  # the row of all categories together
RESULTS = ("wins", "ties", "losses")
RESULT_NAMES = {"wins": ("勝ち", "win"), "ties": ("引き分け", "tie"), "losses": ("負け", "loss")}
# the benchmark's categories (ja_qa80 and the Vicuna / MT-Bench ones), as figures name them
CATEGORY_NAMES = {
    OVERALL: ("全体", "overall"),
    "writing": ("作文", "writing"),
    "roleplay": ("ロールプレイ", "roleplay"),
    "knowledge": ("知識", "knowledge"),
    "common-sense": ("常識", "common sense"),
    "fermi": ("フェルミ推定", "Fermi estimates"),
    "counterfactual": ("反実仮想", "counterfactual"),
    "coding-math": ("コーディング・数学", "coding and math"),
    "coding": ("コーディング", "coding"),
    "math": ("数学", "math"),
    "generic": ("一般", "generic"),
    "reasoning": ("推論", "reasoning"),
    "extraction": ("抽出", "extraction"),
    "stem": ("理系知識", "STEM"),
    "humanities": ("人文知識", "humanities"),
}
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
            ax.barh(y, share, left=left, color=RESULT_COLORS[result], label=label(*RESULT_NAMES[result]),
                    edgecolor="white", height=0.75)
            for yi, (x0, w) in enumerate(zip(left, share)):
                if w >= MIN_LABELLED_SHARE:
                    ax.text(x0 + w / 2, yi, f"{w:.0%}", ha="center", va="center", fontsize=8,
                            color="white" if result != "ties" else "black")
            left += share
        for yi, (count, errors) in enumerate(zip(table["n"], table["errors"])):
            note = f"n={int(count)}" + (label(f", エラー{int(errors)}", f", {int(errors)} errors") if errors else "")
            ax.text(1.01, yi, note, va="center", fontsize=8, transform=ax.get_yaxis_transform())
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
        ax.set_title(label(f"{model} 対 {baseline}", f"{model} vs {baseline}") if baseline else model, fontsize=10)
        ax.set_xlabel(label("対戦の割合", "share of games"))
        ax.axvline(0.5, color="black", linewidth=0.6, linestyle=":")
    axes[0].set_yticks(y, names(rows, CATEGORY_NAMES))
    axes[0].invert_yaxis()
    axes[-1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / len(rows)), ncols=3, frameon=False)
    fig.suptitle(title or label("カテゴリ別の勝敗 (両順序で判定)", "Wins, ties and losses by category (both orders judged)"))
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
    low, high = scale
    for k, model in enumerate(models):
        stats = pd.DataFrame([_score(scores, overall, model, row) for row in rows], index=rows)
        y = np.arange(len(rows)) - 0.4 + height * (k + 0.5)
        mean = stats["mean"].to_numpy(dtype=float)
        err = np.vstack([mean - stats["ci_low"].to_numpy(dtype=float), stats["ci_high"].to_numpy(dtype=float) - mean])
        # bars start at the bottom of the scale (1), not at 0: a score of 1 is the lowest there is
        ax.barh(y, mean - low, left=low, height=height * 0.9, color=palette[k], label=model,
                xerr=np.nan_to_num(err, nan=0.0), error_kw={"elinewidth": 1, "capsize": 2})
    ax.set_yticks(np.arange(len(rows)), names(rows, CATEGORY_NAMES))
    ax.invert_yaxis()
    ax.set_xlim(low, high)
    ax.set_xticks(np.arange(np.ceil(low), np.floor(high) + 1))
    ax.set_xlabel(label(f"平均スコア ({low:g}-{high:g}、95%信頼区間)", f"mean score ({low:g}-{high:g}, 95% interval)"))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(title or label("カテゴリ別の平均スコア", "Mean score by category"))
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
