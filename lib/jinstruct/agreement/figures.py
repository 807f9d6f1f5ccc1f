"""The judge-human confusion matrix (notebook 07): how often the judge's vote (rows) met each human vote (columns),
as counts and as shares of the judge's row, drawn with seaborn's heatmap on a plain `Figure`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from jinstruct.plotting import setup_japanese_font

VOTE_LABELS = {"model_a": "model_a の勝ち", "model_b": "model_b の勝ち", "tie": "引き分け"}


def confusion_figure(matrix: pd.DataFrame, models: tuple[str, str] | None = None, title: str | None = None) -> Figure:
    """`metrics.confusion_matrix(pairs)` as a heatmap; cells show the count and the share of the judge's row.
    With one model pair, `models` (model_a, model_b) names the two sides in the labels."""
    setup_japanese_font()
    labels = dict(VOTE_LABELS)
    if models is not None:
        labels["model_a"], labels["model_b"] = f"{models[0]} の勝ち", f"{models[1]} の勝ち"
    counts = matrix.to_numpy(dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    notes = np.array([[f"{int(c)}\n({s:.0%})" for c, s in zip(cr, sr)] for cr, sr in zip(counts, shares)])
    fig = Figure(figsize=(5.6, 4.6), layout="constrained")
    ax = fig.add_subplot()
    sns.heatmap(pd.DataFrame(shares, index=[labels[v] for v in matrix.index], columns=[labels[v] for v in matrix.columns]),
                annot=notes, fmt="", cmap="Blues", vmin=0, vmax=1, cbar_kws={"label": "判定者の行に占める割合"},
                linewidths=0.5, linecolor="white", ax=ax)
    ax.set_ylabel("LLM 判定者の票 (両順序の総合)")
    ax.set_xlabel("人手の票")
    ax.tick_params(axis="y", rotation=0)
    ax.set_title(title or f"判定者と人手の一致 (票の組 n={int(counts.sum())})")
    return fig
