"""Aggregating judgments: win rates with bootstrap intervals, judge diagnostics, mean scores, Bradley-Terry ratings.

Pairwise semantics are FastChat's (`show_result.py`): each judgment line is one game (a question, a turn,
two models) judged in both orders. A game is an **error** when either order's verdict is an error
(FastChat drops it; here it is counted in `errors` and left out of `n`); a **tie** when game 1 says tie or
the two orders disagree; otherwise a win for the model both orders chose. `g2_winner` is stored already
mapped back to `model_1` / `model_2`, so the two orders agree exactly when `g1_winner == g2_winner`.

Rates: win_rate = wins / n, loss_rate = losses / n, win_rate_adjusted = (wins + 0.5 ties) / n, with
n = wins + losses + ties. Confidence intervals are percentile bootstraps over questions (a question's turns
and all its games are resampled together), seeded so a table is the same twice.

Judge diagnostics: position_consistency is the share of (non-error) games whose two orders agree;
first_position_win_share is, among the single-order verdicts that picked a winner, the share that picked the
answer shown first (0.5 means no position bias).

Ratings: Bradley-Terry strengths fitted by maximum likelihood on the non-error games (a tie is half a win
for each side), put on Chatbot Arena's Elo scale (400 points = 10:1 odds) with one model as the anchor,
and bootstrapped over questions like the win rates.

Semantics (`SEMANTICS`): "fastchat" (the default) is the reading above, today's FastChat's. "ja-vicuna-2023"
reproduces the tables published with ja-vicuna-qa-benchmark in 2023, whose `show_result.py` read every line as it
was: a game with an error verdict counts as a tie (two agreeing error verdicts as a win for model_2, its
else-branch), a game judged twice counts twice, and a single grade of -1 (no rating) is averaged in as -1.

Per pair (`pairwise_by_pair`): from an all-pairs file, one row per pair of models with model_1's wins, ties and
losses against model_2, so that A vs B, B vs C and A vs C come from one file.

Every function takes and returns plain pandas objects; build the frames with `pairwise_frame` / `single_frame`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from jinstruct.judge.verdicts import game_outcome, game_outcome_2023
from jinstruct.formats.fastchat import ERROR_SCORE, PairwiseJudgment, Question, SingleJudgment

ROUNDS = 1000
LEVEL = 0.95

Semantics = Literal["fastchat", "ja-vicuna-2023"]
SEMANTICS: dict[str, str] = {
    "fastchat": "today's FastChat: a game with an error verdict is left out (counted under errors); a game judged "
                "twice counts once, its last line; a grade of -1 (no rating) is left out of the mean",
    "ja-vicuna-2023": "ja-vicuna-qa-benchmark's 2023 tables: every line counts as it is; a game with an error "
                      "verdict is a tie (both orders error: a win for model_2, as that code had it); a game judged "
                      "twice counts twice; a grade of -1 is averaged in",
}


def _check_semantics(semantics: str) -> None:
    if semantics not in SEMANTICS:
        raise ValueError(f"unknown semantics {semantics!r}; choose one of {sorted(SEMANTICS)}")


# ---- frames -------------------------------------------------------------------------------------------------


def categories_of(questions: Iterable[Question]) -> dict[str, str]:
    """{str(question_id): category}, for the per-category breakdowns."""
    return {str(q.question_id): q.category for q in questions}


def _category(record: PairwiseJudgment | SingleJudgment, categories: Mapping[str, str] | None) -> str | None:
    if categories is not None:
        return categories.get(str(record.question_id))
    extra = getattr(record, "category", None)  # some judgment files carry the question's category
    return extra if isinstance(extra, str) else None


def pairwise_frame(judgments: Iterable[PairwiseJudgment], categories: Mapping[str, str] | None = None,
                   semantics: Semantics = "fastchat") -> pd.DataFrame:
    """One row per game: question_id, turn, category, model_1, model_2, g1_winner, g2_winner, outcome,
    judge_model, judge_prompt. With "fastchat" semantics a game judged twice (same judge, question, turn and
    models, in either order) keeps its last line, as FastChat's loader does, and a game with an error verdict has
    outcome "error"; with "ja-vicuna-2023" every line is a game and its outcome follows `game_outcome_2023`."""
    _check_semantics(semantics)
    outcome = game_outcome if semantics == "fastchat" else game_outcome_2023
    rows: dict[tuple, dict] = {}
    for i, j in enumerate(judgments):
        key: tuple = (j.judge[0], str(j.question_id), j.turn, frozenset((j.model_1, j.model_2)))
        if semantics != "fastchat":
            key = (i,)
        rows.pop(key, None)
        rows[key] = {
            "question_id": j.question_id, "turn": j.turn, "category": _category(j, categories),
            "model_1": j.model_1, "model_2": j.model_2, "g1_winner": j.g1_winner, "g2_winner": j.g2_winner,
            "outcome": outcome(j.g1_winner, j.g2_winner), "judge_model": j.judge[0], "judge_prompt": j.judge[1],
        }
    columns = ["question_id", "turn", "category", "model_1", "model_2", "g1_winner", "g2_winner", "outcome",
               "judge_model", "judge_prompt"]
    return pd.DataFrame(list(rows.values()), columns=columns)


def single_frame(judgments: Iterable[SingleJudgment], categories: Mapping[str, str] | None = None,
                 semantics: Semantics = "fastchat") -> pd.DataFrame:
    """One row per graded answer: question_id, turn, category, model, score (NaN when an error), error,
    judge_model, judge_prompt. A score of -1 (FastChat: no rating found) or a non-finite one is an error.
    A repeated (judge, question, model, turn) keeps its last line. With "ja-vicuna-2023" every line is kept and
    a score of -1 is a score, as that code averaged it."""
    _check_semantics(semantics)
    rows: dict[tuple, dict] = {}
    for i, j in enumerate(judgments):
        score = float(j.score)
        error = not np.isfinite(score) or (j.score == ERROR_SCORE and semantics == "fastchat")
        key: tuple = (j.judge[0], str(j.question_id), j.model, j.turn) if semantics == "fastchat" else (i,)
        rows.pop(key, None)
        rows[key] = {"question_id": j.question_id, "turn": j.turn, "category": _category(j, categories),
                     "model": j.model, "score": np.nan if error else score, "error": error,
                     "judge_model": j.judge[0], "judge_prompt": j.judge[1]}
    columns = ["question_id", "turn", "category", "model", "score", "error", "judge_model", "judge_prompt"]
    return pd.DataFrame(list(rows.values()), columns=columns)


def _first_position(games: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per game: single-order verdicts for the answer shown first (game 1: model_1; game 2: model_2), and
    single-order verdicts that named a winner at all."""
    first = (games["g1_winner"] == "model_1").astype(int) + (games["g2_winner"] == "model_2").astype(int)
    named = games[["g1_winner", "g2_winner"]].isin(["model_1", "model_2"]).sum(axis=1).astype(int)
    return first, named


