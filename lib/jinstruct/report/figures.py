"""The paper's figures, drawn from the tables of `jinstruct.report.tables` (one function per figure).

Each returns a `matplotlib.figure.Figure` (no pyplot state). Grid axes named `base`, `source` and `size` give the
paper's layout: bars grouped by base model with one bar per data source, one panel per data size; the data-size
curve has one line per source and one panel per base. Any other axes (or run names, for runs given on their own)
join the base in the group labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from jinstruct.plotting import PALETTE, new_figure
from jinstruct.report.sources import BASE, SIZE, SOURCE

RESULT_COLORS = {"wins": "#4c72b0", "ties": "#bdbdbd", "losses": "#dd8452"}


def _roles(axes: Sequence[str]) -> tuple[list[str], str | None, str | None]:
    """(axes that label a group, the source axis, the size axis)."""
    source = SOURCE if SOURCE in axes else None
    size = SIZE if SIZE in axes else None
    group = [a for a in axes if a not in (source, size)]
    group.sort(key=lambda a: a != BASE)  # the base model first
    return group, source, size


def _group_label(row: pd.Series, group: Sequence[str], several_models: bool) -> str:
    label = " / ".join(str(row[a]) for a in group if str(row[a]))
    return f"{label} : {row['model']}" if several_models and row["model"] else (label or str(row["cell"]))


def _errors(table: pd.DataFrame, value: str, low: str, high: str) -> np.ndarray:
    v = table[value].to_numpy(dtype=float)
    err = np.vstack([v - table[low].to_numpy(dtype=float), table[high].to_numpy(dtype=float) - v])
    return np.nan_to_num(np.clip(err, 0, None), nan=0.0)


def _panels(n: int, ncols: int, width: float, height: float) -> tuple[Figure, list[Axes]]:
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = new_figure(width * ncols, height * nrows, nrows, ncols)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _ordered(values: Sequence[str], order: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(values))
    return [v for v in order if v in present] + [v for v in present if v not in order]


def win_rate_figure(table: pd.DataFrame, axes: dict[str, list[str]]) -> Figure:
    """Adjusted win rate against the baseline with its 95% interval: grouped bars (group: base model and other
    axes, bar: data source), one panel per data size."""
    if table.empty:
        raise ValueError("no win rates to draw (no run has pairwise judgments)")
    group, source, size = _roles(list(axes))
    several = table.groupby("run")["model"].nunique().max() > 1
    t = table.assign(_group=[_group_label(r, group, several) for _, r in table.iterrows()])
    facets = _ordered(t[size].astype(str), axes[size]) if size else [None]
    hues = _ordered(t[source].astype(str), axes[source]) if source else [None]
    groups = list(dict.fromkeys(t["_group"]))
    fig, panels = _panels(len(facets), 3, max(3.2, 0.9 * len(groups) * max(1, len(hues)) + 1.2), 3.6)
    width = 0.8 / len(hues)
    for ax, facet in zip(panels, facets):
        part = t if facet is None else t[t[size].astype(str) == facet]
        for k, hue in enumerate(hues):
            bars = part if hue is None else part[part[source].astype(str) == hue]
            bars = bars.set_index("_group").reindex(groups)
            x = np.arange(len(groups)) - 0.4 + width * (k + 0.5)
            ax.bar(x, bars["win_rate_adjusted"].to_numpy(dtype=float), width * 0.92, color=PALETTE[k % len(PALETTE)],
                   label=hue if hue is not None else None,
                   yerr=_errors(bars, "win_rate_adjusted", "adjusted_ci_low", "adjusted_ci_high"),
                   error_kw={"elinewidth": 1, "capsize": 3})
        ax.axhline(0.5, color="black", linewidth=0.7, linestyle=":")
        ax.set_xticks(np.arange(len(groups)), groups, rotation=20 if len(groups) > 3 else 0, ha="right" if len(groups) > 3 else "center")
        ax.set_ylim(0, 1)
        ax.set_ylabel("adjusted win rate (95% CI)")
        if facet is not None:
            ax.set_title(f"{size} = {facet}", fontsize=10)
    if source:
        panels[-1].legend(title=source, fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    baselines = sorted({str(b) for b in table["baseline"].dropna()})
    fig.suptitle("Win rate against " + (", ".join(baselines) or "the other models") + " (ties count half)")
    return fig


def size_curve_figure(table: pd.DataFrame, axes: dict[str, list[str]]) -> Figure:
    """Adjusted win rate over the data size, one line per data source, one panel per base model (and other axes)."""
    group, source, size = _roles(list(axes))
    if size is None or len(axes[size]) < 2:
        raise ValueError("no data-size axis with two or more sizes")
    several = table.groupby("run")["model"].nunique().max() > 1
    t = table.assign(_group=[_group_label(r, group, several) for _, r in table.iterrows()])
    groups = list(dict.fromkeys(t["_group"]))
    sizes = list(axes[size])
    hues = _ordered(t[source].astype(str), axes[source]) if source else [None]
    fig, panels = _panels(len(groups), 3, 4.0, 3.4)
    for ax, g in zip(panels, groups):
        part = t[t["_group"] == g]
        for k, hue in enumerate(hues):
            line = part if hue is None else part[part[source].astype(str) == hue]
            line = line.set_index(line[size].astype(str)).reindex(sizes)
            dodge = (k - (len(hues) - 1) / 2) * 0.06  # equal values stay visible side by side
            ax.errorbar(np.arange(len(sizes)) + dodge, line["win_rate_adjusted"].to_numpy(dtype=float),
                        yerr=_errors(line, "win_rate_adjusted", "adjusted_ci_low", "adjusted_ci_high"),
                        marker="o", capsize=3, color=PALETTE[k % len(PALETTE)], label=hue)
        ax.axhline(0.5, color="black", linewidth=0.7, linestyle=":")
        ax.set_xticks(np.arange(len(sizes)), sizes)
        ax.set_xlabel("data size")
        ax.set_ylim(0, 1)
        ax.set_ylabel("adjusted win rate (95% CI)")
        ax.set_title(g, fontsize=10)
    if source:
        panels[-1].legend(title=source, fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Win rate against the baseline by data size")
    return fig


def significance_figure(table: pd.DataFrame) -> Figure:
    """Each compared pair's difference of adjusted win rates with its paired bootstrap 95% interval."""
    if table.empty:
        raise ValueError("no comparisons to draw")
    labels = [f"{a}  −  {b}" for a, b in zip(table["cell_a"], table["cell_b"])]
    fig, (ax,) = new_figure(7.0, 0.45 * len(table) + 1.4)
    y = np.arange(len(table))
    ax.errorbar(table["difference"].to_numpy(dtype=float), y, xerr=_errors(table, "difference", "ci_low", "ci_high"),
                fmt="o", capsize=3, color=PALETTE[0])
    for yi, p in zip(y, table["p_value"]):
        if not pd.isna(p):
            ax.annotate(f"p={p:.3f}", (1.0, yi), xycoords=("axes fraction", "data"), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=8)
    ax.axvline(0, color="black", linewidth=0.7, linestyle=":")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("difference of adjusted win rates (paired bootstrap 95% CI)")
    ax.set_title("Which cell is better? (a − b)")
    return fig


