"""The generic grader: any prompt and response graded 1-10, any two responses compared in both orders."""

from __future__ import annotations

from pathlib import Path

import pytest

from jinstruct.judge.grader import Grader, GraderSettings
from test_judge import Judge, scripted_client


def test_grade_reads_the_rating_and_uses_the_reference_guided_prompt_with_a_reference(tmp_path: Path) -> None:
    judge = Judge()
    with scripted_client(tmp_path, judge) as client:
        grader = Grader(client)
        good = grader.grade("お知らせを書いて #normal", "GOOD のお知らせ")
        poor = grader.grade("お知らせを書いて #normal", "POOR のお知らせ", reference="正しい答え")
    assert (good.score, poor.score) == (8, 3)
    assert good.attempts == 1 and good.reason == "" and "[[8]]" in good.judgment
    assert good.prompt_name == "single-v1" and poor.prompt_name == "single-math-v1"
    assert "正しい答え" in judge.bodies[-1]["messages"][-1]["content"]


@pytest.mark.parametrize(("prompt", "a", "b", "winner", "g1", "g2"), [
    ("#normal", "GOOD", "POOR", "A", "model_1", "model_1"),
    ("#normal", "POOR", "GOOD", "B", "model_2", "model_2"),
    ("#position", "GOOD", "POOR", "tie", "model_1", "model_2"),  # the orders disagree: FastChat calls it a tie
    ("#tie", "GOOD", "POOR", "tie", "tie", "tie"),
])
def test_compare_asks_both_orders_and_combines_them_by_fastchats_rule(tmp_path, prompt, a, b, winner, g1, g2):
    judge = Judge()
    with scripted_client(tmp_path, judge) as client:
        result = Grader(client).compare(f"質問 {prompt}", f"{a} の答え", f"{b} の答え")
    assert (result.winner, result.g1_winner, result.g2_winner) == (winner, g1, g2)
    first, second = (b["messages"][-1]["content"] for b in judge.bodies)
    assert first.index(a) < first.index(b) and second.index(b) < second.index(a), "both orders were shown"


def test_an_unreadable_verdict_is_asked_again_as_a_fresh_sample_then_given_up(tmp_path: Path) -> None:
    judge = Judge()
    with scripted_client(tmp_path, judge) as client:
        grader = Grader(client, GraderSettings(max_attempts=3))
        flaky = grader.grade("一度目は迷う #flaky", "GOOD")
        never = grader.grade("決められない #never", "GOOD")
        lost = grader.compare("決められない #never", "GOOD", "POOR")
    assert (flaky.score, flaky.attempts) == (8, 2)
    assert never.score is None and never.attempts == 3 and never.reason
    assert lost.winner == "error"
    temps = [b["temperature"] for b in judge.bodies if "#flaky" in b["messages"][-1]["content"]]
    assert temps == [0.0, 0.7]


def test_grade_many_sends_every_item_through_the_client_once(tmp_path: Path) -> None:
    judge = Judge()
    with scripted_client(tmp_path, judge) as client:
        grader = Grader(client)
        items = [("お知らせを書いて #normal", f"{m} {i}") for i, m in enumerate(["GOOD", "POOR", "GOOD"])]
        first = grader.grade_many(items)
        again = grader.grade_many(items)  # answered from the cache: nothing is paid twice
    assert [g.score for g in first] == [8, 3, 8] == [g.score for g in again]
    assert len(judge.bodies) == 3 and client.ledger.record.cached == 3


def test_the_0_to_10_prompt_accepts_0_and_constrains_structured_verdicts_to_its_scale(tmp_path: Path) -> None:
    from jinstruct.judge.prompts import load_prompts
    from jinstruct.judge.verdicts import Rating, parse_verdict
    from jinstruct.paths import prompt_path

    prompts = load_prompts(prompt_path("judge_single_0to10_ja.jsonl"))
    single = prompts["single-0to10-ja"]
    assert single.scale == (0, 10) and load_prompts()["single-v1"].scale == (1, 10)
    assert parse_verdict("回答になっていません。評価: [[0]]", single.output_format, scale=single.scale) == Rating(0)
    assert parse_verdict("評価: [[0]]", "[[rating]]").error == "rating 0 is outside 1-10"  # FastChat's 1-10
    judge = Judge()
    with scripted_client(tmp_path, judge) as client:
        text = Grader(client, prompts=prompts).grade("お知らせを書いて", "GOOD のお知らせ")
        choice = Grader(client, GraderSettings(mode="choice"), prompts).grade("お知らせを書いて", "POOR のお知らせ")
        as_json = Grader(client, GraderSettings(mode="json"), prompts).grade("お知らせを書いて", "POOR です")
    assert (text.score, choice.score, as_json.score) == (8, 3, 3) and text.prompt_name == "single-0to10-ja"
    assert judge.bodies[1]["structured_outputs"]["choice"] == [f"[[{i}]]" for i in range(11)]
    rating = judge.bodies[2]["response_format"]["json_schema"]["schema"]["properties"]["rating"]
    assert (rating["minimum"], rating["maximum"]) == (0, 10)


def test_a_rating_range_must_go_up() -> None:
    from jinstruct.formats.fastchat import JudgePrompt

    with pytest.raises(ValueError, match="lowest rating must be below the highest"):
        JudgePrompt(name="x", type="single", prompt_template="{question}{answer}", output_format="[[rating]]",
                    rating_range=(10, 0))