def model_view(games: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Each game seen from each of its two models: model, opponent, result (win/loss/tie/error), and for the
    judge diagnostics `consistent` (both orders agree), `first_wins` and `decisive` (single-order verdicts
    that went to the first-shown answer / that named a winner). With a baseline, only the other models'
    games against it."""
    g = games
    first_wins, decisive = _first_position(g)
    common = {"question_id": g["question_id"], "turn": g["turn"], "category": g["category"],
              "consistent": g["g1_winner"] == g["g2_winner"], "first_wins": first_wins, "decisive": decisive,
              "game_error": g["outcome"] == "error"}
    sides = []
    for me, other in (("model_1", "model_2"), ("model_2", "model_1")):
        result = np.select([g["outcome"] == "error", g["outcome"] == "tie", g["outcome"] == me],
                           ["error", "tie", "win"], default="loss")
        sides.append(pd.DataFrame({"model": g[me], "opponent": g[other], "result": result, **common}))
    view = pd.concat(sides, ignore_index=True)
    if baseline is not None:
        if not ((games["model_1"] == baseline) | (games["model_2"] == baseline)).any():
            raise ValueError(f"baseline {baseline!r} is in no game; models: {sorted(set(games['model_1']) | set(games['model_2']))}")
        view = view[(view["opponent"] == baseline) & (view["model"] != baseline)]
    return view.reset_index(drop=True)


# ---- pairwise statistics (one function each) ----------------------------------------------------------------


def win_loss_counts(view: pd.DataFrame) -> pd.DataFrame:
    """Per model: wins, losses, ties, errors and n = wins + losses + ties (errors excluded)."""
    counts = pd.crosstab(view["model"], view["result"]).reindex(columns=["win", "loss", "tie", "error"], fill_value=0)
    counts.columns = ["wins", "losses", "ties", "errors"]
    counts["n"] = counts["wins"] + counts["losses"] + counts["ties"]
    counts.index.name = "model"
    return counts.astype(int)


def _rate(num: pd.Series, n: pd.Series) -> pd.Series:
    return (num / n.where(n > 0)).astype(float)


def win_rate(counts: pd.DataFrame) -> pd.Series:
    return _rate(counts["wins"], counts["n"])


def loss_rate(counts: pd.DataFrame) -> pd.Series:
    return _rate(counts["losses"], counts["n"])


def adjusted_win_rate(counts: pd.DataFrame) -> pd.Series:
    """(wins + 0.5 ties) / n: a tie is half a win and half a loss."""
    return _rate(counts["wins"] + 0.5 * counts["ties"], counts["n"])


def position_consistency(view: pd.DataFrame) -> pd.Series:
    """Per model: the share of its non-error games whose two orders gave the same verdict."""
    ok = view[~view["game_error"]]
    return ok.groupby("model")["consistent"].mean().reindex(view["model"].unique()).astype(float)


def first_position_win_share(view: pd.DataFrame) -> pd.Series:
    """Per model's games: of the single-order verdicts that named a winner, the share naming the answer
    shown first (0.5 = no position bias). Non-error games only."""
    ok = view[~view["game_error"]].groupby("model")[["first_wins", "decisive"]].sum()
    return _rate(ok["first_wins"], ok["decisive"]).reindex(view["model"].unique())


def _interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along the last axis, ignoring NaN rounds (a resample with no games)."""
    tail = (1 - level) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        return np.nanpercentile(samples, tail, axis=-1), np.nanpercentile(samples, 100 - tail, axis=-1)


def _resample_weights(n_units: int, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """rounds x n_units: how often each unit (question) is drawn in each bootstrap resample."""
    return rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=rounds).astype(float)


def bootstrap_win_rates(view: pd.DataFrame, rounds: int = ROUNDS, seed: int = 0, level: float = LEVEL) -> pd.DataFrame:
    """Per model, the bootstrap interval of win_rate and win_rate_adjusted, resampling questions
    (the same resamples for every model)."""
    cols = ["win_rate_ci_low", "win_rate_ci_high", "adjusted_ci_low", "adjusted_ci_high"]
    ok = view[view["result"] != "error"]
    models = list(view["model"].unique())
    if ok.empty or rounds <= 0:
        return pd.DataFrame(np.nan, index=pd.Index(models, name="model"), columns=cols)
    questions = pd.Index(ok["question_id"].astype(str).unique())
    counts = np.zeros((len(models), len(questions), 3))
    result_idx = ok["result"].map({"win": 0, "loss": 1, "tie": 2}).to_numpy()
    np.add.at(counts, (pd.Index(models).get_indexer(ok["model"]), questions.get_indexer(ok["question_id"].astype(str)),
                       result_idx), 1)
    weights = _resample_weights(len(questions), rounds, np.random.default_rng(seed))
    boot = np.einsum("rq,mqk->mrk", weights, counts)  # models x rounds x (win, loss, tie)
    n = boot.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        wr = np.where(n > 0, boot[..., 0] / n, np.nan)
        adj = np.where(n > 0, (boot[..., 0] + 0.5 * boot[..., 2]) / n, np.nan)
    wr_lo, wr_hi = _interval(wr, level)
    adj_lo, adj_hi = _interval(adj, level)
    return pd.DataFrame({cols[0]: wr_lo, cols[1]: wr_hi, cols[2]: adj_lo, cols[3]: adj_hi},
                        index=pd.Index(models, name="model"))


def pairwise_summary(games: pd.DataFrame, baseline: str | None = None, rounds: int = ROUNDS, seed: int = 0,
                     level: float = LEVEL) -> pd.DataFrame:
    """The results table, one row per model (against the baseline, or against all others without one):
    wins, losses, ties, errors, n, win_rate, loss_rate, win_rate_adjusted, their bootstrap intervals,
    position_consistency and first_position_win_share; sorted by win_rate_adjusted."""
    view = model_view(games, baseline)
    counts = win_loss_counts(view)
    table = counts.assign(win_rate=win_rate(counts), loss_rate=loss_rate(counts),
                          win_rate_adjusted=adjusted_win_rate(counts))
    table = table.join(bootstrap_win_rates(view, rounds, seed, level))
    table["position_consistency"] = position_consistency(view)
    table["first_position_win_share"] = first_position_win_share(view)
    return table.sort_values(["win_rate_adjusted", "wins"], ascending=False, kind="stable")


def pairwise_by_category(games: pd.DataFrame, baseline: str | None = None, rounds: int = ROUNDS, seed: int = 0,
                         level: float = LEVEL) -> pd.DataFrame:
    """`pairwise_summary` within each category; index (category, model). Needs the `category` column
    (from the questions file or the judgments)."""
    if games["category"].isna().any():
        missing = sorted({str(q) for q in games.loc[games["category"].isna(), "question_id"]})
        raise ValueError(f"no category for question(s) {missing[:10]}: pass the questions file")
    parts = {cat: pairwise_summary(g, baseline, rounds, seed, level)
             for cat, g in games.groupby("category", sort=True)
             if baseline is None or ((g["model_1"] == baseline) | (g["model_2"] == baseline)).any()}
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, names=["category", "model"])


