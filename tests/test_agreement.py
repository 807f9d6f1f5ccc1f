"""Stage 07: every agreement statistic on hand-built votes whose values are worked out by hand below, FastChat's
compute_agreement semantics (ties, reversed model order, several annotators), the sampling, and every label source
(Label Studio, the CSV sheet, FastChat's human format, the notebook labeler) with its checks."""

from __future__ import annotations

import csv
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from jinstruct.__main__ import main
from jinstruct.agreement import label_studio, metrics, sheet
from jinstruct.agreement.demo import DEMO_FILE, tiny_demo_labels
from jinstruct.agreement.human_format import HumanJudgment, from_labels, load_human_judgments, write_human_judgments
from jinstruct.agreement.labeler import Labeler, LabelSession
from jinstruct.agreement.labels import LabelError, read_label_file
from jinstruct.agreement.sampling import Item, item_id, make_items, sample_games
from jinstruct.agreement.stage import collect_votes, export_items, prepare_items, run_agreement
from jinstruct.agreement.votes import Vote, judge_votes, vote_frame
from jinstruct.formats.fastchat import Answer, PairwiseJudgment, Question, write_records
from jinstruct.formats.layout import RunLayout
from jinstruct.io import read_json
from jinstruct.paths import resolve_path
from jinstruct.run.schema import AgreementSection

HERE = Path(__file__).parent
FIXTURES = HERE / "data" / "agreement"

# ---- the hand-built case ------------------------------------------------------------------------------------------
# Two models, "base" and "tuned" (by name: model_a = base, model_b = tuned). Six questions, turn 1. Votes in that
# order (A: base wins, B: tuned wins, T: tie):
#
#   question  category  judge  h1  h2
#   1         writing   B      B   B
#   2         writing   B      B   A
#   3         writing   A      A   A
#   4         math      T      T   B      (the judge's two orders disagree: a tie)
#   5         math      B      T   T      (h2 writes "tie (bothbad)")
#   6         math      A      B   A
#
# judge-human pairs (12): agree on q1 x2, q2 x1, q3 x2, q4 x1, q6 x1 = 7          -> with ties 7/12
#   without ties: drop q4 (judge T) and q5 (humans T): 8 pairs, 6 agree             -> 6/8 = 0.75
# Cohen's kappa: judge votes over the 12 pairs A 4, B 6, T 2; human votes A 4, B 5, T 3;
#   p_o = 7/12, p_e = (4*4 + 6*5 + 2*3) / 144 = 52/144 = 13/36, kappa = (21/36 - 13/36) / (23/36) = 8/23
# human-human pairs (6): agree on q1, q3, q5 -> 3/6; without ties (drop q4, q5): q1, q3 of 4 -> 2/4
# Krippendorff's alpha, humans: coincidences o_AA 2, o_BB 2, o_TT 2, o_AB = o_BA 2, o_BT = o_TB 1; n_A 4, n_B 5, n_T 3
#   (n = 12); D_o = 6/12; D_e = 2 (4*5 + 4*3 + 5*3) / (12*11) = 94/132; alpha = 1 - 66/94 = 28/94
# alpha, humans + judge (3 votes per game): o_AA 4, o_BB 4, o_TT 2, o_AB = o_BA 2, o_BT = o_TB 2; n_A 6, n_B 8, n_T 4
#   (n = 18); D_o = 8/18; D_e = 2 (6*8 + 6*4 + 8*4) / (18*17) = 208/306; alpha = 1 - (8*306)/(18*208) = 9/26
# per category: writing 5/6 with and without ties; math 2/6 with ties, 1/2 without (only q6's pairs are left)
#   kappa, writing: judge A 2, B 4; humans A 3, B 3; p_e = (2*3 + 4*3)/36 = 1/2; (5/6 - 1/2) / (1/2) = 2/3
#   kappa, math: judge A 2, B 2, T 2; humans A 1, B 2, T 3; p_e = (2 + 4 + 6)/36 = 1/3 = p_o (2/6): kappa 0
# confusion (rows judge A, B, T; columns human A, B, T): [[3, 1, 0], [1, 3, 2], [0, 1, 1]]

JUDGE = "gpt-judge"
CATEGORIES = {str(q): ("writing" if q <= 3 else "math") for q in range(1, 7)}


def pj(qid: int, m1: str, m2: str, g1: str, g2: str, judge: str = JUDGE, turn: int = 1) -> PairwiseJudgment:
    return PairwiseJudgment(question_id=qid, model_1=m1, model_2=m2, g1_winner=g1, g2_winner=g2,
                            judge=(judge, "pair-v2"), turn=turn)


