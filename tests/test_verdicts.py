"""Verdict parsing: the judge reply edge cases, FastChat's rule for comparison, and structured verdicts."""

from __future__ import annotations

import json

import pytest

from jinstruct.judge.verdicts import (
    PAIR_VERDICT_SCHEMA,
    RATING_SCHEMA,
    PairVerdict,
    Rating,
    fastchat_winner,
    parse_pair_json,
    parse_pair_scores,
    parse_pair_verdict,
    parse_rating,
    parse_rating_json,
    parse_verdict,
)


@pytest.mark.parametrize("reply, winner", [
    ("Aの回答がより具体的です。[[A]]", "A"),
    ("Assistant B is more accurate.\n\nFinal verdict: [[B]]", "B"),
    ("甲乙つけがたいです。[[C]]", "tie"),
    ("最終判定：［［Ｂ］］", "B"),                  # full-width brackets and letter (NFKC)
    ("最終判定：【【A】】", "A"),                   # lenticular brackets
    ("判定: [[ b ]]", "B"),                        # spaces, lower case
    ("私の判定は [B]", "B"),                        # single brackets ending the reply: fallback
    ('{"reasoning": "Bが正確", "verdict": "B"}', "B"),  # a structured reply read as text
])
def test_pair_verdicts(reply, winner):
    v = parse_pair_verdict(reply)
    assert v == PairVerdict(winner)
    assert v.ok


def test_several_verdicts_the_last_one_counts_and_is_flagged():
    v = parse_pair_verdict("最初は[[A]]だと思いましたが、見直すと誤りがありました。最終的には[[B]]です。")
    assert v.winner == "B" and v.conflicting


def test_repeated_same_verdict_is_not_conflicting():
    v = parse_pair_verdict("[[A]] ... よって [[A]]")
    assert v.winner == "A" and not v.conflicting


def test_echoed_format_instructions_are_not_a_verdict():
    echo = 'The format is "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
    assert parse_pair_verdict(echo + "\n\nMy verdict: [[B]]") == PairVerdict("B")
    ja_echo = "アシスタントAが優れていれば[[A]]、アシスタントBが優れていれば[[B]]、同点の場合は[[C]]"
    assert parse_pair_verdict("結論：[[A]]\n（形式：" + ja_echo + "）") == PairVerdict("A")
    only_echo = parse_pair_verdict(echo)
    assert only_echo.winner is None and "only repeats the format" in only_echo.error


@pytest.mark.parametrize("reply, why", [
    ("", "empty reply"),
    ("   \n", "empty reply"),
    ("$ERROR$", "judge call failed"),
    ("どちらも良い回答です。", "no [[A]]"),
    ("アシスタント[A]は良いが、[B]は冗長だ。総合的に見てAです", "no [[A]]"),  # single brackets mid-text: no fallback
    ("[[D]]", "no [[A]]"),
])
def test_unparseable_pair_replies_are_errors_not_outcomes(reply, why):
    v = parse_pair_verdict(reply)
    assert v.winner is None and not v.ok
    assert why in v.error


def test_fastchat_rule_checks_a_before_b_before_c():
    reply = "Not [[A]]; my verdict is [[B]]"
    assert parse_pair_verdict(reply, rule="fastchat").winner == "A"  # FastChat's first-position bias
    assert parse_pair_verdict(reply).winner == "B"
    assert parse_pair_verdict("[[C]] then [[B]]", rule="fastchat").winner == "B"
    assert parse_pair_verdict("［［Ａ］］", rule="fastchat").winner is None  # FastChat reads the raw text


@pytest.mark.parametrize("reply, score", [
    ("The answer is accurate. Rating: [[8]]", 8),
    ("評価：［［７］］", 7),
    ("総合評価は【【9】】です。", 9),
    ("Rating: [[8.5]]", 8.5),
    ("Rating: [[6/10]]", 6),
    ("Rating: [[10]]", 10),
    ("Rating: [[1]]", 1),
    ("評価: 7", 7),                     # rating word fallback
    ("スコア：[6]", 6),
    ('{"reasoning": "正確", "rating": 9}', 9),
])
def test_ratings(reply, score):
    r = parse_rating(reply)
    assert r.score == score and r.error is None
    assert type(r.score) is type(score)


def test_rating_in_a_quoted_example_is_ignored_when_a_real_one_follows():
    reply = 'I must answer in the format "[[rating]]", for example: "Rating: [[5]]". The answer is wrong. Rating: [[2]]'
    assert parse_rating(reply).score == 2
    ja = "「[[rating]]」という形式で（例：[[5]]）評価します。説明：……。評価：[[9]]"
    assert parse_rating(ja).score == 9
    assert parse_rating("例えば数式の誤りがあります。評価: [[4]]").score == 4  # "例えば" with no other rating


def test_several_ratings_take_the_last():
    r = parse_rating("1回目の評価は[[3]]でしたが、修正後は[[6]]です。")
    assert r.score == 6 and r.conflicting


