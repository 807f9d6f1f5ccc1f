"""Judging through the LLM client: both orders, retries of unreadable verdicts, FastChat's records, resuming;
against a scripted judge (in-process) and end to end on the embedded backend with a tiny model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from jinstruct.judge import metrics as results
from jinstruct.answer.engines import answer_with_transformers, load_answer_model
from jinstruct.answer.records import make_answer
from jinstruct.formats.fastchat import (
    JudgePrompt,
    Question,
    load_answer_dir,
    load_pairwise_judgments,
    load_single_judgments,
)
from jinstruct.judge.engine import judge_pairwise, judge_single, pending_tasks
from jinstruct.judge.grader import PAIR_CHOICES, GraderSettings, check_prompts, judge_request, verdict_schema
from jinstruct.judge.figures import score_figure, win_tie_loss_figure
from jinstruct.judge.prompts import load_prompts, pairwise_input, pairwise_tasks, single_tasks
from jinstruct.llm import EndpointSettings, LLMClient
from jinstruct.llm.tinymodel import build_tiny_model
from jinstruct.judge.verdicts import PAIR_VERDICT_SCHEMA

# FastChat's fields, plus `settings_id` (what decided the judgment; FastChat's tools ignore extra fields)
PAIR_KEYS = {"question_id", "model_1", "model_2", "g1_winner", "g2_winner", "judge", "g1_user_prompt", "g1_judgment",
             "g2_user_prompt", "g2_judgment", "turn", "tstamp", "settings_id"}
SINGLE_KEYS = {"question_id", "model", "judge", "user_prompt", "judgment", "score", "turn", "tstamp", "settings_id"}
REFERENCE = "参考: x = 2, 3"

# The scripted judge reads what each question asks of it from a marker in the question.
QUESTIONS = [
    Question(question_id=1, category="writing", turns=["お知らせを書いて #normal"]),
    Question(question_id=2, category="writing", turns=["俳句を詠んで #position"]),
    Question(question_id=3, category="roleplay", turns=["女将として挨拶して #tie"]),
    Question(question_id=4, category="coding-math", turns=["x^2-5x+6=0 を解いて #normal"], reference=[REFERENCE]),
    Question(question_id=5, category="knowledge", turns=["光合成とは #normal", "夜は? #normal"]),
]
TROUBLE = [
    Question(question_id=11, category="writing", turns=["一度目は迷う #flaky"]),
    Question(question_id=12, category="writing", turns=["決められない #never"]),
    Question(question_id=13, category="writing", turns=["呼ぶと壊れる #fail"]),
]


def answers_for(questions: list[Question], models: dict[str, str]) -> dict[str, dict[Any, Any]]:
    return {m: {q.question_id: make_answer(q.question_id, m, [[f"{marker} answer {q.question_id}-{t}"
                                                                 for t in range(len(q.turns))]])
                for q in questions}
            for m, marker in models.items()}


class Judge:
    """A scripted OpenAI-compatible judge. Pairwise: the answer marked GOOD beats POOR (#normal), the first
    answer always wins (#position), a tie (#tie); the same two markers are a tie. Single: GOOD 8, POOR 3.
    #flaky: no verdict at temperature 0, a verdict when sampled; #never: never a verdict; #fail: HTTP 400."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fixed = False  # #never starts answering

    def verdict(self, body: dict[str, Any]) -> tuple[int, str]:
        text = body["messages"][-1]["content"]
        structured = "json" if body.get("response_format") else "choice" if body.get("structured_outputs") else "text"
        if "#fail" in text:
            return 400, ""
        if ("#never" in text and not self.fixed) or ("#flaky" in text and body.get("temperature", 0) == 0):
            return 200, "どちらとも言えません。"
        if "アシスタントA" not in text:  # single grading
            score = 8 if "GOOD" in text else 3
            return 200, {"text": f"よく書けています。評価: [[{score}]]", "choice": f"[[{score}]]",
                         "json": json.dumps({"reasoning": "理由", "rating": score})}[structured]
        good, poor = text.find("GOOD"), text.find("POOR")
        if "#tie" in text or good < 0 or poor < 0:
            letter = "C"
        elif "#position" in text:
            letter = "A"
        else:
            letter = "A" if good < poor else "B"
        verdict = json.dumps({"reasoning": "比較しました", "verdict": letter}, ensure_ascii=False)
        return 200, {"text": f"Aは……、Bは……。したがって [[{letter}]]", "choice": f"[[{letter}]]",
                     "json": verdict}[structured]

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> JSONResponse:
            body = json.loads(await request.body())
            self.bodies.append(body)
            status, reply = self.verdict(body)
            if status != 200:
                return JSONResponse({"error": {"message": "bad request (scripted)", "type": "invalid_request_error"}},
                                    status_code=status)
            return JSONResponse({"id": f"c{len(self.bodies)}", "object": "chat.completion", "model": body["model"],
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                              "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}})

        return app


def scripted_client(tmp_path: Path, judge: Judge) -> LLMClient:
    settings = EndpointSettings(base_url="http://judge.test/v1", model="scripted-judge", api_key_env=None,
                                max_retries=0, structured_retries=0,
                                pricing={"scripted-judge": {"input_per_mtok": 10.0, "output_per_mtok": 30.0}})
    return LLMClient(settings, tmp_path / "cache.sqlite3", stage="judge", run_dir=tmp_path / "run", progress=False,
                     asgi_app=judge.app())


@pytest.fixture(scope="module")
def prompts() -> dict[str, JudgePrompt]:
    return load_prompts()


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- pairwise -------------------------------------------------------------------------------------------------


def test_pairwise_against_a_baseline_in_both_orders_writes_fastchat_records(tmp_path: Path, prompts) -> None:
    answers = answers_for(QUESTIONS, {"tuned": "GOOD", "base": "POOR"})
    tasks = pairwise_tasks(QUESTIONS, answers, ["tuned", "base"], prompts, baseline="base")
    judge = Judge()
    with scripted_client(tmp_path, judge) as client:
        report = judge_pairwise(client, tasks, tmp_path / "judgments", echo=False)
    assert report.path == tmp_path / "judgments" / "scripted-judge_pair.jsonl"
    assert (report.tasks, report.judged, report.errors, report.retried) == (6, 6, 0, 0)
    assert report.estimate is not None and report.estimate.to_send == 12 and report.estimate.cost_usd > 0
    assert len(judge.bodies) == 12 and all(b["temperature"] == 0 for b in judge.bodies)

    records = lines(report.path)
    assert all(set(r) == PAIR_KEYS for r in records)
    by_game = {(r["question_id"], r["turn"]): r for r in records}
    assert set(by_game) == {(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (5, 2)}
    assert {k: (r["g1_winner"], r["g2_winner"]) for k, r in by_game.items()} == {
        (1, 1): ("model_1", "model_1"), (2, 1): ("model_1", "model_2"), (3, 1): ("tie", "tie"),
        (4, 1): ("model_1", "model_1"), (5, 1): ("model_1", "model_1"), (5, 2): ("model_1", "model_1")}
    assert {k: r["judge"][1] for k, r in by_game.items() if k in {(1, 1), (4, 1), (5, 2)}} == {
        (1, 1): "pair-v2", (4, 1): "pair-math-v1", (5, 2): "pair-v2-multi-turn"}
    assert all(r["judge"][0] == "scripted-judge" and (r["model_1"], r["model_2"]) == ("tuned", "base") for r in records)
    g = by_game[(1, 1)]
    assert g["g1_user_prompt"].index("GOOD") < g["g1_user_prompt"].index("POOR")
    assert g["g2_user_prompt"].index("POOR") < g["g2_user_prompt"].index("GOOD"), "game 2 swaps the order"
    assert REFERENCE in by_game[(4, 1)]["g1_user_prompt"] and REFERENCE not in g["g1_user_prompt"]
    assert "夜は? #normal" in by_game[(5, 2)]["g1_user_prompt"]

    table = results.pairwise_summary(results.pairwise_frame(load_pairwise_judgments(report.path)), "base", rounds=50)
    row = table.loc["tuned"]
    assert (row["wins"], row["ties"], row["losses"], row["errors"], row["n"]) == (4, 2, 0, 0, 6)
    assert row["win_rate"] == pytest.approx(4 / 6) and row["win_rate_adjusted"] == pytest.approx(5 / 6)
    assert row["position_consistency"] == pytest.approx(5 / 6)


def test_all_pairs_are_judged_and_rated(tmp_path: Path, prompts) -> None:
    questions = QUESTIONS[:1] + QUESTIONS[3:4]
    answers = answers_for(questions, {"strong": "GOOD", "weak": "POOR", "weak2": "POOR"})
    tasks = pairwise_tasks(questions, answers, ["strong", "weak", "weak2"], prompts)
    with scripted_client(tmp_path, Judge()) as client:
        report = judge_pairwise(client, tasks, tmp_path, echo=False)
    games = results.pairwise_frame(load_pairwise_judgments(report.path))
    assert sorted(set(zip(games["model_1"], games["model_2"]))) == [("strong", "weak"), ("strong", "weak2"),
                                                                   ("weak", "weak2")]
    assert len(games) == 6 and set(games.loc[games["model_1"] == "weak", "outcome"]) == {"tie"}
    ratings = results.bt_ratings(games, anchor="weak", rounds=20)
    assert ratings.index[0] == "strong" and ratings.loc["weak", "rating"] == pytest.approx(1000.0)


def test_unreadable_verdicts_are_asked_again_as_fresh_samples_then_recorded_as_errors(tmp_path: Path, prompts) -> None:
    answers = answers_for(TROUBLE, {"tuned": "GOOD", "base": "POOR"})
    tasks = pairwise_tasks(TROUBLE, answers, ["tuned", "base"], prompts, baseline="base")
    judge = Judge()
    with scripted_client(tmp_path, judge) as client:
        report = judge_pairwise(client, tasks, tmp_path, max_attempts=3, retry_temperature=0.5, seed=7, echo=False)
    flaky = [b for b in judge.bodies if "#flaky" in b["messages"][-1]["content"]]
    assert [b["temperature"] for b in flaky] == [0, 0, 0.5, 0.5], "each game: temperature 0, then one sample"
    assert len({b["seed"] for b in flaky}) == 2 and {flaky[0]["seed"], flaky[1]["seed"]} == {7}
    assert sum("#never" in b["messages"][-1]["content"] for b in judge.bodies) == 6  # 2 games x 3 attempts
    assert sum("#fail" in b["messages"][-1]["content"] for b in judge.bodies) == 6
    assert (report.judged, report.errors, report.retried) == (3, 2, 2 + 4 + 4)

    records = {r["question_id"]: r for r in lines(report.path)}
    assert (records[11]["g1_winner"], records[11]["g2_winner"]) == ("model_1", "model_1")
    assert (records[12]["g1_winner"], records[12]["g2_winner"]) == ("error", "error")
    assert records[12]["g1_judgment"] == "どちらとも言えません。", "the last reply is kept"
    assert records[13]["g1_judgment"] == "$ERROR$"
    failures = {(f.question_id, f.game): f for f in report.failures}
    assert set(failures) == {(12, 1), (12, 2), (13, 1), (13, 2)}
    assert failures[(12, 1)].attempts == 3 and "no [[A]]" in failures[(12, 1)].reason
    assert "400" in failures[(13, 2)].reason or "bad request" in failures[(13, 2)].reason
    assert "recorded as errors" in report.summary() and "question 12 turn 1 tuned vs base game 1" in report.summary()
    assert len(report.failures_frame()) == 4

    row = results.pairwise_summary(results.pairwise_frame(load_pairwise_judgments(report.path)), "base",
                                   rounds=20).loc["tuned"]
    assert (row["wins"], row["losses"], row["ties"], row["errors"], row["n"]) == (1, 0, 0, 2, 1)
    assert row["win_rate"] == 1.0, "errors are neither wins nor losses"


def test_a_rerun_judges_only_what_is_missing_and_can_retry_errors(tmp_path: Path, prompts) -> None:
    questions = QUESTIONS[:3] + TROUBLE[1:2]
    answers = answers_for(questions, {"tuned": "GOOD", "base": "POOR"})
    tasks = pairwise_tasks(questions, answers, ["tuned", "base"], prompts, baseline="base")
    judge = Judge()
    with scripted_client(tmp_path, judge) as client:
        judge_pairwise(client, tasks[:2], tmp_path, max_attempts=2, echo=False)
        path = tmp_path / "scripted-judge_pair.jsonl"
        path.write_text(path.read_text(encoding="utf-8") + '{"question_id": 3, "model_1": "tu', encoding="utf-8")
        sent = len(judge.bodies)
        report = judge_pairwise(client, tasks, tmp_path, max_attempts=2, echo=False)
        assert (report.already_judged, report.judged) == (2, 2)
        assert len(judge.bodies) - sent == 2 + 2 * 2, "question 3 (both orders) and #never (2 orders x 2 attempts)"
        assert [r["question_id"] for r in lines(path)] == [1, 2, 3, 12], "the torn line is gone, nothing doubled"

        sent = len(judge.bodies)
        assert judge_pairwise(client, tasks, tmp_path, max_attempts=2, echo=False).judged == 0
        assert len(judge.bodies) == sent

        # the judge recovers; errors are judged again (older attempts come from the cache, a third is sent)
        judge.fixed = True
        report = judge_pairwise(client, tasks, tmp_path, max_attempts=3, retry_errors=True, echo=False)
        assert (report.already_judged, report.judged, report.errors) == (3, 1, 0)
        assert len(judge.bodies) - sent == 2
    games = results.pairwise_frame(load_pairwise_judgments(path))
    assert len(games) == 4 and "error" not in set(games["outcome"]), "the newer line wins"


def test_a_published_file_with_the_models_swapped_counts_as_judged(tmp_path: Path, prompts) -> None:
    answers = answers_for(QUESTIONS[:1], {"tuned": "GOOD", "base": "POOR"})
    tasks = pairwise_tasks(QUESTIONS[:1], answers, ["tuned", "base"], prompts, baseline="base")
    path = tmp_path / "j_pair.jsonl"
    path.write_text(json.dumps({"question_id": 1, "model_1": "base", "model_2": "tuned", "g1_winner": "model_2",
                                "g2_winner": "model_2", "judge": ["j", "pair-v2"], "turn": 1}) + "\n")
    assert pending_tasks(tasks, path) == []


# ---- single grading -------------------------------------------------------------------------------------------


def test_single_grading_with_reference_and_multi_turn_prompts(tmp_path: Path, prompts) -> None:
    questions = QUESTIONS + TROUBLE[1:2]
    answers = answers_for(questions, {"tuned": "GOOD", "base": "POOR"})
    tasks = single_tasks(questions, answers, ["tuned", "base"], prompts)
    with scripted_client(tmp_path, Judge()) as client:
        report = judge_single(client, tasks, tmp_path, max_attempts=2, echo=False)
    assert (report.tasks, report.judged, report.errors) == (14, 14, 2)
    records = lines(report.path)
    assert all(set(r) == SINGLE_KEYS for r in records)
    by = {(r["question_id"], r["turn"], r["model"]): r for r in records}
    assert by[(1, 1, "tuned")]["score"] == 8 and by[(1, 1, "base")]["score"] == 3
    assert by[(12, 1, "tuned")]["score"] == -1
    assert by[(4, 1, "tuned")]["judge"] == ["scripted-judge", "single-math-v1", "verdict:last"]
    assert REFERENCE in by[(4, 1, "tuned")]["user_prompt"]
    assert by[(5, 2, "base")]["judge"][1] == "single-v1-multi-turn"

    scores = results.mean_scores(results.single_frame(load_single_judgments(report.path)), rounds=20)
    assert scores.loc["tuned", "mean"] == 8.0 and scores.loc["base", "mean"] == 3.0
    assert scores.loc["tuned", "errors"] == 1 and scores.loc["tuned", "n"] == 6


# ---- structured verdicts --------------------------------------------------------------------------------------


def test_structured_verdicts_are_asked_as_json_schema_or_choices(tmp_path: Path, prompts) -> None:
    answers = answers_for(QUESTIONS[:1], {"tuned": "GOOD", "base": "POOR"})
    judge = Judge()
    with scripted_client(tmp_path, judge) as client:
        pair = judge_pairwise(client, pairwise_tasks(QUESTIONS[:1], answers, ["tuned", "base"], prompts, "base"),
                              tmp_path / "json", mode="json", max_reasoning_chars=200, echo=False)
        single = judge_single(client, single_tasks(QUESTIONS[:1], answers, ["tuned"], prompts), tmp_path / "choice",
                              mode="choice", max_tokens=8, echo=False)
    schema = judge.bodies[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["reasoning"]["maxLength"] == 200 and schema["required"] == ["reasoning", "verdict"]
    assert judge.bodies[-1]["structured_outputs"] == {"choice": [f"[[{i}]]" for i in range(1, 11)]}
    record = lines(pair.path)[0]
    assert (record["g1_winner"], record["g2_winner"]) == ("model_1", "model_1")
    assert json.loads(record["g1_judgment"])["verdict"] == "A"
    assert lines(single.path)[0]["score"] == 8


def test_structured_modes_need_a_verdict_format_and_leave_the_shared_schema_alone(prompts) -> None:
    assert "maxLength" not in json.dumps(PAIR_VERDICT_SCHEMA)
    assert verdict_schema("pairwise", 50)["properties"]["reasoning"]["maxLength"] == 50
    assert "maxLength" not in json.dumps(PAIR_VERDICT_SCHEMA)
    two_scores = JudgePrompt(name="pair-v1", type="pairwise", prompt_template="{question}{answer_a}{answer_b}",
                             output_format="[[rating_a,rating_b]]")
    inp = pairwise_input(two_scores, ["q"], ["a"], ["b"])
    assert judge_request(inp, "pairwise", GraderSettings(mode="choice")).choices == list(PAIR_CHOICES)
    retry = judge_request(inp, "pairwise", GraderSettings(temperature=0.0, retry_temperature=0.7), attempt=2)
    assert (retry.temperature, retry.sample_index) == (0.7, 2)
    with pytest.raises(ValueError, match="use mode='text'"):
        check_prompts([inp], "pairwise", "json")


# ---- end to end on the embedded backend -----------------------------------------------------------------------


@pytest.mark.slow
def test_end_to_end_answers_and_structured_judging_on_the_embedded_backend(tmp_path: Path, prompts) -> None:
    from jinstruct.formats.fastchat import by_question, load_answers
    from jinstruct.paths import data_dir

    bench = data_dir() / "bench" / "ja_qa80"
    from jinstruct.formats.fastchat import load_questions

    questions = [q for q in load_questions(bench / "question.jsonl") if q.question_id in (1, 61)]
    reference = by_question(load_answers(bench / "reference_answer" / "reference.jsonl"))
    model_dir = build_tiny_model()
    model, tok = load_answer_model(str(model_dir))
    for name, template in (("tiny-chat", "chat"), ("tiny-alpaca", "alpaca_ja")):
        answer_with_transformers(questions, model, tok, name, tmp_path / "answers" / f"{name}.jsonl",
                                 template=template, max_new_tokens=12, progress=False)
    answers = load_answer_dir(tmp_path / "answers")
    settings = EndpointSettings(base_url="embedded", embedded_model=model_dir)
    with LLMClient(settings, tmp_path / "cache.sqlite3", stage="judge", run_dir=tmp_path, progress=False) as client:
        pair = judge_pairwise(client, pairwise_tasks(questions, answers, ["tiny-chat", "tiny-alpaca"], prompts,
                                                     baseline="tiny-alpaca", reference_answers=reference),
                              tmp_path / "judgments", mode="json", max_tokens=64, max_reasoning_chars=12, echo=False)
        single = judge_single(client, single_tasks(questions, answers, ["tiny-chat", "tiny-alpaca"], prompts,
                                                   reference_answers=reference),
                              tmp_path / "judgments", mode="choice", max_tokens=8, echo=False)
    assert (pair.judged, pair.errors, single.judged, single.errors) == (2, 0, 4, 0)
    records = load_pairwise_judgments(pair.path)
    assert {j.judge for j in records} == {(model_dir.name, "pair-v2", "verdict:last"),
                                          (model_dir.name, "pair-math-v1", "verdict:last")}
    assert all(json.loads(j.g1_judgment)["verdict"] in "ABC" for j in records)
    games = results.pairwise_frame(records, results.categories_of(questions))
    table = results.pairwise_summary(games, "tiny-alpaca", rounds=20)
    assert table.loc["tiny-chat", "n"] == 2 and table.loc["tiny-chat", "errors"] == 0
    scores = results.single_frame(load_single_judgments(single.path), results.categories_of(questions))
    assert scores["score"].between(1, 10).all() and not scores["error"].any()
    ledger = json.loads((tmp_path / "ledger" / "judge.json").read_text())
    assert ledger["requests"] >= 8


# ---- figures --------------------------------------------------------------------------------------------------


def test_figures_show_shares_and_scores_in_japanese(tmp_path: Path, prompts) -> None:
    answers = answers_for(QUESTIONS, {"tuned": "GOOD", "base": "POOR"})
    with scripted_client(tmp_path, Judge()) as client:
        pair = judge_pairwise(client, pairwise_tasks(QUESTIONS, answers, ["tuned", "base"], prompts, "base"),
                              tmp_path, echo=False)
        single = judge_single(client, single_tasks(QUESTIONS, answers, ["tuned", "base"], prompts), tmp_path,
                              echo=False)
    categories = results.categories_of(QUESTIONS)
    games = results.pairwise_frame(load_pairwise_judgments(pair.path), categories)
    by_cat = results.pairwise_by_category(games, "base", rounds=20)
    order = list(dict.fromkeys(q.category for q in QUESTIONS))
    fig = win_tie_loss_figure(by_cat, results.pairwise_summary(games, "base", rounds=20), categories=order,
                              baseline="base")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["全体", "作文", "ロールプレイ", "コーディング・数学", "知識"]
    widths = [round(p.get_width(), 4) for p in ax.patches]  # wins for each row, then ties, then losses
    assert widths[:5] == [round(4 / 6, 4), 0.5, 0.0, 1.0, 1.0]  # writing: #normal won, #position tied
    assert widths[5:10] == [round(2 / 6, 4), 0.5, 1.0, 0.0, 0.0]
    scores = results.single_frame(load_single_judgments(single.path), categories)
    fig2 = score_figure(results.mean_scores(scores, by=["model", "category"], rounds=20),
                        results.mean_scores(scores, rounds=20))
    bars = [p.get_x() + p.get_width() for p in fig2.axes[0].patches]  # bars run from 1 to the mean
    assert np.allclose(bars[:5], 8.0) and np.allclose(bars[5:], 3.0), "tuned first (the better mean)"
    assert all(p.get_x() == 1.0 for p in fig2.axes[0].patches)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing Japanese glyph is a warning
        fig.savefig(tmp_path / "wtl.png")
        fig2.savefig(tmp_path / "scores.png")
    assert (tmp_path / "wtl.png").stat().st_size > 10_000