def hand_judgments() -> list[PairwiseJudgment]:
    return [
        pj(1, "tuned", "base", "model_1", "model_1"),  # tuned wins both orders: B
        pj(2, "base", "tuned", "model_2", "model_2"),  # B
        pj(3, "base", "tuned", "model_2", "model_2"),  # judged twice: the last line (below) counts
        pj(3, "tuned", "base", "model_2", "model_2"),  # base: A
        pj(4, "base", "tuned", "model_1", "model_2"),  # the orders disagree: T
        pj(5, "tuned", "base", "model_1", "model_1"),  # B
        pj(6, "tuned", "base", "model_2", "model_2"),  # A
        pj(7, "base", "tuned", "error", "model_1"),  # an error: no judge vote
    ]


def hv(qid: int, a: str, b: str, winner: str, judge: str, turn: int = 1) -> HumanJudgment:
    return HumanJudgment(question_id=qid, model_a=a, model_b=b, winner=winner, judge=judge, turn=turn)


def hand_humans() -> list[HumanJudgment]:
    return [
        hv(1, "base", "tuned", "model_b", "h1"), hv(2, "base", "tuned", "model_b", "h1"),
        hv(3, "base", "tuned", "model_a", "h1"),
        hv(4, "tuned", "base", "tie", "h1"),  # reversed order
        hv(5, "tuned", "base", "tie", "h1"), hv(6, "tuned", "base", "model_a", "h1"),  # tuned (B)
        hv(1, "tuned", "base", "model_a", "h2"),  # B, reversed
        hv(2, "base", "tuned", "model_a", "h2"), hv(3, "tuned", "base", "model_b", "h2"),  # A, reversed
        hv(4, "base", "tuned", "model_b", "h2"), hv(5, "base", "tuned", "tie (bothbad)", "h2"),
        hv(6, "base", "tuned", "model_a", "h2"),
    ]


def hand_votes():
    judge, errors = judge_votes(hand_judgments())
    assert errors == 1
    return vote_frame(judge, [h.vote() for h in hand_humans()], CATEGORIES)


def test_hand_built_agreement_kappa_alpha():
    s = metrics.summarize(hand_votes(), rounds=100, seed=1)
    jh, hh = s["judge_human"], s["human_human"]
    assert (jh["agree"]["with_ties"], jh["n"]["with_ties"]) == (7, 12) and jh["with_ties"] == pytest.approx(7 / 12)
    assert (jh["agree"]["without_ties"], jh["n"]["without_ties"]) == (6, 8) and jh["without_ties"] == 0.75
    assert jh["kappa"] == pytest.approx(8 / 23)
    assert (hh["agree"]["with_ties"], hh["n"]["with_ties"], hh["with_ties"]) == (3, 6, 0.5)
    assert (hh["agree"]["without_ties"], hh["n"]["without_ties"], hh["without_ties"]) == (2, 4, 0.5)
    assert hh["alpha"] == pytest.approx(28 / 94)
    assert s["alpha"] == pytest.approx(9 / 26)
    assert s["confusion"]["matrix"] == [[3, 1, 0], [1, 3, 2], [0, 1, 1]]
    assert s["per_category"]["writing"] == {"with_ties": pytest.approx(5 / 6), "agree_with_ties": 5, "n_with_ties": 6,
                                           "without_ties": pytest.approx(5 / 6), "agree_without_ties": 5,
                                           "n_without_ties": 6, "kappa": pytest.approx(2 / 3), "questions": 3}
    assert s["per_category"]["math"]["with_ties"] == pytest.approx(2 / 6)
    assert (s["per_category"]["math"]["agree_without_ties"], s["per_category"]["math"]["n_without_ties"]) == (1, 2)
    assert s["per_category"]["math"]["kappa"] == 0.0
    assert all(type(v) is int for c in s["per_category"].values() for k, v in c.items() if k.startswith(("n_", "agree")))
    assert (s["n_questions"], s["n_games"], s["n_human_votes"], s["annotators"]) == (6, 6, 12, ["h1", "h2"])
    for low, high in [jh["ci"]["with_ties"], jh["ci"]["without_ties"], jh["ci"]["kappa"], hh["ci"]["alpha"], s["alpha_ci"]]:
        assert low <= high
    assert jh["ci"]["with_ties"][0] <= 7 / 12 <= jh["ci"]["with_ties"][1]
    json.dumps(s, allow_nan=False)  # JSON-ready: no NaN