@pytest.mark.parametrize("reply, why", [
    ("Rating: [[11]]", "outside 1-10"),
    ("Rating: [[0]]", "outside 1-10"),
    ("良い回答です。", "no [[rating]]"),
    ("評価は10段階で行います。以上より8点です。", "no [[rating]]"),  # prose is not guessed at
    ("$ERROR$", "judge call failed"),
    ('{"reasoning": "x", "rating": "高い"}', "no [[rating]]"),
])
def test_bad_ratings_are_errors(reply, why):
    r = parse_rating(reply)
    assert r.score is None and why in r.error


def test_rating_scale_is_configurable():
    assert parse_rating("[[0]]", low=0, high=10).score == 0
    assert parse_rating("[[4]]", low=1, high=3).error == "rating 4 is outside 1-3"


def test_fastchat_rating_rule_takes_the_first_match():
    reply = 'for example: "Rating: [[5]]". Rating: [[2]]'
    assert parse_rating(reply, rule="fastchat").score == 5
    assert parse_rating("[[12]]", rule="fastchat").score == 12  # FastChat does not check the range
    assert parse_rating("score [3] ok", rule="fastchat").score == 3


def test_two_score_format():
    assert parse_pair_scores("[[8, 6]]") == PairVerdict("A")
    assert parse_pair_scores("[[5.5,7]]") == PairVerdict("B")
    assert parse_pair_scores("[[7, 7.05]]") == PairVerdict("tie")
    assert parse_pair_scores("no scores").winner is None


def test_parse_verdict_dispatches_on_output_format():
    assert parse_verdict("[[B]]", "[[A]]") == PairVerdict("B")
    assert parse_verdict("Rating: [[3]]", "[[rating]]") == Rating(3)
    assert parse_verdict("[[9,2]]", "[[rating_a, rating_b]]") == PairVerdict("A")
    with pytest.raises(ValueError, match="unknown output_format"):
        parse_verdict("[[A]]", "[[X]]")


def test_winner_is_mapped_back_for_the_swapped_game():
    assert fastchat_winner(PairVerdict("A"), 1) == "model_1"
    assert fastchat_winner(PairVerdict("B"), 1) == "model_2"
    assert fastchat_winner(PairVerdict("A"), 2) == "model_2"  # game 2 shows model_2 first
    assert fastchat_winner(PairVerdict("B"), 2) == "model_1"
    assert fastchat_winner(PairVerdict("tie"), 2) == "tie"
    assert fastchat_winner(PairVerdict(None, "no verdict"), 1) == "error"


def test_structured_verdicts():
    assert parse_pair_json({"reasoning": "同等", "verdict": "C"}) == PairVerdict("tie")
    assert parse_pair_json('{"reasoning": "x", "verdict": "[[A]]"}') == PairVerdict("A")
    assert parse_pair_json('{"reasoning": "x", "verdict": "Ｂ"}') == PairVerdict("B")
    bad = parse_pair_json('{"reasoning": "x", "verdict": "D"}')
    assert bad.winner is None and "verdict" in bad.error
    assert "not valid JSON" in parse_pair_json('{"reasoning": "x", "verd').error
    assert "not an object" in parse_pair_json("[1, 2]").error
    assert "reasoning" in parse_pair_json({"verdict": "A"}).error

    assert parse_rating_json({"reasoning": "良い", "rating": 8}) == Rating(8)
    assert parse_rating_json('{"reasoning": "x", "rating": 8.5}') == Rating(8.5)
    assert "outside 1-10" in parse_rating_json({"reasoning": "x", "rating": 0}).error
    assert "expected a number" in parse_rating_json({"reasoning": "x", "rating": True}).error
    assert "reasoning" in parse_rating_json({"rating": 5}).error


def test_schemas_ask_for_reasoning_before_the_verdict():
    assert list(PAIR_VERDICT_SCHEMA["properties"]) == ["reasoning", "verdict"]
    assert PAIR_VERDICT_SCHEMA["properties"]["verdict"]["enum"] == ["A", "B", "C"]
    assert PAIR_VERDICT_SCHEMA["required"] == ["reasoning", "verdict"]
    assert PAIR_VERDICT_SCHEMA["additionalProperties"] is False
    rating = RATING_SCHEMA["properties"]["rating"]
    assert (rating["type"], rating["minimum"], rating["maximum"]) == ("integer", 1, 10)


def test_schemas_compile_to_grammars_that_accept_only_valid_verdicts():
    xgr = pytest.importorskip("xgrammar")

    def accepts(schema: dict, text: str) -> bool:
        grammar = xgr.Grammar.from_json_schema(json.dumps(schema))
        matcher = xgr.GrammarMatcher(xgr.GrammarCompiler(xgr.TokenizerInfo([])).compile_grammar(grammar))
        return matcher.accept_string(text) and matcher.is_completed()

    assert accepts(PAIR_VERDICT_SCHEMA, '{"reasoning": "Bが正確", "verdict": "B"}')
    assert not accepts(PAIR_VERDICT_SCHEMA, '{"reasoning": "x", "verdict": "D"}')
    assert accepts(RATING_SCHEMA, '{"reasoning": "x", "rating": 10}')
    assert not accepts(RATING_SCHEMA, '{"reasoning": "x", "rating": 11}')