def category_win_tie_loss_figure(table: pd.DataFrame) -> Figure:
    """Per category, the shares of games won, tied and lost against the baseline; one panel per cell."""
    if table.empty:
        raise ValueError("no per-category games to draw")
    cells = list(dict.fromkeys(table["cell"]))
    categories = list(dict.fromkeys(table["category"]))
    rows = ["overall", *categories]
    fig, panels = _panels(len(cells), 3, 4.2, 0.32 * len(rows) + 1.3)
    for ax, cell in zip(panels, cells):
        part = table[table["cell"] == cell].set_index("category")
        counts = part[["wins", "ties", "losses", "n"]].reindex(categories).fillna(0)
        counts = pd.concat([counts.sum().to_frame("overall").T, counts])
        n = counts["n"].to_numpy(dtype=float)
        left = np.zeros(len(rows))
        for result, color in RESULT_COLORS.items():
            share = np.divide(counts[result].to_numpy(dtype=float), n, out=np.zeros(len(rows)), where=n > 0)
            ax.barh(np.arange(len(rows)), share, left=left, color=color, label=result, edgecolor="white")
            left += share
        ax.axvline(0.5, color="black", linewidth=0.6, linestyle=":")
        ax.set_xlim(0, 1)
        ax.set_yticks(np.arange(len(rows)), rows, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(cell, fontsize=9)
        ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    panels[-1].legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Wins, ties and losses against the baseline by category")
    return fig


def category_score_figure(table: pd.DataFrame, scale: tuple[float, float] = (1, 10)) -> Figure:
    """Mean 1-10 score per category (rows) and cell (columns), as an annotated heat map."""
    if table.empty:
        raise ValueError("no scores to draw")
    cells = list(dict.fromkeys(table["cell"]))
    categories = list(dict.fromkeys(table["category"]))
    grid = table.pivot_table(index="category", columns="cell", values="mean", aggfunc="first").reindex(
        index=categories, columns=cells)
    fig, (ax,) = new_figure(1.1 * len(cells) + 3.0, 0.38 * len(categories) + 2.0)
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis", vmin=scale[0], vmax=scale[1], aspect="auto")
    for (i, j), v in np.ndenumerate(grid.to_numpy(dtype=float)):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8,
                    color="white" if v < (scale[0] + scale[1]) / 2 else "black")
    ax.set_xticks(np.arange(len(cells)), cells, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(np.arange(len(categories)), categories, fontsize=8)
    fig.colorbar(image, ax=ax, label=f"mean score ({scale[0]:g}-{scale[1]:g})")
    ax.set_title("Single-answer scores by category")
    return fig


def judge_diagnostics_figure(games: pd.DataFrame, per_cell: pd.DataFrame) -> Figure:
    """The judge's position consistency and first-position share per cell, and answer length against the verdict."""
    if games.empty:
        raise ValueError("no games to diagnose")
    fig, (a, b, c) = new_figure(13.0, 0.3 * len(per_cell) + 2.8, 1, 3)
    y = np.arange(len(per_cell))
    a.barh(y, per_cell["position_consistency"].to_numpy(dtype=float), color=PALETTE[0])
    a.bar_label(a.containers[0], fmt="%.2f", padding=2, fontsize=8)
    a.set_xlim(0, 1.15)
    a.set_yticks(y, per_cell["cell"], fontsize=8)
    a.invert_yaxis()
    a.set_xlabel("both orders agree (share of games)")
    a.set_title("Position consistency", fontsize=10)
    b.barh(y, per_cell["first_position_win_share"].to_numpy(dtype=float), color=PALETTE[1])
    b.bar_label(b.containers[0], fmt="%.2f", padding=2, fontsize=8)
    b.axvline(0.5, color="black", linewidth=0.7, linestyle=":")
    b.set_xlim(0, 1.15)
    b.set_yticks(y, [""] * len(y))
    b.invert_yaxis()
    b.set_xlabel("verdicts for the answer shown first (0.5: no bias)")
    b.set_title("Position bias", fontsize=10)
    results = ["loss", "tie", "win"]
    data = [games.loc[games["result"] == r, "length_difference"].dropna().to_numpy(dtype=float) for r in results]
    if any(len(d) for d in data):
        c.boxplot([d if len(d) else [np.nan] for d in data], orientation="horizontal", tick_labels=results,
                  widths=0.6)
        for k, d in enumerate(data, start=1):
            c.scatter(d, np.full(len(d), k) + np.random.default_rng(k).uniform(-0.15, 0.15, len(d)), s=8,
                      color=PALETTE[2], alpha=0.6, zorder=3)
            c.annotate(f"n={len(d)}", (1.0, k), xycoords=("axes fraction", "data"), xytext=(4, 0),
                       textcoords="offset points", va="center", fontsize=8)
        c.axvline(0, color="black", linewidth=0.7, linestyle=":")
        c.set_xlabel("answer length − baseline's (characters)")
    else:
        c.text(0.5, 0.5, "no answers to measure", ha="center", va="center", transform=c.transAxes)
        c.set_axis_off()
    c.set_title("Answer length and the verdict", fontsize=10)
    fig.suptitle("Judge diagnostics")
    return fig


def ratings_figure(table: pd.DataFrame) -> Figure:
    """Bradley-Terry ratings (Elo scale) with 95% intervals, one panel per run that judged all pairs."""
    if table.empty:
        raise ValueError("no all-pairs judgments to rate")
    cells = list(dict.fromkeys(table["cell"]))
    fig, panels = _panels(len(cells), 2, 5.0, 0.35 * table.groupby("cell").size().max() + 1.5)
    for ax, cell in zip(panels, cells):
        part = table[table["cell"] == cell].sort_values("rating", ascending=False)
        y = np.arange(len(part))
        ax.errorbar(part["rating"].to_numpy(dtype=float), y, xerr=_errors(part, "rating", "ci_low", "ci_high"),
                    fmt="o", capsize=3, color=PALETTE[0])
        ax.set_yticks(y, part["model"], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("rating (Elo scale, 95% CI)")
        ax.set_title(cell, fontsize=10)
    fig.suptitle("Bradley-Terry ratings from all-pairs judgments")
    return fig


def agreement_figure(table: pd.DataFrame) -> Figure:
    """Agreement of the judge with humans (and of humans with each other), with and without ties, and kappa."""
    if table.empty:
        raise ValueError("no agreement results (notebook 07 did not run)")
    cells = list(dict.fromkeys(table["cell"]))
    metrics = ["with_ties", "without_ties", "kappa", "alpha"]
    fig, panels = _panels(len(cells), 3, 4.6, 3.4)
    for ax, cell in zip(panels, cells):
        part = table[table["cell"] == cell]
        shown = [m for m in metrics if (part["metric"] == m).any()]
        whos = list(dict.fromkeys(part["who"]))
        width = 0.8 / len(whos)
        for k, who in enumerate(whos):
            bars = part[part["who"] == who].set_index("metric").reindex(shown)
            x = np.arange(len(shown)) - 0.4 + width * (k + 0.5)
            ax.bar(x, bars["value"].to_numpy(dtype=float), width * 0.92, color=PALETTE[k % len(PALETTE)],
                   yerr=_errors(bars, "value", "ci_low", "ci_high"), error_kw={"capsize": 3}, label=who)
        ax.set_xticks(np.arange(len(shown)), shown)
        ax.set_ylim(min(0.0, float(np.nanmin(part["value"]))), 1)
        n = part["n_questions"].dropna()
        ax.set_title(cell + (f" (n={int(n.iloc[0])} questions)" if len(n) else ""), fontsize=10)
    panels[-1].legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Agreement with human judgments (95% CI)")
    return fig


def tasks_figure(table: pd.DataFrame) -> Figure:
    """Task-evaluation results (notebook 08): one panel per task and metric, a bar per cell and model with the
    95% interval (1.96 standard errors)."""
    if table.empty:
        raise ValueError("no task-evaluation results (notebook 08 did not run)")
    keys = list(dict.fromkeys(zip(table["task"], table["metric"])))
    fig, panels = _panels(len(keys), 3, 4.2, 3.4)
    several_cells = table["cell"].nunique() > 1
    for ax, (task, metric) in zip(panels, keys):
        part = table[(table["task"] == task) & (table["metric"] == metric)]
        labels = [f"{c} : {m}" if several_cells else str(m) for c, m in zip(part["cell"], part["model"])]
        x = np.arange(len(part))
        se = pd.to_numeric(part["stderr"], errors="coerce").fillna(0).to_numpy(dtype=float) * 1.96
        ax.bar(x, part["value"].to_numpy(dtype=float), yerr=se, capsize=3,
               color=[PALETTE[k % len(PALETTE)] for k in range(len(part))])
        ax.set_xticks(x, labels, rotation=30 if len(part) > 2 else 0, ha="right" if len(part) > 2 else "center",
                      fontsize=8)
        ax.set_title(f"{task} ({metric})", fontsize=10)
    fig.suptitle("Task evaluation (95% CI)")
    return fig