def test_agreement_table_rows():
    table = metrics.agreement_table(metrics.summarize(hand_votes(), rounds=0))
    assert table.loc[("judge-human", "agreement with ties"), "value"] == pytest.approx(7 / 12)
    assert table.loc[("judge-human", "agreement with ties"), "n"] == 12
    assert table.loc[("judge-human", "Cohen's kappa"), "value"] == pytest.approx(8 / 23)
    assert table.loc[("human-human", "Krippendorff's alpha"), "value"] == pytest.approx(28 / 94)
    assert table.loc[("humans + judge", "Krippendorff's alpha"), "value"] == pytest.approx(9 / 26)
    assert table.loc[("humans + judge", "Krippendorff's alpha"), "n"] == 6


def test_kappa_perfect_and_chance():
    # perfect agreement over two classes: kappa 1; agreement exactly at chance (judge always tie): kappa 0
    judge = [Vote(q, 1, "a", "b", w, "j") for q, w in [(1, "model_a"), (2, "model_b"), (3, "model_a")]]
    humans = [Vote(q, 1, "a", "b", w, "h") for q, w in [(1, "model_a"), (2, "model_b"), (3, "model_a")]]
    assert metrics.cohen_kappa(metrics.judge_human_pairs(vote_frame(judge, humans))) == pytest.approx(1.0)
    ties = [Vote(q, 1, "a", "b", "tie", "j") for q in (1, 2, 3)]
    assert metrics.cohen_kappa(metrics.judge_human_pairs(vote_frame(ties, humans))) == 0.0
    assert math.isnan(metrics.cohen_kappa(metrics.judge_human_pairs(vote_frame([], humans))))


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    jh = metrics.judge_human_pairs(hand_votes())
    stat = lambda f, w: metrics.agreement(f, metrics.JH, True, w).ratio  # noqa: E731
    a, b = metrics.bootstrap_interval(jh, stat, 300, seed=3), metrics.bootstrap_interval(jh, stat, 300, seed=3)
    assert a == b and a[0] < 7 / 12 < a[1]
    assert all(math.isnan(x) for x in metrics.bootstrap_interval(jh, stat, 0))


def test_bootstrap_resamples_questions_not_votes():
    # one question with 4 agreeing pairs and one with 4 disagreeing: each resample holds 0, 1 or 2 copies of each,
    # so the agreement of a resample is 0, 1/2 or 1, never a value a vote-level bootstrap would give (e.g. 3/8)
    judge = [Vote(1, 1, "a", "b", "model_a", "j"), Vote(2, 1, "a", "b", "model_a", "j")]
    humans = [Vote(1, 1, "a", "b", "model_a", f"h{i}") for i in range(4)] + \
             [Vote(2, 1, "a", "b", "model_b", f"h{i}") for i in range(4)]
    jh = metrics.judge_human_pairs(vote_frame(judge, humans))
    seen = set()
    metrics.bootstrap_interval(jh, lambda f, w: seen.add(metrics.agreement(f, metrics.JH, True, w).ratio) or 0.0, 100)
    assert seen <= {0.0, 0.5, 1.0} and len(seen) == 3
    weights = metrics.resample_weights(jh["question_id"], 100)
    assert weights.shape == (100, 8) and (weights.sum(axis=1) == 8).all()  # 2 questions of 4 pairs, drawn twice
    assert (weights[:, :4] == weights[:, :1]).all()  # a question's rows go together


def test_weighted_statistics_equal_the_statistics_of_the_repeated_rows():
    votes = hand_votes()
    jh = metrics.judge_human_pairs(votes)
    w = metrics.resample_weights(jh["question_id"], 1, seed=5)[0]
    repeated = jh.loc[jh.index.repeat(w)]
    assert metrics.agreement(jh, metrics.JH, True, w) == metrics.agreement(repeated, metrics.JH)
    assert metrics.agreement(jh, metrics.JH, False, w) == metrics.agreement(repeated, metrics.JH, False)
    assert metrics.cohen_kappa(jh, metrics.JH, w) == pytest.approx(metrics.cohen_kappa(repeated), nan_ok=True)
    counts = metrics.game_counts(votes)
    g = metrics.resample_weights(counts["question_id"], 1, seed=5)[0]
    assert metrics.alpha_of_counts(counts, g) == pytest.approx(
        metrics.alpha_of_counts(counts.loc[counts.index.repeat(g)]), nan_ok=True)


# ---- FastChat semantics -------------------------------------------------------------------------------------------


def test_reversed_model_order_is_the_same_game():
    a = Vote(3, 1, "tuned", "base", "model_a", "x").canonical()
    b = Vote(3, 1, "base", "tuned", "model_b", "y").canonical()
    assert a == b == (("3", 1, "base", "tuned"), "model_b")
    assert Vote(3, 1, "tuned", "base", "tie (bothbad)", "x").canonical()[1] == "tie"
    with pytest.raises(ValueError, match="not model_a, model_b or a tie"):
        Vote(3, 1, "a", "b", "model_c", "x").canonical()