def pair_orientation(games: pd.DataFrame, baseline: str | None = None) -> list[tuple[str, str]]:
    """The pairs of models that played, each as (model_1, model_2) the way the file first shows it, except that a
    baseline is always model_2."""
    seen: dict[frozenset[str], tuple[str, str]] = {}
    for m1, m2 in zip(games["model_1"], games["model_2"]):
        key = frozenset((m1, m2))
        if key not in seen:
            seen[key] = (m2, m1) if m1 == baseline else (m1, m2)
    return list(seen.values())


def pairwise_by_pair(games: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """One row per pair of models (see `pair_orientation`), index (model_1, model_2): model_1's wins, ties and
    losses against model_2, errors, n = wins + ties + losses, and win_rate, tie_rate, loss_rate and
    win_rate_adjusted over n. With a baseline, only the pairs that include it."""
    view = model_view(games)
    rows = {}
    for m1, m2 in pair_orientation(games, baseline):
        if baseline is not None and baseline not in (m1, m2):
            continue
        counts = win_loss_counts(view[(view["model"] == m1) & (view["opponent"] == m2)]).reindex([m1], fill_value=0)
        c = counts.iloc[0]
        n = int(c["n"])
        rate = (lambda k: float(k) / n) if n else (lambda k: np.nan)
        rows[(m1, m2)] = {"wins": int(c["wins"]), "ties": int(c["ties"]), "losses": int(c["losses"]),
                          "errors": int(c["errors"]), "n": n, "win_rate": rate(c["wins"]), "tie_rate": rate(c["ties"]),
                          "loss_rate": rate(c["losses"]), "win_rate_adjusted": rate(c["wins"] + 0.5 * c["ties"])}
    columns = ["wins", "ties", "losses", "errors", "n", "win_rate", "tie_rate", "loss_rate", "win_rate_adjusted"]
    index = pd.MultiIndex.from_tuples(list(rows), names=["model_1", "model_2"]) if rows else pd.MultiIndex.from_tuples(
        [], names=["model_1", "model_2"])
    return pd.DataFrame(list(rows.values()), index=index, columns=columns)


def judge_diagnostics(games: pd.DataFrame) -> pd.DataFrame:
    """Per judge model: games, errors, error_rate, ties (share of non-error games), position_consistency and
    first_position_win_share over all its games."""
    out = {}
    for judge, g in games.groupby("judge_model", sort=True):
        ok = g[g["outcome"] != "error"]
        first, named = _first_position(ok)
        decisive = int(named.sum())
        out[judge] = {
            "games": len(g), "errors": int((g["outcome"] == "error").sum()),
            "error_rate": float((g["outcome"] == "error").mean()) if len(g) else np.nan,
            "ties": float((ok["outcome"] == "tie").mean()) if len(ok) else np.nan,
            "position_consistency": float((ok["g1_winner"] == ok["g2_winner"]).mean()) if len(ok) else np.nan,
            "first_position_win_share": float(first.sum() / decisive) if decisive else np.nan,
        }
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame.index.name = "judge_model"
    return frame


# ---- single grading -----------------------------------------------------------------------------------------


def mean_scores(scores: pd.DataFrame, by: Sequence[str] = ("model",), rounds: int = ROUNDS, seed: int = 0,
                level: float = LEVEL) -> pd.DataFrame:
    """Per group (model; or model and category, or model and turn): mean score, its bootstrap interval over
    questions, n graded and errors (excluded from the mean). Sorted by mean within the first key."""
    by = list(by)
    if "category" in by and scores["category"].isna().any():
        raise ValueError("no category for some questions: pass the questions file")
    rng = np.random.default_rng(seed)
    rows = {}
    for key, g in scores.groupby(by, sort=True):
        ok = g[~g["error"]]
        row = {"mean": ok["score"].mean() if len(ok) else np.nan, "ci_low": np.nan, "ci_high": np.nan,
               "n": len(ok), "errors": int(g["error"].sum())}
        if len(ok) and rounds > 0:
            per_q = ok.groupby(ok["question_id"].astype(str))["score"].agg(["sum", "count"])
            weights = _resample_weights(len(per_q), rounds, rng)
            means = (weights @ per_q["sum"].to_numpy()) / (weights @ per_q["count"].to_numpy())
            (lo,), (hi,) = _interval(means[None, :], level)
            row["ci_low"], row["ci_high"] = lo, hi
        rows[key if isinstance(key, tuple) else (key,)] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    if frame.empty:
        return pd.DataFrame(columns=["mean", "ci_low", "ci_high", "n", "errors"])
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=by) if len(by) > 1 else pd.Index(
        [k[0] for k in frame.index], name=by[0])
    frame[["n", "errors"]] = frame[["n", "errors"]].astype(int)
    if len(by) == 1:
        return frame.sort_values("mean", ascending=False, kind="stable")
    return frame


