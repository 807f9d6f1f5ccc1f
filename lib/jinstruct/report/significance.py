"""Is one grid cell really better than another? Differences of win rates with a paired bootstrap over questions.

Two cells judged against the same baseline on the same questions are paired by question: each bootstrap round
draws the questions once (with replacement) and recomputes both cells' statistic on that draw, so the question's
difficulty, shared by both cells, cancels out of the difference. The interval is the percentile interval of the
differences; the p-value is the two-sided bootstrap one (twice the smaller share of rounds on either side of 0).

The statistics are `jinstruct.judge.metrics`'s own functions of a win/loss/tie count table (`adjusted_win_rate`,
`win_rate`, ...), applied to the resampled counts of all rounds at once, so a difference means exactly what the
single-cell tables mean. Only questions judged in both cells count.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from jinstruct.judge.metrics import LEVEL, ROUNDS, adjusted_win_rate, model_view

Statistic = Callable[[pd.DataFrame], pd.Series]
RESULTS = ["wins", "losses", "ties"]


def question_counts(games: pd.DataFrame, model: str, baseline: str | None) -> pd.DataFrame:
    """Per question (index: question id as text): the model's wins, losses and ties against the baseline (against
    every other model without one); error games left out."""
    view = model_view(games, baseline)
    view = view[(view["model"] == model) & (view["result"] != "error")]
    counts = pd.crosstab(view["question_id"].astype(str), view["result"]).reindex(
        columns=["win", "loss", "tie"], fill_value=0)
    counts.columns = RESULTS
    counts.index.name = "question_id"
    return counts.astype(int)


def _with_n(counts: pd.DataFrame) -> pd.DataFrame:
    return counts.assign(n=counts["wins"] + counts["losses"] + counts["ties"])


def paired_bootstrap(a: pd.DataFrame, b: pd.DataFrame, statistic: Statistic = adjusted_win_rate,
                     rounds: int = ROUNDS, seed: int = 0, level: float = LEVEL) -> dict[str, float]:
    """statistic(a) - statistic(b) over their common questions, with a paired percentile bootstrap interval.

    a, b: `question_counts` tables. Returns a, b (each cell's statistic), difference, ci_low, ci_high, p_value and
    n_questions (the common questions)."""
    common = a.index.intersection(b.index)
    if common.empty:
        raise ValueError("the two cells share no judged question")
    ca = a.loc[common, RESULTS].to_numpy(dtype=float)
    cb = b.loc[common, RESULTS].to_numpy(dtype=float)

    def stat(counts: np.ndarray) -> np.ndarray:
        return statistic(_with_n(pd.DataFrame(counts, columns=RESULTS))).to_numpy(dtype=float)

    point_a, point_b = stat(ca.sum(axis=0, keepdims=True))[0], stat(cb.sum(axis=0, keepdims=True))[0]
    out = {"a": point_a, "b": point_b, "difference": point_a - point_b, "ci_low": np.nan, "ci_high": np.nan,
           "p_value": np.nan, "n_questions": float(len(common))}
    if rounds <= 0:
        return out
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(common), np.full(len(common), 1.0 / len(common)), size=rounds).astype(float)
    diffs = stat(weights @ ca) - stat(weights @ cb)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size:
        tail = (1 - level) / 2 * 100
        out["ci_low"], out["ci_high"] = (float(x) for x in np.percentile(diffs, [tail, 100 - tail]))
        out["p_value"] = float(min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))
    return out