def test_any_tie_equals_any_tie_and_ties_drop_without_ties():
    judge = [Vote(1, 1, "a", "b", "tie", "j")]
    humans = [Vote(1, 1, "a", "b", "tie (bothbad)", "h1"), Vote(1, 1, "b", "a", "tie", "h2")]
    votes = vote_frame(judge, humans)
    jh, hh = metrics.judge_human_pairs(votes), metrics.human_human_pairs(votes)
    assert metrics.agreement(jh, metrics.JH) == metrics.Agreement(2, 2)
    assert metrics.agreement(hh, metrics.HH) == metrics.Agreement(1, 1)
    assert metrics.agreement(jh, metrics.JH, ties=False) == metrics.Agreement(0, 0)
    assert math.isnan(metrics.agreement(jh, metrics.JH, ties=False).ratio)


def test_several_annotators_pairs_and_games_without_a_judge_vote():
    # 3 annotators on game 1 (3 judge-human pairs, 3 human-human pairs); 2 on game 2, which the judge did not vote
    # on: its human pair counts among human-human pairs (FastChat), not among judge-human ones
    judge = [Vote(1, 1, "a", "b", "model_a", "j")]
    humans = [Vote(1, 1, "a", "b", "model_a", "h1"), Vote(1, 1, "b", "a", "model_b", "h2"),
              Vote(1, 1, "a", "b", "model_b", "h3"), Vote(2, 1, "a", "b", "model_b", "h1"),
              Vote(2, 1, "a", "b", "model_b", "h2")]
    votes = vote_frame(judge, humans)
    assert metrics.agreement(metrics.judge_human_pairs(votes), metrics.JH) == metrics.Agreement(2, 3)
    # game 1: (h1,h2) agree, (h1,h3) and (h2,h3) do not; game 2: (h1,h2) agree
    assert metrics.agreement(metrics.human_human_pairs(votes), metrics.HH) == metrics.Agreement(2, 4)


def test_turns_are_separate_games_and_turn_filter():
    judge = [Vote(1, 1, "a", "b", "model_a", "j"), Vote(1, 2, "a", "b", "model_b", "j")]
    humans = [Vote(1, 1, "a", "b", "model_a", "h"), Vote(1, 2, "a", "b", "model_a", "h")]
    assert metrics.agreement(metrics.judge_human_pairs(vote_frame(judge, humans)), metrics.JH) == metrics.Agreement(1, 2)
    assert metrics.agreement(metrics.judge_human_pairs(vote_frame(judge, humans, turn=2)), metrics.JH) == \
        metrics.Agreement(0, 1)
    table = metrics.by_turn(vote_frame(judge, humans))
    assert table.loc[(1, "judge-human"), "with_ties"] == 1.0 and table.loc[(2, "judge-human"), "with_ties"] == 0.0


def test_one_judge_vote_per_game():
    votes = vote_frame([Vote(1, 1, "a", "b", "model_a", "j1"), Vote(1, 1, "b", "a", "model_a", "j2")],
                       [Vote(1, 1, "a", "b", "model_a", "h")])
    with pytest.raises(ValueError, match="several judge votes on question 1"):
        metrics.judge_human_pairs(votes)
    with pytest.raises(ValueError, match="several judges"):
        judge_votes([pj(1, "a", "b", "model_1", "model_1", "j1"), pj(2, "a", "b", "model_1", "model_1", "j2")])


def test_alpha_undefined_when_all_votes_agree():
    votes = vote_frame([Vote(1, 1, "a", "b", "tie", "j")], [Vote(1, 1, "a", "b", "tie", "h")])
    assert math.isnan(metrics.krippendorff_alpha(votes))
    assert metrics.summarize(votes, rounds=10)["alpha"] is None


# ---- the CLI ------------------------------------------------------------------------------------------------------