# ---- Bradley-Terry ratings ----------------------------------------------------------------------------------


def win_matrix(games: pd.DataFrame, models: Sequence[str]) -> np.ndarray:
    """wins[i, j]: games model i won against model j, a tie counting half to each; errors left out."""
    return _question_win_tensor(games, models)[1].sum(axis=0)


def _question_win_tensor(games: pd.DataFrame, models: Sequence[str]) -> tuple[pd.Index, np.ndarray]:
    ok = games[games["outcome"] != "error"]
    questions = pd.Index(ok["question_id"].astype(str).unique())
    index = pd.Index(models)
    tensor = np.zeros((len(questions), len(models), len(models)))
    q = questions.get_indexer(ok["question_id"].astype(str))
    m1, m2 = index.get_indexer(ok["model_1"]), index.get_indexer(ok["model_2"])
    if (m1 < 0).any() or (m2 < 0).any():
        raise ValueError("a game has a model outside `models`")
    out = ok["outcome"].to_numpy()
    np.add.at(tensor, (q, m1, m2), np.where(out == "model_1", 1.0, np.where(out == "tie", 0.5, 0.0)))
    np.add.at(tensor, (q, m2, m1), np.where(out == "model_2", 1.0, np.where(out == "tie", 0.5, 0.0)))
    return questions, tensor


