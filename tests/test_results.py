"""Aggregation on hand-computed cases (errors, ties, swapped orders, re-judged lines), intervals, ratings, CLI."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jinstruct.judge import metrics as results
from jinstruct.formats.fastchat import PairwiseJudgment, SingleJudgment, load_pairwise_judgments, load_questions, load_single_judgments
from jinstruct.judge.cli import register_cli

DATA = Path(__file__).parent / "data" / "fastchat"
PAIR, SINGLE, QUESTIONS = DATA / "gpt-4_pair.jsonl", DATA / "gpt-4_single.jsonl", DATA / "question.jsonl"


@pytest.fixture(scope="module")
def games() -> pd.DataFrame:
    cats = results.categories_of(load_questions(QUESTIONS))
    return results.pairwise_frame(load_pairwise_judgments(PAIR), cats)


def game(q, m1, m2, g1, g2, turn=1, judge="j") -> PairwiseJudgment:
    return PairwiseJudgment(question_id=q, model_1=m1, model_2=m2, g1_winner=g1, g2_winner=g2, judge=(judge, "p"),
                            turn=turn)


def test_game_outcome_follows_fastchat():
    assert results.game_outcome("model_1", "model_1") == "model_1"
    assert results.game_outcome("model_2", "model_2") == "model_2"
    assert results.game_outcome("model_1", "model_2") == "tie"  # the orders disagree
    assert results.game_outcome("tie", "model_1") == "tie"
    assert results.game_outcome("model_2", "tie") == "tie"
    assert results.game_outcome("tie", "tie") == "tie"
    assert results.game_outcome("error", "model_1") == "error"
    assert results.game_outcome("model_1", "error") == "error"


def test_rejudged_game_keeps_the_last_line(games):
    q4 = games[(games["question_id"] == 4)]
    assert len(q4) == 1 and q4["outcome"].item() == "model_2"
    assert len(games) == 10  # 11 lines, one game judged twice


def test_against_the_baseline_by_hand(games):
    # tuned vs base: q1 win; q1 turn 2 tie (orders disagree); q2 tie (disagree); q3 tie (game 1 tie);
    # q4 loss (the re-judged line); q5 error; q6 win (tuned is model_2 there). other vs base: q1 loss, q2 win.
    t = results.pairwise_summary(games, baseline="base", rounds=200)
    assert list(t.index) == ["tuned", "other"]  # sorted by adjusted win rate; the baseline has no row
    tuned = t.loc["tuned"]
    assert (tuned.wins, tuned.losses, tuned.ties, tuned.errors, tuned.n) == (2, 1, 3, 1, 6)
    assert tuned.win_rate == pytest.approx(2 / 6)
    assert tuned.loss_rate == pytest.approx(1 / 6)
    assert tuned.win_rate_adjusted == pytest.approx(3.5 / 6)
    # consistent orders: q1, q4, q6 of 6 non-error games
    assert tuned.position_consistency == pytest.approx(0.5)
    # single-order verdicts naming a winner: q1 (first, second), q1t2 (first), q2 (first, first), q3 (second),
    # q4 (second, first), q6 (second, first): 6 of 10 went to the answer shown first
    assert tuned.first_position_win_share == pytest.approx(0.6)
    other = t.loc["other"]
    assert (other.wins, other.losses, other.ties, other.errors, other.n) == (1, 1, 0, 0, 2)
    assert other.win_rate_adjusted == 0.5


def test_all_games_without_a_baseline(games):
    t = results.pairwise_summary(games, rounds=0)
    assert set(t.index) == {"tuned", "base", "other"}
    assert tuple(t.loc["tuned", ["wins", "losses", "ties", "errors", "n"]]) == (3, 1, 3, 1, 7)  # + beat other on q1
    assert tuple(t.loc["base", ["wins", "losses", "ties", "errors", "n"]]) == (2, 3, 3, 1, 8)
    assert tuple(t.loc["other", ["wins", "losses", "ties", "errors", "n"]]) == (1, 2, 0, 0, 3)
    assert t.loc["base", "win_rate_adjusted"] == pytest.approx((2 + 1.5) / 8)
    assert t["adjusted_ci_low"].isna().all()  # rounds=0: no intervals


def test_per_category_by_hand(games):
    t = results.pairwise_by_category(games, baseline="base", rounds=100)
    w = t.loc[("writing", "tuned")]
    assert (w.wins, w.losses, w.ties, w.n) == (1, 0, 2, 3) and w.win_rate_adjusted == pytest.approx(2 / 3)
    cm = t.loc[("coding-math", "tuned")]
    assert (cm.wins, cm.losses, cm.ties, cm.n) == (0, 1, 1, 2) and cm.win_rate_adjusted == pytest.approx(0.25)
    k = t.loc[("knowledge", "tuned")]
    assert (k.wins, k.errors, k.n) == (1, 1, 1) and k.win_rate == 1.0
    assert t.loc[("writing", "other"), "win_rate_adjusted"] == 0.5
    assert ("coding-math", "other") not in t.index


def test_category_breakdown_needs_categories():
    frame = results.pairwise_frame(load_pairwise_judgments(PAIR))
    with pytest.raises(ValueError, match="pass the questions file"):
        results.pairwise_by_category(frame, "base")


def test_unknown_baseline_is_an_error(games):
    with pytest.raises(ValueError, match="baseline 'gpt-5' is in no game"):
        results.pairwise_summary(games, baseline="gpt-5")


def test_judge_diagnostics_by_hand(games):
    d = results.judge_diagnostics(games).loc["gpt-4"]
    assert (d.games, d.errors) == (10, 1)
    assert d.error_rate == pytest.approx(0.1)
    assert d.ties == pytest.approx(3 / 9)  # q1t2, q2, q3 among the 9 non-error games
    assert d.position_consistency == pytest.approx(6 / 9)
    # tuned/base games give 6 of 10 (see above); other/base q1: 1 of 2, q2: 1 of 2; tuned/other q1: 1 of 2
    assert d.first_position_win_share == pytest.approx(9 / 16)


def test_errors_never_count_as_wins_or_losses():
    frame = results.pairwise_frame([game(1, "a", "b", "error", "error"), game(2, "a", "b", "model_1", "error"),
                                    game(3, "a", "b", "error", "model_2")])
    t = results.pairwise_summary(frame, baseline="b", rounds=50)
    assert tuple(t.loc["a", ["wins", "losses", "ties", "errors", "n"]]) == (0, 0, 0, 3, 0)
    assert math.isnan(t.loc["a", "win_rate"]) and math.isnan(t.loc["a", "adjusted_ci_low"])


def test_bootstrap_intervals_are_seeded_and_bracket_the_estimate(games):
    a = results.pairwise_summary(games, baseline="base", rounds=300, seed=7)
    b = results.pairwise_summary(games, baseline="base", rounds=300, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(results.pairwise_summary(games, baseline="base", rounds=300, seed=8))
    for _, row in a.iterrows():
        assert row.adjusted_ci_low <= row.win_rate_adjusted <= row.adjusted_ci_high
        assert 0 <= row.adjusted_ci_low and row.adjusted_ci_high <= 1


def test_bootstrap_with_one_question_or_all_wins_has_no_spread():
    one = results.pairwise_frame([game(1, "a", "b", "model_1", "model_1"), game(1, "a", "b", "tie", "tie", turn=2)])
    t = results.pairwise_summary(one, baseline="b", rounds=100)
    assert (t.loc["a", "adjusted_ci_low"], t.loc["a", "adjusted_ci_high"]) == (0.75, 0.75)
    wins = results.pairwise_frame([game(q, "a", "b", "model_1", "model_1") for q in range(20)])
    t = results.pairwise_summary(wins, baseline="b", rounds=100)
    assert (t.loc["a", "win_rate_ci_low"], t.loc["a", "win_rate_ci_high"]) == (1.0, 1.0)


def test_bootstrap_matches_a_plain_resampling_loop(games):
    """The vectorised bootstrap equals recomputing the table on each resample of questions."""
    view = results.model_view(games, "base")
    rounds, seed = 60, 3
    ci = results.bootstrap_win_rates(view, rounds=rounds, seed=seed)
    ok = view[view["result"] != "error"]
    questions = list(pd.Index(ok["question_id"].astype(str).unique()))
    weights = np.random.default_rng(seed).multinomial(len(questions), [1 / len(questions)] * len(questions), size=rounds)
    for model in ["tuned", "other"]:
        samples = []
        for w in weights:
            drawn = [q for q, k in zip(questions, w) for _ in range(k)]
            rows = pd.concat([ok[(ok["model"] == model) & (ok["question_id"].astype(str) == q)] for q in drawn])
            counts = rows["result"].value_counts()
            n = len(rows)
            samples.append((counts.get("win", 0) + 0.5 * counts.get("tie", 0)) / n if n else np.nan)
        lo, hi = np.nanpercentile(samples, [2.5, 97.5])
        assert ci.loc[model, "adjusted_ci_low"] == pytest.approx(lo)
        assert ci.loc[model, "adjusted_ci_high"] == pytest.approx(hi)


def test_single_scores_by_hand():
    cats = results.categories_of(load_questions(QUESTIONS))
    scores = results.single_frame(load_single_judgments(SINGLE), cats)
    t = results.mean_scores(scores, rounds=200)
    assert list(t.index) == ["tuned", "base"]
    assert t.loc["tuned", "mean"] == pytest.approx((8 + 5 + 6 + 7) / 4)  # the -1 is an error, not a score
    assert (t.loc["tuned", "n"], t.loc["tuned", "errors"]) == (4, 1)
    assert t.loc["base", "mean"] == pytest.approx((4 + 4.5 + 2 + 3) / 4)
    for m in t.index:
        assert t.loc[m, "ci_low"] <= t.loc[m, "mean"] <= t.loc[m, "ci_high"]
    by_cat = results.mean_scores(scores, ["model", "category"], rounds=50)
    assert by_cat.loc[("tuned", "writing"), "mean"] == pytest.approx((8 + 5 + 6) / 3)
    assert tuple(by_cat.loc[("tuned", "coding-math"), ["mean", "n", "errors"]]) == (7, 1, 1)
    by_turn = results.mean_scores(scores, ["model", "turn"], rounds=0)
    assert by_turn.loc[("tuned", 2), "mean"] == 5 and math.isnan(by_turn.loc[("tuned", 2), "ci_low"])


def test_single_bootstrap_resamples_questions_not_lines():
    # one question graded 2 and 8 on its two turns, another 5: resamples of questions give means 5, 5 or 3.5
    js = [SingleJudgment(question_id=1, model="m", judge=("j", "p"), score=2, turn=1),
          SingleJudgment(question_id=1, model="m", judge=("j", "p"), score=8, turn=2),
          SingleJudgment(question_id=2, model="m", judge=("j", "p"), score=5)]
    t = results.mean_scores(results.single_frame(js), rounds=400)
    assert t.loc["m", "mean"] == 5
    assert (t.loc["m", "ci_low"], t.loc["m", "ci_high"]) == (5, 5)


def test_bradley_terry_two_models_by_hand():
    # a beats b 3 times in 4: P = 3/4, so b_a - b_b = ln 3, i.e. 400 log10(3) = 190.85 Elo points
    wins = np.array([[0.0, 3.0], [1.0, 0.0]])
    beta = results.bradley_terry(wins, l2=1e-12)
    assert beta[0] - beta[1] == pytest.approx(math.log(3), abs=1e-6)
    r = results.elo_scale(beta, ["a", "b"], anchor="b", anchor_rating=1000)
    assert r["a"] == pytest.approx(1000 + 400 * math.log10(3), abs=1e-3) and r["b"] == 1000


def test_bradley_terry_ties_count_half_and_gradient_vanishes():
    frame = results.pairwise_frame([game(1, "a", "b", "model_1", "model_1"), game(2, "a", "b", "model_1", "model_1"),
                                    game(3, "a", "b", "tie", "tie"), game(4, "b", "a", "model_2", "model_1"),
                                    game(5, "a", "c", "model_2", "model_2"), game(6, "b", "c", "model_1", "model_1")])
    wins = results.win_matrix(frame, ["a", "b", "c"])
    # a-b: a wins q1, q2; ties q3 and q4 (orders disagree) -> a 3, b 1. a-c: c wins. b-c: b wins.
    assert wins.tolist() == [[0, 3, 0], [1, 0, 1], [1, 0, 0]]
    beta = results.bradley_terry(wins, l2=0.01)
    p = 1 / (1 + np.exp(-(beta[:, None] - beta[None, :])))
    grad = (wins - (wins + wins.T) * p).sum(axis=1) - 0.01 * beta
    assert np.abs(grad).max() < 1e-8


def test_bradley_terry_stays_finite_when_a_model_wins_everything():
    wins = np.array([[0.0, 80.0], [0.0, 0.0]])
    beta = results.bradley_terry(wins)
    assert np.isfinite(beta).all() and beta[0] > beta[1] + 5


def test_ratings_table(games):
    t = results.bt_ratings(games, anchor="base", rounds=100, seed=1)
    assert t.loc["base", "rating"] == 1000 and (t.loc["base", "ci_low"], t.loc["base", "ci_high"]) == (1000, 1000)
    assert list(t.index) == ["tuned", "base", "other"]
    assert tuple(t.loc["tuned", ["games", "wins", "losses", "ties"]]) == (7, 3, 1, 3)
    for m in t.index:
        assert t.loc[m, "ci_low"] <= t.loc[m, "rating"] <= t.loc[m, "ci_high"]
    centred = results.bt_ratings(games, rounds=0)
    assert centred["rating"].mean() == pytest.approx(1000)
    with pytest.raises(ValueError, match="anchor 'x'"):
        results.bt_ratings(games, anchor="x", rounds=0)


# ---- CLI ----------------------------------------------------------------------------------------------------


def cli(*argv: str) -> int:
    p = argparse.ArgumentParser(prog="jinstruct")
    register_cli(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(list(argv))
    return args.func(args)


def test_cli_pairwise_json(capsys):
    assert cli("results", "pairwise", str(PAIR), "--baseline", "base", "--questions", str(QUESTIONS),
               "--rounds", "100", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["judge"], out["baseline"], out["games"]) == ("gpt-4", "base", 10)
    tuned = next(r for r in out["overall"] if r["model"] == "tuned")
    assert (tuned["wins"], tuned["losses"], tuned["ties"], tuned["errors"], tuned["n"]) == (2, 1, 3, 1, 6)
    assert tuned["win_rate_adjusted"] == pytest.approx(3.5 / 6)
    assert {(r["category"], r["model"]) for r in out["by_category"]} == {
        ("coding-math", "tuned"), ("knowledge", "tuned"), ("writing", "tuned"), ("writing", "other")}
    assert out["diagnostics"][0]["position_consistency"] == pytest.approx(6 / 9)


def test_cli_pairwise_table_and_published_file(capsys):
    assert cli("results", "pairwise", str(DATA / "pairwise_calm_davinci.jsonl"), "--baseline", "davinci",
               "--rounds", "50") == 0
    captured = capsys.readouterr()
    assert "judge: gpt-4  baseline: davinci" in captured.out
    line = next(x for x in captured.out.splitlines() if x.startswith("calm"))
    assert line.split()[:9] == ["calm", "1", "0", "1", "0", "2", "0.500", "0.000", "0.750"]
    assert "pass --questions" in captured.err


def test_cli_single_and_ratings(capsys):
    assert cli("results", "single", str(SINGLE), "--questions", str(QUESTIONS), "--json", "--rounds", "50") == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in out["overall"]] == ["tuned", "base"]
    assert out["overall"][0]["mean"] == 6.5 and out["overall"][0]["errors"] == 1
    assert {"overall", "by_turn", "by_category"} <= set(out)
    assert cli("results", "ratings", str(PAIR), "--anchor", "base", "--rounds", "20") == 0
    text = capsys.readouterr().out
    assert "base  1000.000 1000.000 1000.000" in text


def test_cli_errors_are_one_line_with_exit_code_1(tmp_path, capsys):
    assert cli("results", "pairwise", str(PAIR), "--baseline", "nobody") == 1
    assert "baseline 'nobody' is in no game" in capsys.readouterr().err
    bad = tmp_path / "bad_pair.jsonl"
    bad.write_text('{"question_id": 1}\n', encoding="utf-8")
    assert cli("results", "pairwise", str(bad)) == 1
    assert "bad_pair.jsonl, line 1: field 'model_1'" in capsys.readouterr().err
    two = tmp_path / "two_judges.jsonl"
    lines = PAIR.read_text(encoding="utf-8").splitlines()
    two.write_text(lines[0] + "\n" + lines[0].replace('"gpt-4"', '"claude"') + "\n", encoding="utf-8")
    assert cli("results", "pairwise", str(two)) == 1
    assert "several judges ['claude', 'gpt-4']" in capsys.readouterr().err
    assert cli("results", "pairwise", str(two), "--judge", "claude", "--rounds", "0") == 0


# ---- semantics and per-pair tables on the all-pairs file (ja-vicuna's v2 layout) ------------------------------
#
# tests/data/ja_vicuna/model_judgment/gpt-4_pair.jsonl, 14 lines (model_1 vs model_2, question: g1 / g2):
#   tuned-base    q1 m1/m1  q2 m1/m2  q3 tie/error  q4 m2/m2
#   base-davinci  q1 m1/m1  q2 error/error  q3 m2/m2  q4 m1/m1  q4 m1/m1 (the same game again)
#   tuned-davinci q1 m1/m1  q2 m1/error  (davinci-tuned) q3 m2/m2  q4 tie/tie  q4 m2/m2 (re-judged)
# fastchat: errors left out, a repeated game counts once (its last line): 12 games.
#   tuned-base W1 T1 L1 E1; base-davinci W2 T0 L1 E1; tuned-davinci W2 T0 L1 E1 (q4: the last line, a loss)
# ja-vicuna-2023: every line; an error is a tie, error/error is a win for model_2: 14 games.
#   tuned-base W1 T2 L1; base-davinci W3 T0 L2 (q2 goes to davinci); tuned-davinci W2 T2 L1 (q4 tie and loss)

ALL_PAIRS = Path(__file__).parent / "data" / "ja_vicuna" / "model_judgment" / "gpt-4_pair.jsonl"
JV_QUESTIONS = Path(__file__).parent / "data" / "ja_vicuna" / "question.jsonl"


def test_game_outcome_of_the_2023_tables():
    from jinstruct.judge.verdicts import game_outcome_2023

    assert game_outcome_2023("model_1", "model_1") == "model_1"
    assert game_outcome_2023("model_2", "model_2") == "model_2"
    assert game_outcome_2023("model_1", "model_2") == "tie"
    assert game_outcome_2023("tie", "error") == "tie"  # FastChat: an error, left out
    assert game_outcome_2023("model_1", "error") == "tie"
    assert game_outcome_2023("error", "error") == "model_2"  # the 2023 code's else-branch


def _counts(table: pd.DataFrame) -> dict:
    return {k: tuple(int(table.loc[k, c]) for c in ("wins", "ties", "losses", "errors", "n")) for k in table.index}


def test_by_pair_under_both_semantics_by_hand():
    judgments = load_pairwise_judgments(ALL_PAIRS)
    assert len(judgments) == 14 and judgments[0].judge == ("gpt-4", "pair")
    fast = results.pairwise_frame(judgments)
    old = results.pairwise_frame(judgments, semantics="ja-vicuna-2023")
    assert (len(fast), len(old)) == (12, 14)
    assert _counts(results.pairwise_by_pair(fast)) == {
        ("tuned", "base"): (1, 1, 1, 1, 3), ("base", "davinci"): (2, 0, 1, 1, 3), ("tuned", "davinci"): (2, 0, 1, 1, 3)}
    by_pair = results.pairwise_by_pair(old)
    assert _counts(by_pair) == {
        ("tuned", "base"): (1, 2, 1, 0, 4), ("base", "davinci"): (3, 0, 2, 0, 5), ("tuned", "davinci"): (2, 2, 1, 0, 5)}
    row = by_pair.loc[("tuned", "davinci")]
    assert (row.win_rate, row.tie_rate, row.loss_rate, row.win_rate_adjusted) == pytest.approx((2 / 5, 2 / 5, 1 / 5, 3 / 5))
    # with a baseline: its pairs only, the baseline as model_2
    assert list(results.pairwise_by_pair(old, "tuned").index) == [("base", "tuned"), ("davinci", "tuned")]
    assert _counts(results.pairwise_by_pair(old, "tuned"))[("davinci", "tuned")] == (1, 2, 2, 0, 5)


def test_overall_table_under_both_semantics_by_hand():
    judgments = load_pairwise_judgments(ALL_PAIRS)
    fast = results.pairwise_summary(results.pairwise_frame(judgments), rounds=0)
    assert _counts(fast) == {"tuned": (3, 1, 2, 2, 6), "base": (3, 1, 2, 2, 6), "davinci": (2, 0, 4, 2, 6)}
    old = results.pairwise_summary(results.pairwise_frame(judgments, semantics="ja-vicuna-2023"), rounds=0)
    assert _counts(old) == {"tuned": (3, 4, 2, 0, 9), "base": (4, 2, 3, 0, 9), "davinci": (3, 2, 5, 0, 10)}
    assert old.loc["tuned", "win_rate_adjusted"] == pytest.approx(5 / 9)
    # against a baseline, as the published tables are read
    vs = results.pairwise_summary(results.pairwise_frame(judgments, semantics="ja-vicuna-2023"), "davinci", rounds=0)
    assert _counts(vs) == {"tuned": (2, 2, 1, 0, 5), "base": (3, 0, 2, 0, 5)}
    with pytest.raises(ValueError, match="unknown semantics"):
        results.pairwise_frame(judgments, semantics="2022")  # type: ignore[arg-type]


def test_single_scores_under_the_2023_semantics():
    def grade(q, score, model="m"):
        return SingleJudgment(question_id=q, model=model, judge=("j", "single"), score=score)

    lines = [grade(1, 8), grade(2, -1), grade(3, 6), grade(3, 4)]  # q2 has no rating; q3 graded twice
    fast = results.mean_scores(results.single_frame(lines), rounds=0)
    assert (fast.loc["m", "mean"], fast.loc["m", "n"], fast.loc["m", "errors"]) == (6.0, 2, 1)  # (8 + 4) / 2
    old = results.mean_scores(results.single_frame(lines, semantics="ja-vicuna-2023"), rounds=0)
    assert (old.loc["m", "mean"], old.loc["m", "n"], old.loc["m", "errors"]) == (4.25, 4, 0)  # (8 - 1 + 6 + 4) / 4


def test_cli_semantics_by_pair_and_json(capsys):
    assert cli("results", "pairwise", str(ALL_PAIRS), "--semantics", "ja-vicuna-2023", "--by-pair", "--json",
               "--questions", str(JV_QUESTIONS), "--rounds", "20") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["semantics"], out["games"]) == ("ja-vicuna-2023", 14)
    pairs = {(r["model_1"], r["model_2"]): r for r in out["by_pair"]}
    assert (pairs[("base", "davinci")]["wins"], pairs[("base", "davinci")]["losses"]) == (3, 2)
    assert pairs[("tuned", "base")]["tie_rate"] == pytest.approx(0.5)
    assert cli("results", "pairwise", str(ALL_PAIRS), "--by-pair", "--rounds", "0") == 0
    text = capsys.readouterr().out
    assert "semantics: fastchat" in text and "## by_pair" in text
    line = next(x for x in text.splitlines() if x.startswith("base") and "davinci" in x)
    assert line.split()[:7] == ["base", "davinci", "2", "0", "1", "1", "3"]