def test_cli_prints_the_table_and_json(tmp_path, capsys):
    judgments, human = tmp_path / "gpt-judge_pair.jsonl", tmp_path / "human.json"
    write_records(judgments, hand_judgments())
    write_human_judgments(human, hand_humans())
    questions = tmp_path / "question.jsonl"
    write_records(questions, [Question(question_id=q, category=CATEGORIES[str(q)], turns=["?"]) for q in range(1, 7)])
    assert main(["agreement", str(judgments), "--human", str(human), "--rounds", "20", "--questions", str(questions)]) == 0
    text = capsys.readouterr().out
    assert "judge: gpt-judge" in text and "judge errors left out: 1" in text
    assert "agreement with ties" in text and "0.583" in text and "0.348" in text and "## per_category" in text
    assert main(["agreement", str(judgments), "--human", str(human), "--rounds", "20", "--json", "--turn", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["judge_human"]["with_ties"] == pytest.approx(7 / 12)
    assert out["summary"]["human_human"]["alpha"] == pytest.approx(28 / 94)
    assert {r["statistic"] for r in out["agreement"]} >= {"Cohen's kappa", "agreement without ties"}
    # the judge's votes already in the human judgment format (MT-Bench's gpt4_pair files)
    judge_file = tmp_path / "gpt4_pair.json"
    judge_list = [HumanJudgment(question_id=v.question_id, model_a=v.model_a, model_b=v.model_b, winner=v.winner,
                                judge=["gpt-judge", "pair-v2"], turn=v.turn) for v in judge_votes(hand_judgments())[0]]
    write_human_judgments(judge_file, judge_list)
    assert main(["agreement", str(judge_file), "--human", str(human), "--rounds", "0", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["summary"]
    assert again["judge_human"]["kappa"] == pytest.approx(8 / 23) and again["judge_human"]["ci"]["kappa"] == [None, None]


def test_cli_names_a_bad_file(tmp_path, capsys):
    judgments, human = tmp_path / "j_pair.jsonl", tmp_path / "human.json"
    write_records(judgments, hand_judgments())
    human.write_text(json.dumps([{"question_id": 1, "model_a": "base", "model_b": "tuned", "winner": "A",
                                  "judge": "h1", "turn": 1}]), encoding="utf-8")
    assert main(["agreement", str(judgments), "--human", str(human)]) == 1
    err = capsys.readouterr().err
    assert str(human) in err and "record 1" in err and "'h1'" in err and "winner" in err


# ---- FastChat's human judgment format -----------------------------------------------------------------------------


def test_human_file_checks(tmp_path):
    path = tmp_path / "human.json"
    write_human_judgments(path, hand_humans())
    assert len(load_human_judgments(path)) == 12
    assert [h.annotator for h in load_human_judgments(path, annotator_prefix="h2")] == ["h2"] * 6
    dup = [hv(1, "base", "tuned", "model_b", "h1"), hv(1, "tuned", "base", "model_a", "h1")]  # same game, reversed
    write_human_judgments(path, dup)
    with pytest.raises(LabelError, match=r"record 2 \(item 'question 1, turn 1, tuned vs base', annotator 'h1'\): "
                                         r"duplicate label"):
        load_human_judgments(path)
    write_human_judgments(path, [hv(9, "base", "tuned", "model_b", "h1")])
    with pytest.raises(LabelError, match="unknown item"):
        load_human_judgments(path, known={("1", 1, "base", "tuned")})


# ---- sampling -----------------------------------------------------------------------------------------------------


def _games(n_per: dict[tuple[str, str], int]) -> tuple[list[PairwiseJudgment], dict[str, str]]:
    """Judgments with n games per (category, verdict); verdicts model_1 / tie (inconsistent) / error."""
    games, cats, q = [], {}, 0
    for (category, verdict), n in n_per.items():
        for _ in range(n):
            q += 1
            g1, g2 = {"model_1": ("model_1", "model_1"), "tie": ("model_1", "model_2"), "error": ("error", "tie")}[verdict]
            games.append(pj(q, "base", "tuned", g1, g2))
            cats[str(q)] = category
    return games, cats


def test_sampling_is_stratified_seeded_and_leaves_errors_out():
    games, cats = _games({("writing", "model_1"): 20, ("writing", "tie"): 2, ("math", "model_1"): 5, ("math", "error"): 3})
    chosen = sample_games(games, 9, cats, seed=0)
    strata = [(cats[str(g.question_id)], g.g1_winner == g.g2_winner) for g in chosen]
    # three strata, taken in turn: 2 of the small one (all it has), the other two share the rest
    assert strata.count(("writing", False)) == 2
    assert strata.count(("writing", True)) + strata.count(("math", True)) == 7
    assert all(g.g1_winner != "error" for g in chosen)
    assert [g.question_id for g in chosen] == [g.question_id for g in sample_games(games, 9, cats, seed=0)]
    assert len(sample_games(games, None, cats)) == 27


def test_disagreement_weight_oversamples_inconsistent_games():
    games, cats = _games({("writing", "model_1"): 30})
    games += [pj(100 + i, "base", "tuned", "model_1", "model_2") for i in range(5)]  # inconsistent: ties
    cats.update({str(100 + i): "writing" for i in range(5)})
    chosen = sample_games(games, 5, cats, strata=("category",), disagreement_weight=1e9, seed=0)
    assert {g.question_id for g in chosen} == {100, 101, 102, 103, 104}


def _bench(n: int = 4) -> tuple[dict[str, Question], dict[str, dict[str, Answer]]]:
    questions = {str(q): Question(question_id=q, category="writing", turns=[f"質問{q}", f"続き{q}"]) for q in range(1, n + 1)}
    answers = {m: {str(q): Answer(question_id=q, model_id=m, choices=[{"turns": [f"{m}の回答{q}", f"{m}の続き{q}"]}])
                   for q in range(1, n + 1)} for m in ("base", "tuned")}
    return questions, answers


def test_items_randomise_sides_and_hide_the_verdict():
    questions, answers = _bench(12)
    games = [pj(q, "tuned", "base", "model_1", "model_1") for q in range(1, 13)]
    items = make_items(games, questions, answers, seed=0)
    assert {i.model_left for i in items} == {"base", "tuned"}  # both orders drawn
    for i in items:
        assert i.answer_left == [f"{i.model_left}の回答{i.question_id}"] and i.question == [f"質問{i.question_id}"]
        assert i.item_id == item_id(i.question_id, 1, "base", "tuned") == item_id(i.question_id, 1, "tuned", "base")
    task = label_studio.tasks(items)[0]["data"]
    assert set(task) == {"item_id", "category", "question", "answer_left", "answer_right"}
    assert "base" not in task["item_id"] and "tuned" not in task["item_id"]
    turn2 = make_items([pj(1, "base", "tuned", "tie", "tie", turn=2)], questions, answers)[0]
    assert turn2.question == ["質問1", "続き1"] and "【回答 2】" in label_studio.tasks([turn2])[0]["data"]["answer_left"]


# ---- Label Studio -------------------------------------------------------------------------------------------------


def _items() -> list[Item]:
    questions, answers = _bench(4)
    return make_items([pj(q, "base", "tuned", "model_1", "model_1") for q in range(1, 5)], questions, answers, seed=1)


def test_labeling_config_matches_the_tasks():
    root = ET.fromstring(label_studio.labeling_config())
    texts = {t.get("name"): t.get("value") for t in root.iter("Text")}
    assert texts == {"question": "$question", "answer_left": "$answer_left", "answer_right": "$answer_right"}
    assert set(label_studio.tasks(_items())[0]["data"]) >= {v[1:] for v in texts.values()}
    (choices,) = root.iter("Choices")
    assert (choices.get("name"), choices.get("toName"), choices.get("choice"), choices.get("required")) == \
        ("winner", "question", "single-radio", "true")
    assert [(c.get("alias"), c.get("hotkey")) for c in choices.iter("Choice")] == [("left", "1"), ("tie", "2"), ("right", "3")]


def _export(items: list[Item], annotations: dict[str, list[dict]]) -> list[dict]:
    """A Label Studio JSON export of our tasks, shaped as Label Studio writes it."""
    out = []
    for n, task in enumerate(label_studio.tasks(items), start=1):
        anns = [{"id": 100 * n + k, "completed_by": a.get("by", 1), "was_cancelled": a.get("cancelled", False),
                 "ground_truth": False, "lead_time": 2.5, "task": n, "project": 1,
                 "result": [] if a.get("cancelled") else [{"id": "x", "from_name": "winner", "to_name": "question",
                                                           "type": "choices", "origin": "manual",
                                                           "value": {"choices": [a["choice"]]}}]}
                for k, a in enumerate(annotations.get(task["data"]["item_id"], []))]
        out.append({"id": n, "data": task["data"], "annotations": anns, "predictions": [], "meta": {}, "project": 1})
    return out


def test_label_studio_export_reimports_through_the_left_right_order(tmp_path):
    items = _items()
    by_id = {i.item_id: i for i in items}
    first, second, third = items[0], items[1], items[2]
    export = _export(items, {
        first.item_id: [{"choice": "left", "by": 1}, {"choice": "right", "by": {"id": 2, "email": "b@example.org"}}],
        second.item_id: [{"choice": "引き分け (同程度)", "by": 1}],  # the shown text, when no alias was exported
        third.item_id: [{"cancelled": True, "by": 1}],  # skipped: no label
    })
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    labels = label_studio.load_export(path, by_id)
    assert [(x.item_id, x.annotator, x.choice) for x in labels] == [
        (first.item_id, "label-studio-user-1", "left"), (first.item_id, "b@example.org", "right"),
        (second.item_id, "label-studio-user-1", "tie")]
    votes = from_labels(labels, by_id)
    assert votes[0].model_a == first.model_left and votes[0].winner == "model_a"
    winner_of = lambda v: {"model_a": v.model_a, "model_b": v.model_b}.get(v.winner, "tie")  # noqa: E731
    assert winner_of(votes[0]) == first.model_left and winner_of(votes[1]) == first.model_right
    assert votes[2].winner == "tie" and votes[2].item_id == second.item_id


@pytest.mark.parametrize("annotations, message", [
    ({"q9-t1-00000000": [{"choice": "left"}]}, "unknown item"),
    ("first", "choice 'maybe' is not one of"),
    ("twice", "duplicate label"),
])
def test_label_studio_export_errors_name_file_item_annotator(tmp_path, annotations, message):
    items = _items()
    first = items[0].item_id
    export = _export(items, {first: [{"choice": "maybe"}]} if annotations == "first" else
                     {first: [{"choice": "left"}, {"choice": "tie"}]} if annotations == "twice" else {})
    if isinstance(annotations, dict):  # a task whose item is not among the items
        export.append({"id": 99, "data": {"item_id": "q9-t1-00000000"}, "annotations": _export(items, {
            first: annotations["q9-t1-00000000"]})[0]["annotations"]})
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    with pytest.raises(LabelError) as e:
        label_studio.load_export(path, {i.item_id: i for i in items})
    text = str(e.value)
    assert str(path) in text and message in text and "annotator 'label-studio-user-1'" in text and "item 'q" in text


def test_a_real_label_studio_export_reimports():
    """`tests/data/agreement/`: tasks made by `label_studio.tasks`, imported into Label Studio 1.23.2 with the
    labeling config, annotated through its API, exported as JSON (see the folder's README)."""
    items = [Item.model_validate(json.loads(line)) for line in
             (FIXTURES / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    export = read_json(FIXTURES / "label_studio_export.json")
    assert [t["data"] for t in export] == [t["data"] for t in label_studio.tasks(items)]
    labels = label_studio.load_export(FIXTURES / "label_studio_export.json", {i.item_id: i for i in items})
    made = {tid: choice for tid, choice in read_json(FIXTURES / "made.json")}
    expected = [(t["data"]["item_id"], made[t["id"]]) for t in export if made[t["id"]] is not None]
    assert sorted((x.item_id, x.choice) for x in labels) == sorted(expected)
    assert len(labels) == len(items) - 1  # the skipped task gives no label


# ---- the CSV sheet ------------------------------------------------------------------------------------------------


def _fill(path: Path, choices: dict[int, tuple[str, str]]) -> None:
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    for n, (choice, annotator) in choices.items():
        rows[n]["choice"], rows[n]["annotator"] = choice, annotator
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sheet.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_sheet_round_trip_and_errors(tmp_path):
    items = _items()
    by_id = {i.item_id: i for i in items}
    path = sheet.write_sheet(tmp_path / "sheet.csv", items)
    assert path.read_bytes().startswith("\ufeff".encode())
    _fill(path, {0: ("左", ""), 1: ("R", "ann"), 3: ("tie", "")})
    labels = sheet.load_sheet(path, by_id, annotator="default")
    assert [(x.item_id, x.annotator, x.choice) for x in labels] == [
        (items[0].item_id, "default", "left"), (items[1].item_id, "ann", "right"), (items[3].item_id, "default", "tie")]
    with pytest.raises(LabelError, match="no annotator"):
        sheet.load_sheet(path, by_id)
    _fill(path, {2: ("better", "ann")})
    with pytest.raises(LabelError) as e:
        sheet.load_sheet(path, by_id, annotator="default")
    assert str(path) in str(e.value) and "line 4" in str(e.value) and f"item '{items[2].item_id}'" in str(e.value)
    assert "annotator 'ann'" in str(e.value) and "'better'" in str(e.value)


# ---- the notebook labeler -----------------------------------------------------------------------------------------


def test_label_session_saves_every_label_and_resumes(tmp_path):
    items, path = _items(), tmp_path / "labels.json"
    session = LabelSession(items, "alice", path)
    first = session.current
    session.label("left")
    assert [(x.item_id, x.choice) for x in read_label_file(path)] == [(first.item_id, "left")]
    skipped = session.current
    session.skip()
    assert session.current != skipped
    again = LabelSession(items, "alice", path)  # a new session resumes
    assert again.progress == (1, 4) and again.current.item_id == items[1].item_id
    bob = LabelSession(items, "bob", path)  # another annotator starts from the beginning, keeping alice's label
    bob.label("tie")
    assert [(x.annotator, x.choice) for x in read_label_file(path)] == [("alice", "left"), ("bob", "tie")]


def test_labeler_widget_buttons_and_keys(tmp_path):
    items, path = _items(), tmp_path / "labels.json"
    labeler = Labeler(items, "alice", path)
    assert items[0].answer_left[0] in labeler.left.value
    labeler.buttons["right"].click()
    labeler.keys.value = "2"  # a key typed into the input box
    assert labeler.keys.value == ""
    labeler.keys.value = "s"
    labeler.keys.value = "l"
    assert [x.choice for x in read_label_file(path)] == ["right", "tie", "left"]
    assert labeler.bar.value == 3 and "3/4" in labeler.status.value
    labeler.keys.value = "3"
    assert labeler.session.current is None and labeler.buttons["left"].disabled


# ---- the stage, end to end on a small run folder -------------------------------------------------------------------


def _run_folder(tmp_path: Path) -> tuple[RunLayout, list[Question]]:
    layout = RunLayout(tmp_path / "run")
    questions, answers = _bench(6)
    for q in questions.values():
        q.category = CATEGORIES[str(q.question_id)]
    for model, by_q in answers.items():
        write_records(layout.answer_file(model), by_q.values())
    write_records(layout.judgment_file(JUDGE, "pair"), hand_judgments()[:-1])
    return layout, list(questions.values())


def test_stage_samples_exports_collects_and_summarises(tmp_path):
    layout, questions = _run_folder(tmp_path)
    section = AgreementSection(sample_size=4, bootstrap_rounds=50)
    items = prepare_items(section, layout, questions, JUDGE)
    assert len(items) == 4 and layout.agreement_items.exists()
    assert [i.item_id for i in prepare_items(AgreementSection(sample_size=2), layout, questions, JUDGE)] == \
        [i.item_id for i in items]  # kept once written: labels may refer to it
    exports = export_items(items, layout)
    assert set(exports) == {"label_studio_tasks", "label_studio_config", "sheet"}
    # h1 labels the sampled items in the notebook; h2's votes arrive as a FastChat file
    session = LabelSession(items, "h1", layout.notebook_labels)
    h1 = {str(h.question_id): h for h in hand_humans() if h.annotator == "h1"}
    for item in items:
        v = h1[str(item.question_id)].vote().canonical()[1]
        left_is_a = item.model_left == "base"
        session.label({"tie": "tie", "model_a": "left" if left_is_a else "right",
                       "model_b": "right" if left_is_a else "left"}[v])
    h2 = tmp_path / "h2.json"
    write_human_judgments(h2, [h for h in hand_humans() if h.annotator == "h2"])
    result = run_agreement(AgreementSection(labels=[str(h2)], bootstrap_rounds=50), layout, questions, JUDGE)
    s = read_json(layout.agreement_summary)
    assert s["judge"] == JUDGE and s["annotators"] == ["h1", "h2"] and s["n_human_votes"] == 10
    assert set(s) >= {"judge_human", "human_human", "alpha", "n_questions", "per_category"}
    assert set(s["judge_human"]) >= {"with_ties", "without_ties", "kappa", "ci"}
    # the h1 votes went out as left/right and came back as the same model votes
    back = {str(h.question_id): h.vote().canonical()[1] for h in load_human_judgments(layout.human_judgments)
            if h.annotator == "h1"}
    assert back == {q: h1[q].vote().canonical()[1] for q in back}
    assert result.model_pair() == ("base", "tuned")
    assert layout.agreement_table("agreement").exists() and layout.agreement_table("confusion").exists()


def test_stage_catches_a_label_given_twice_across_sources(tmp_path):
    layout, questions = _run_folder(tmp_path)
    items = prepare_items(AgreementSection(sample_size=2), layout, questions, None)  # the run's only judge
    LabelSession(items, "h1", layout.notebook_labels).label("left")
    twice = tmp_path / "h1.json"
    item = items[0]
    write_human_judgments(twice, [hv(item.question_id, "base", "tuned", "tie", "h1")])
    with pytest.raises(LabelError, match="annotator 'h1'.*duplicate label"):
        collect_votes([layout.notebook_labels, twice], items, {("1", 1, "base", "tuned"), (str(item.question_id), 1,
                                                                                           "base", "tuned")})


# ---- the demonstration labels ---------------------------------------------------------------------------------------


def test_demo_labels_file_is_the_generators_output():
    shipped = read_json(resolve_path(DEMO_FILE))
    assert shipped == [h.model_dump(mode="json") for h in tiny_demo_labels()]
    assert len(shipped) == 48 and all(r["demo"] is True and r["judge"].startswith("demo-annotator-") for r in shipped)
    assert {r["winner"] for r in shipped} == {"model_a", "model_b", "tie"}
    assert {(r["model_a"], r["model_b"]) for r in shipped} == {("tiny-base", "tiny-sft"), ("tiny-sft", "tiny-base")}
    assert load_human_judgments(resolve_path(DEMO_FILE))  # passes every check