def bradley_terry(wins: np.ndarray, l2: float = 0.01, tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
    """Maximum-likelihood Bradley-Terry strengths (natural log-odds): P(i beats j) = sigmoid(b_i - b_j).

    Fitted by Newton's method with step halving. `l2` is a weak Gaussian prior (standard deviation
    1/sqrt(l2) log-odds) that keeps the strengths finite when a model wins or loses every game and makes
    them unique (centred near 0); it changes ratings from real data negligibly.
    """
    m = wins.shape[0]
    n = wins + wins.T
    beta = np.zeros(m)

    def objective(b: np.ndarray) -> float:
        d = b[:, None] - b[None, :]
        return float(-(wins * np.logaddexp(0.0, -d)).sum() - 0.5 * l2 * b @ b)

    value = objective(beta)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(beta[:, None] - beta[None, :])))
        grad = (wins - n * p).sum(axis=1) - l2 * beta
        w = n * p * (1.0 - p)
        hessian = w - np.diag(w.sum(axis=1) + l2)
        step = np.linalg.solve(hessian, grad)
        scale = 1.0
        while True:
            candidate = beta - scale * step
            new_value = objective(candidate)
            if new_value >= value - 1e-12 or scale < 1e-8:
                break
            scale /= 2
        beta, value = candidate, new_value
        if np.max(np.abs(scale * step)) < tol:
            break
    return beta


