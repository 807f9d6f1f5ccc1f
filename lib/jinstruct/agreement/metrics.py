"""Agreement between the LLM judge and people, and among people: one function per statistic.

All statistics read a vote frame (`jinstruct.agreement.votes.vote_frame`: one row per vote, games keyed with the
models ordered by name, every tie spelled `tie`).

FastChat's `compute_agreement.py`, exactly:

- judge-human: every (judge vote, human vote) pair on a game both voted on (the judge has one vote per game);
- human-human: every pair of two different human votes on the same game;
- agreement with ties: the share of pairs whose two votes are equal (two ties are equal);
- agreement without ties: the same over the pairs where neither vote is a tie.

Beyond FastChat (nobody reports these; they answer "is 70% good?"):

- Cohen's kappa between the judge and the humans over every (judge vote, human vote) pair, three classes
  (model_a, model_b, tie): observed agreement corrected for the agreement expected from the two sides' vote
  shares (`sklearn.metrics.cohen_kappa_score`);
- Krippendorff's alpha, nominal, over every game with the votes of all annotators and the judge as coders
  (`krippendorff.alpha`), and among the humans alone;
- 95% intervals by a percentile bootstrap over questions: a question's turns, model pairs and all its votes are
  resampled together, seeded so a table is the same twice. A resample on which a statistic is undefined (no pairs,
  one class only) is left out of its interval;
- agreement per category and the judge-human confusion matrix.

A statistic that is undefined (no pairs; kappa or alpha when every vote is the same) is NaN, written `null` in JSON.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import cohen_kappa_score

from jinstruct.agreement.votes import GAME, HUMAN, JUDGE, VOTES

ROUNDS = 1000
LEVEL = 0.95
JH = ("judge_vote", "human_vote")  # the two vote columns of judge-human pairs
HH = ("vote_1", "vote_2")  # and of human-human pairs
COUNTS = [f"votes_{v}" for v in VOTES]  # a game's vote counts, for alpha


@dataclass(frozen=True)
class Agreement:
    agree: int
    total: int

    @property
    def ratio(self) -> float:
        return self.agree / self.total if self.total else math.nan


# ---- pairs ------------------------------------------------------------------------------------------------------


def judge_human_pairs(votes: pd.DataFrame) -> pd.DataFrame:
    """Every (judge vote, human vote) pair on the same game: the game, category, judge, annotator, judge_vote,
    human_vote. The judge must have at most one vote per game (FastChat asserts it)."""
    judge = votes[votes["role"] == JUDGE]
    twice = judge[judge.duplicated(GAME, keep=False)]
    if not twice.empty:
        g = twice.iloc[0]
        raise ValueError(f"several judge votes on question {g.question_id}, turn {g.turn}, {g.model_a} vs {g.model_b} "
                         f"(judges: {sorted(set(twice['voter']))}); keep one judge")
    human = votes[votes["role"] == HUMAN]
    pairs = human.merge(judge[[*GAME, "voter", "vote"]], on=GAME, suffixes=("_human", "_judge"))
    pairs = pairs.rename(columns={"voter_human": "annotator", "voter_judge": "judge", "vote_human": "human_vote",
                                  "vote_judge": "judge_vote"})
    return pairs[[*GAME, "category", "judge", "annotator", *JH]].reset_index(drop=True)


def human_human_pairs(votes: pd.DataFrame) -> pd.DataFrame:
    """Every pair of two human votes on the same game (in file order): the game, category, annotator_1,
    annotator_2, vote_1, vote_2."""
    human = votes[votes["role"] == HUMAN]
    rows = []
    for _, game in human.groupby(GAME, sort=False):
        for a, b in itertools.combinations(game.itertuples(index=False), 2):
            rows.append((a.question_id, a.turn, a.model_a, a.model_b, a.category, a.voter, b.voter, a.vote, b.vote))
    return pd.DataFrame(rows, columns=[*GAME, "category", "annotator_1", "annotator_2", *HH])


# ---- statistics (one function each) -----------------------------------------------------------------------------


def agreement(pairs: pd.DataFrame, columns: tuple[str, str], ties: bool = True,
              weights: np.ndarray | None = None) -> Agreement:
    """FastChat's agreement: pairs with equal votes out of all pairs; `ties=False` leaves out every pair in which
    either vote is a tie. `weights`: how many times each pair counts (a bootstrap resample)."""
    first, second = pairs[columns[0]].to_numpy(), pairs[columns[1]].to_numpy()
    counted = np.ones(len(first), dtype=int) if weights is None else np.asarray(weights, dtype=int)
    if not ties:
        counted = counted * ((first != "tie") & (second != "tie"))
    return Agreement(int(counted[first == second].sum()), int(counted.sum()))


def cohen_kappa(pairs: pd.DataFrame, columns: tuple[str, str] = JH, weights: np.ndarray | None = None) -> float:
    """Cohen's kappa over the pairs, three classes (model_a, model_b, tie); NaN when undefined. `weights`: how many
    times each pair counts (a bootstrap resample)."""
    if pairs.empty or (weights is not None and not np.any(weights)):
        return math.nan
    codes = {v: i for i, v in enumerate(VOTES)}
    first, second = (pairs[c].map(codes).to_numpy(dtype=int) for c in columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # one class only: NaN, as documented above
        return float(cohen_kappa_score(first, second, labels=list(range(len(VOTES))), sample_weight=weights))


def game_counts(votes: pd.DataFrame) -> pd.DataFrame:
    """One row per game: the game, and how many votes went to model_a, model_b and tie (columns `COUNTS`)."""
    if votes.empty:
        return pd.DataFrame(columns=[*GAME, *COUNTS])
    table = pd.crosstab([votes[c] for c in GAME], votes["vote"]).reindex(columns=list(VOTES), fill_value=0)
    table.columns = COUNTS
    return table.reset_index()


def pairable_games(votes: pd.DataFrame) -> int:
    """How many games have at least two votes (the units alpha is computed on)."""
    return int((game_counts(votes)[COUNTS].sum(axis=1) >= 2).sum())


def alpha_of_counts(counts: pd.DataFrame, weights: np.ndarray | None = None) -> float:
    """Krippendorff's alpha (nominal) from `game_counts`; NaN when no game has two votes or all votes agree.
    `weights`: how many times each game counts (a bootstrap resample)."""
    matrix = counts[COUNTS].to_numpy(dtype=int)
    if weights is not None:
        matrix = np.repeat(matrix, np.asarray(weights, dtype=int), axis=0)
    pairable = matrix[matrix.sum(axis=1) >= 2]
    if len(pairable) == 0 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return math.nan
    return float(krippendorff.alpha(value_counts=pairable, level_of_measurement="nominal"))


def krippendorff_alpha(votes: pd.DataFrame) -> float:
    """Krippendorff's alpha (nominal) with every voter in `votes` as a coder and every game as a unit; NaN when
    no game has two votes or every vote is the same."""
    return alpha_of_counts(game_counts(votes))


def resample_weights(question_ids: pd.Series, rounds: int, seed: int = 0) -> np.ndarray:
    """(rounds, rows): in each bootstrap resample of the questions (as many draws as questions, with replacement),
    how many times each row's question was drawn; a question's rows are resampled together."""
    codes, questions = pd.factorize(question_ids)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(questions), size=(rounds, len(questions)))
    per_question = np.zeros((rounds, len(questions)), dtype=int)
    np.add.at(per_question, (np.repeat(np.arange(rounds), len(questions)), drawn.ravel()), 1)
    return per_question[:, codes]


def bootstrap_interval(frame: pd.DataFrame, statistic: Callable[[pd.DataFrame, np.ndarray], float],
                       rounds: int = ROUNDS, seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(frame, weights)` with the questions resampled (`resample_weights`);
    NaN when there is nothing to resample or the statistic is undefined on every resample."""
    if rounds <= 0 or frame.empty:
        return math.nan, math.nan
    values = np.array([statistic(frame, w) for w in resample_weights(frame["question_id"], rounds, seed)], dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def confusion_matrix(pairs: pd.DataFrame, columns: tuple[str, str] = JH) -> pd.DataFrame:
    """Counts of (first vote, second vote): rows the judge's vote, columns the human's (for judge-human pairs)."""
    if pairs.empty:
        table = pd.DataFrame(0, index=list(VOTES), columns=list(VOTES))
        table.index.name, table.columns.name = columns
        return table
    table = pd.crosstab(pairs[columns[0]], pairs[columns[1]]).reindex(index=list(VOTES), columns=list(VOTES),
                                                                      fill_value=0)
    table.index.name, table.columns.name = columns
    return table.astype(int)


def per_category(pairs: pd.DataFrame, columns: tuple[str, str] = JH) -> pd.DataFrame:
    """Agreement with and without ties and kappa per category (pairs of games without a category are left out)."""
    rows = {}
    for category, group in pairs.dropna(subset=["category"]).groupby("category", sort=True):
        with_ties, without = agreement(group, columns, True), agreement(group, columns, False)
        rows[category] = {"with_ties": with_ties.ratio, "agree_with_ties": with_ties.agree, "n_with_ties": with_ties.total,
                          "without_ties": without.ratio, "agree_without_ties": without.agree,
                          "n_without_ties": without.total, "kappa": cohen_kappa(group, columns),
                          "questions": int(group["question_id"].nunique())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "category"
    return table


def by_turn(votes: pd.DataFrame) -> pd.DataFrame:
    """FastChat's printout: per turn, judge-human and human-human agreement with and without ties."""
    rows = []
    for turn, group in votes.groupby("turn", sort=True):
        jh, hh = judge_human_pairs(group), human_human_pairs(group)
        for name, pairs, cols in (("judge-human", jh, JH), ("human-human", hh, HH)):
            w, wo = agreement(pairs, cols, True), agreement(pairs, cols, False)
            rows.append({"turn": turn, "comparison": name, "with_ties": w.ratio, "agree_with_ties": w.agree,
                         "n_with_ties": w.total, "without_ties": wo.ratio, "agree_without_ties": wo.agree,
                         "n_without_ties": wo.total})
    return pd.DataFrame(rows).set_index(["turn", "comparison"]) if rows else pd.DataFrame()


# ---- the summary ------------------------------------------------------------------------------------------------


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _interval(pair: tuple[float, float]) -> list[float | None]:
    return [_num(pair[0]), _num(pair[1])]


def _agreements(pairs: pd.DataFrame, columns: tuple[str, str], rounds: int, seed: int,
                level: float) -> dict[str, Any]:
    out: dict[str, Any] = {"agree": {}, "n": {}, "ci": {}}
    for name, ties in (("with_ties", True), ("without_ties", False)):
        a = agreement(pairs, columns, ties)
        out[name], out["agree"][name], out["n"][name] = _num(a.ratio), a.agree, a.total
        out["ci"][name] = _interval(bootstrap_interval(
            pairs, lambda f, w, t=ties: agreement(f, columns, t, w).ratio, rounds, seed, level))
    return out


def summarize(votes: pd.DataFrame, rounds: int = ROUNDS, seed: int = 0, level: float = LEVEL) -> dict[str, Any]:
    """Every statistic of the module as one JSON-ready dict (`agreement/summary.json`)."""
    jh, hh = judge_human_pairs(votes), human_human_pairs(votes)
    humans = votes[votes["role"] == HUMAN]
    judge_human = _agreements(jh, JH, rounds, seed, level)
    judge_human["kappa"] = _num(cohen_kappa(jh))
    judge_human["ci"]["kappa"] = _interval(bootstrap_interval(jh, lambda f, w: cohen_kappa(f, JH, w), rounds, seed, level))
    human_human = _agreements(hh, HH, rounds, seed, level)
    human_human["alpha"] = _num(krippendorff_alpha(humans))
    human_human["ci"]["alpha"] = _interval(bootstrap_interval(game_counts(humans), alpha_of_counts, rounds, seed, level))
    human_human["alpha_units"] = pairable_games(humans)
    categories = per_category(jh)
    return {
        "judges": sorted(set(votes.loc[votes["role"] == JUDGE, "voter"])),
        "annotators": sorted(set(humans["voter"])),
        "n_questions": int(humans["question_id"].nunique()),
        "n_games": int(len(humans.drop_duplicates(GAME))),
        "n_human_votes": int(len(humans)),
        "judge_human": judge_human,
        "human_human": human_human,
        "alpha": _num(krippendorff_alpha(votes)),
        "alpha_ci": _interval(bootstrap_interval(game_counts(votes), alpha_of_counts, rounds, seed, level)),
        "alpha_units": pairable_games(votes),
        "per_category": {str(c): {k: (_num(v) if isinstance(v, float) else int(v)) for k, v in row.items()}
                         for c, row in categories.to_dict(orient="index").items()},
        "confusion": {"rows": "judge", "columns": "human", "labels": list(VOTES),
                      "matrix": confusion_matrix(jh).to_numpy().tolist()},
        "bootstrap": {"rounds": rounds, "seed": seed, "level": level, "unit": "question"},
    }


def agreement_table(summary: dict[str, Any]) -> pd.DataFrame:
    """The summary as one table: a row per (comparison, statistic) with value, interval, agreeing pairs and n (pairs,
    or for alpha the games with two votes or more)."""
    jh, hh = summary["judge_human"], summary["human_human"]
    rows = []
    for name, part, chance in (("judge-human", jh, ("Cohen's kappa", "kappa", jh["n"]["with_ties"])),
                               ("human-human", hh, ("Krippendorff's alpha", "alpha", hh["alpha_units"]))):
        for key, label in (("with_ties", "agreement with ties"), ("without_ties", "agreement without ties")):
            rows.append((name, label, part[key], *part["ci"][key], part["agree"][key], part["n"][key]))
        label, key, n = chance
        rows.append((name, label, part[key], *part["ci"][key], None, n))
    rows.append(("humans + judge", "Krippendorff's alpha", summary["alpha"], *summary["alpha_ci"], None,
                 summary["alpha_units"]))
    table = pd.DataFrame(rows, columns=["comparison", "statistic", "value", "ci_low", "ci_high", "agree", "n"])
    table = table.astype({"value": float, "ci_low": float, "ci_high": float, "agree": "Int64", "n": int})
    return table.set_index(["comparison", "statistic"])
