"""Answering the benchmark: a tiny local model through transformers, an endpoint through the client, FastChat's
answer format, resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from fake_openai import fake_client
from jinstruct.answer.engines import (
    Generated,
    TurnPrompt,
    answer_questions,
    answer_with_client,
    answer_with_transformers,
    load_answer_model,
    read_answer_file,
)
from jinstruct.answer.records import answer_id
from jinstruct.formats.fastchat import Question, answer_path, load_answers
from jinstruct.io import DataError
from jinstruct.llm.tinymodel import build_tiny_model
from jinstruct.train.qlora import load_tokenizer
from jinstruct.train.templates import ALPACA_JA_HEADER, ALPACA_STOPS, render

QUESTIONS = [
    Question(question_id=41, category="fermi", turns=["日本に信号機はいくつありますか。"]),
    Question(question_id=1, category="writing", turns=["夏祭りのお知らせを書いてください。"]),
    Question(question_id=7, category="knowledge", turns=["光合成とは何ですか。", "では、夜はどうなりますか。"]),
    Question(question_id=66, category="coding-math", turns=["x^2 - 5x + 6 = 0 を解いてください。"]),
]
# FastChat's fields, plus `settings_id` (what produced the answer; FastChat's tools ignore extra fields)
FASTCHAT_ANSWER_KEYS = {"question_id", "answer_id", "model_id", "choices", "tstamp", "settings_id"}


@pytest.fixture(scope="module")
def tiny() -> tuple[object, object]:
    return load_answer_model(str(build_tiny_model()))


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- prompts --------------------------------------------------------------------------------------------------


def test_render_uses_the_chat_template_or_the_alpaca_prompt_turn_by_turn(tiny) -> None:
    _, tok = tiny
    messages = [{"role": "user", "content": "質問1"}, {"role": "assistant", "content": "答え1"},
                {"role": "user", "content": "質問2"}]
    assert render(tok, "chat", messages) == (
        "<|user|>\n質問1<|end|>\n<|assistant|>\n答え1<|end|>\n<|user|>\n質問2<|end|>\n<|assistant|>\n")
    assert render(tok, "alpaca_ja", messages[:1]) == f"{ALPACA_JA_HEADER}\n\n### 指示:\n質問1\n\n### 応答:\n"
    assert render(tok, "alpaca_ja", messages) == (
        f"{ALPACA_JA_HEADER}\n\n### 指示:\n質問1\n\n### 応答:\n答え1\n\n### 指示:\n質問2\n\n### 応答:\n")
    with pytest.raises(ValueError, match="no system message"):
        render(tok, "alpaca_ja", [{"role": "system", "content": "s"}] + messages)
    with pytest.raises(ValueError, match="alternating"):
        render(tok, "alpaca_ja", messages[:2])


# ---- transformers ---------------------------------------------------------------------------------------------


def test_tiny_model_answers_in_fastchat_format_turn_by_turn(tiny, tmp_path: Path) -> None:
    model, tok = tiny
    out = answer_path(tmp_path / "answers", "tiny/tuned")
    assert out.name == "tiny--tuned.jsonl"
    report = answer_with_transformers(QUESTIONS, model, tok, "tiny/tuned", out, max_new_tokens=6, batch_size=3,
                                      progress=False)
    assert (report.questions, report.already_answered, report.answered, report.failed) == (4, 0, 4, {})
    records = lines(out)
    assert [r["question_id"] for r in records] == [41, 1, 7, 66], "question order"
    for r in records:
        assert set(r) == FASTCHAT_ANSWER_KEYS and r["model_id"] == "tiny/tuned"
        assert [set(c) for c in r["choices"]] == [{"index", "turns"}]
        assert r["answer_id"] == answer_id("tiny/tuned", r["question_id"], [r["choices"][0]["turns"]])
    answers = {a.question_id: a for a in load_answers(out)}
    assert [len(answers[q.question_id].turns) for q in QUESTIONS] == [1, 1, 2, 1]
    assert all(isinstance(t, str) for a in answers.values() for t in a.turns)


def test_batched_greedy_answers_equal_one_at_a_time_and_sampling_is_seeded(tiny, tmp_path: Path) -> None:
    model, tok = tiny

    def run(name: str, batch_size: int, seed: int) -> dict[int, list[str]]:
        answer_with_transformers(QUESTIONS, model, tok, name, tmp_path / f"{name}.jsonl", max_new_tokens=8,
                                 batch_size=batch_size, seed=seed, progress=False)
        return {a.question_id: a.turns for a in load_answers(tmp_path / f"{name}.jsonl")}

    batched, single, again, other_seed = run("b", 4, 0), run("s", 1, 0), run("a", 4, 0), run("o", 4, 1)
    # fermi, coding-math: temperature 0 -> greedy: left padding must not change a thing, nor must the seed
    for qid in (41, 66):
        assert batched[qid] == single[qid] == other_seed[qid]
    # the greedy answer is the model's argmax continuation of the chat prompt
    prompt = render(tok, "chat", [{"role": "user", "content": QUESTIONS[0].turns[0]}])
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert batched[41][0] == tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    # writing (0.7), knowledge (0.1): sampled; the same seed gives the same text, another seed another
    assert batched == again
    assert batched[1] != other_seed[1]


def test_adapter_free_loading_matches_plain_transformers(tiny) -> None:
    model, tok = tiny
    ref = AutoModelForCausalLM.from_pretrained(str(build_tiny_model()))
    assert not model.training
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        assert torch.equal(p, q), name
    assert tok.pad_token is not None and load_tokenizer(build_tiny_model()).pad_token == tok.pad_token


# ---- the driver: resume, failures (a scripted generator) -----------------------------------------------------


class Scripted:
    """A generator that answers `<question_id>-t<turn>-c<choice>` and records what it was asked."""

    def __init__(self, fail: set[int] | None = None):
        self.calls: list[TurnPrompt] = []
        self.fail = fail or set()

    def __call__(self, prompts):
        self.calls += prompts
        return [Generated(None, "boom") if p.question_id in self.fail and p.turn == 2
                else Generated(f"{p.question_id}-t{p.turn}-c{p.choice}", truncated=p.question_id == 1)
                for p in prompts]


def test_driver_feeds_back_answers_samples_per_category_and_draws_choices(tmp_path: Path) -> None:
    gen = Scripted()
    report = answer_questions(QUESTIONS, gen, "m", tmp_path / "m.jsonl", num_choices=2, system="あなたは助手です。",
                              group_size=3)
    assert report.answered == 4 and report.truncated == 1
    turn2 = [p for p in gen.calls if p.turn == 2]
    assert [(p.question_id, p.choice) for p in turn2] == [(7, 0), (7, 1)]
    assert turn2[1].messages == [
        {"role": "system", "content": "あなたは助手です。"}, {"role": "user", "content": "光合成とは何ですか。"},
        {"role": "assistant", "content": "7-t1-c1"}, {"role": "user", "content": "では、夜はどうなりますか。"}]
    assert {p.question_id: p.temperature for p in gen.calls} == {41: 0.0, 1: 0.7, 7: 0.1, 66: 0.0}
    seven = next(a for a in load_answers(tmp_path / "m.jsonl") if a.question_id == 7)
    assert [c.model_dump() for c in seven.choices] == [{"index": 0, "turns": ["7-t1-c0", "7-t2-c0"]},
                                                       {"index": 1, "turns": ["7-t1-c1", "7-t2-c1"]}]


def test_resume_answers_only_what_is_missing_after_a_kill(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    answer_questions(QUESTIONS, Scripted(), "m", out)
    records = lines(out)
    # a killed run: question 66 never written, question 7 with its first turn only, a line cut in half
    records[2]["choices"][0]["turns"] = records[2]["choices"][0]["turns"][:1]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records[:3])
    out.write_text(text + json.dumps(records[3], ensure_ascii=False)[:40], encoding="utf-8")

    gen = Scripted()
    report = answer_questions(QUESTIONS, gen, "m", out)
    assert (report.already_answered, report.answered) == (2, 2)
    assert sorted({p.question_id for p in gen.calls}) == [7, 66]
    resumed = lines(out)
    assert [r["question_id"] for r in resumed] == [41, 1, 7, 66], "one line per question, in question order"
    assert resumed[:2] == records[:2], "what was answered is kept as it was"
    assert resumed[2]["choices"][0]["turns"] == ["7-t1-c0", "7-t2-c0"]

    gen = Scripted()
    assert answer_questions(QUESTIONS, gen, "m", out).answered == 0 and gen.calls == []


def test_a_failed_question_is_reported_not_written_and_answered_by_a_rerun(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    report = answer_questions(QUESTIONS, Scripted(fail={7}), "m", out)
    assert report.failed == {"7": "turn 2, choice 0: boom"} and report.answered == 3
    assert [r["question_id"] for r in lines(out)] == [41, 1, 66]
    assert "question 7: turn 2, choice 0: boom" in str(report)
    assert answer_questions(QUESTIONS, Scripted(), "m", out).answered == 1
    assert [r["question_id"] for r in lines(out)] == [41, 1, 7, 66]


def test_another_models_answers_in_the_file_are_an_error(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    answer_questions(QUESTIONS[:1], Scripted(), "other", out)
    with pytest.raises(DataError, match=r"m\.jsonl, line 1: field 'model_id'"):
        read_answer_file(out, "m")
    with pytest.raises(ValueError, match="num_choices"):
        answer_questions(QUESTIONS, Scripted(), "m", tmp_path / "x.jsonl", num_choices=0)


def test_alpaca_stops_cut_a_base_model_that_runs_on() -> None:
    from jinstruct.answer.engines import _cut_at_stops

    assert _cut_at_stops("答えです。\n\n### 指示:\n次の", ALPACA_STOPS) == ("答えです。\n\n", True)
    assert _cut_at_stops("答えです。", ALPACA_STOPS) == ("答えです。", False)


# ---- an OpenAI-compatible endpoint ----------------------------------------------------------------------------


def test_endpoint_answers_with_category_temperatures_distinct_choices_and_failures(tmp_path: Path) -> None:
    questions = QUESTIONS + [Question(question_id=99, category="generic", turns=["壊れる [always500]"])]
    client, state = fake_client(tmp_path, max_retries=0)
    out = tmp_path / "answers" / "api-model.jsonl"
    with client:
        report = answer_with_client(questions, client, "api-model", out, max_tokens=200, num_choices=2, seed=3)
    assert report.answered == 4 and list(report.failed) == ["99"] and "500" in report.failed["99"]
    sent = {(b["messages"][-1]["content"], b["temperature"]) for b in state.bodies}
    assert ("日本に信号機はいくつありますか。", 0.0) in sent and ("夏祭りのお知らせを書いてください。", 0.7) in sent
    assert all(b["max_tokens"] == 200 for b in state.bodies)
    answers = {a.question_id: a for a in load_answers(out)}
    assert set(answers) == {41, 1, 7, 66}
    first, second = answers[1].choices
    assert first.turns != second.turns, "each choice is its own sample"
    # turn 2 is asked with the model's own first answer in the conversation
    turn2 = [b for b in state.bodies if b["messages"][-1]["content"] == "では、夜はどうなりますか。"]
    assert sorted(b["messages"][1]["content"] for b in turn2) == sorted(c.turns[0] for c in answers[7].choices)

    client, state = fake_client(tmp_path, max_retries=0)
    with client:
        again = answer_with_client(questions, client, "api-model", out, max_tokens=200, num_choices=2, seed=3)
    assert again.already_answered == 4 and again.answered == 0
    assert state.calls == 2, "only the failed question is asked again (its two choices); the rest is answered"