def elo_scale(strengths: np.ndarray, models: Sequence[str], anchor: str | None = None, anchor_rating: float = 1000.0,
              scale: float = 400.0, base: float = 10.0) -> pd.Series:
    """Strengths on Chatbot Arena's Elo scale: a gap of `scale` points means odds of `base` to 1. The anchor
    model gets `anchor_rating`; without one the mean rating is `anchor_rating`."""
    points = np.asarray(strengths) * scale / np.log(base)
    if anchor is not None:
        if anchor not in models:
            raise ValueError(f"anchor {anchor!r} is not among the rated models {sorted(models)}")
        points = points - points[list(models).index(anchor)]
    else:
        points = points - points.mean()
    return pd.Series(points + anchor_rating, index=pd.Index(list(models), name="model"), name="rating")


def bt_ratings(games: pd.DataFrame, anchor: str | None = None, anchor_rating: float = 1000.0, scale: float = 400.0,
               base: float = 10.0, rounds: int = ROUNDS, seed: int = 0, level: float = LEVEL,
               l2: float = 0.01) -> pd.DataFrame:
    """Bradley-Terry ratings on the Elo scale from (all-pairs) games, with bootstrap intervals over questions:
    rating, ci_low, ci_high, games, wins, losses, ties (errors left out); sorted by rating."""
    models = sorted(set(games["model_1"]) | set(games["model_2"]))
    _, tensor = _question_win_tensor(games, models)
    wins = tensor.sum(axis=0)
    table = elo_scale(bradley_terry(wins, l2), models, anchor, anchor_rating, scale, base).to_frame()
    if rounds > 0 and len(tensor):
        weights = _resample_weights(len(tensor), rounds, np.random.default_rng(seed))
        samples = np.stack([
            elo_scale(bradley_terry(np.einsum("q,qij->ij", w, tensor), l2), models, anchor, anchor_rating,
                      scale, base).to_numpy()
            for w in weights], axis=1)
        table["ci_low"], table["ci_high"] = _interval(samples, level)
    else:
        table["ci_low"] = table["ci_high"] = np.nan
    view = model_view(games)
    counts = win_loss_counts(view).reindex(models, fill_value=0)
    table["games"] = counts["n"]
    table["wins"], table["losses"], table["ties"] = counts["wins"], counts["losses"], counts["ties"]
    return table.sort_values("rating", ascending=False, kind="stable")
