"""Recipe human_instructions (arXiv 2503.23714): the filters' exact counts on the shipped 120 instructions, sources,
translation with protected spans (LLM and DeepL, both faked), n responses, 0-10 scores, best-of-n, resuming after a
kill without paying twice, the Batch API, replicas, and the 450K x 6 estimate."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from fake_openai import FakeState, fake_client, serve_fake
from fastapi import FastAPI, Request

from jinstruct.formats.layout import RunLayout
from jinstruct.generate import human_instructions as hi
from jinstruct.generate.checkpoint import CheckpointedLines, final_lines, is_complete, read_state
from jinstruct.generate.human_filters import (
    FilterSettings,
    InstructionFilter,
    has_placeholder,
    outcome,
    skeleton,
)
from jinstruct.generate.human_sources import SourceSpec, iter_source
from jinstruct.generate.human_translate import (
    check_translation,
    from_deepl_xml,
    read_llm_translation,
    to_deepl_xml,
    translate_with_deepl,
    translation_request,
)
from jinstruct.io import DataError, read_jsonl
from jinstruct.llm import ChatRequest, EndpointSettings, LLMClient
from jinstruct.llm.cache import ResponseCache
from jinstruct.llm.request import ChatResult

SHIPPED = "data/human_instructions/instructions.jsonl"


def shipped_rows() -> list[dict]:
    return list(iter_source(SourceSpec()))


# ----- sources --------------------------------------------------------------------------------------------------


def test_sources_read_the_shipped_file_and_the_first_user_turn_of_conversations(tmp_path):
    rows = shipped_rows()
    assert len(rows) == 120 and rows[0]["conversation_id"] == "hi-0001" and rows[0]["language"] == "en"
    convs = tmp_path / "convs.jsonl"
    convs.write_text("\n".join(json.dumps(o, ensure_ascii=False) for o in [
        {"conversation_id": "a", "language": "English", "conversation": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "first"},
            {"role": "assistant", "content": "x"}, {"role": "user", "content": "second"}]},
        {"conversation_id": "b", "conversation": [{"role": "assistant", "content": "only"}]},
    ]) + "\n", encoding="utf-8")
    spec = SourceSpec(path=str(convs), conversation_field="conversation")
    assert [(r["conversation_id"], r["instruction"], r["language"]) for r in iter_source(spec)] == [
        ("a", "first", "English"), ("b", "", None)]
    # the Hugging Face path (streaming), here with the "json" builder over the same file
    hf = SourceSpec(dataset="json", data_files=str(convs), conversation_field="conversation", limit=1)
    assert hf.path is None and [r["instruction"] for r in iter_source(hf)] == ["first"]


def test_a_bad_source_row_names_the_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversation_id": "a", "instruction": "ok"}\n{"conversation_id": "b", "instruction": 3}\n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: field 'instruction': expected a string"):
        list(iter_source(SourceSpec(path=str(bad))))
    with pytest.raises(DataError, match=r"line 1: field 'turns': missing"):
        list(iter_source(SourceSpec(path=str(bad), conversation_field="turns")))


# ----- filters: the shipped file's deliberate problems, counted exactly (data/human_instructions/README.md) --------


@pytest.fixture(scope="module")
def filtered() -> list[dict]:
    rows = shipped_rows()
    f = InstructionFilter(FilterSettings())
    decisions, templates = f.decide(rows)
    return list(f.records(rows, decisions, f.names(rows, decisions, templates)))


def test_each_filter_removes_exactly_the_rows_the_data_card_lists(filtered):
    by = {r["conversation_id"]: r for r in filtered}
    out = outcome(filtered)
    assert out.dropped == {"empty": 3, "duplicate": 6, "too_long": 2, "language": 3, "template": 16}
    assert out.rows == 120 and out.kept == 90 and out.placeholders_kept == 8
    assert {k for k, r in by.items() if r["drop_reason"] == "empty"} == {"hi-0045", "hi-0053", "hi-0072"}
    assert {k: r["duplicate_user_instruction"] for k, r in by.items() if r["drop_reason"] == "duplicate"} == {
        "hi-0063": "hi-0013", "hi-0066": "hi-0017", "hi-0067": "hi-0029", "hi-0075": "hi-0021",
        "hi-0079": "hi-0026", "hi-0087": "hi-0059"}
    assert {k for k, r in by.items() if r["drop_reason"] == "too_long"} == {"hi-0074", "hi-0114"}
    assert {k: r["language_detected"] for k, r in by.items() if r["drop_reason"] == "language"} == {
        "hi-0099": "es", "hi-0041": "de", "hi-0044": "fr"}
    family_a = {"hi-0049", "hi-0064", "hi-0089", "hi-0094", "hi-0104", "hi-0110", "hi-0113", "hi-0118"}
    family_b = {"hi-0036", "hi-0038", "hi-0050", "hi-0051", "hi-0056", "hi-0080", "hi-0109", "hi-0111"}
    templates = {k: r["is_template_instruction"] for k, r in by.items() if r["drop_reason"] == "template"}
    assert set(templates) == family_a | family_b
    assert {templates[k] for k in family_a} == {"chemical company introduction"}
    assert len({templates[k] for k in family_b}) == 1 and "クイズ" in templates["hi-0036"]
    placeholders = {k for k, r in by.items() if r["has_placeholder"]}
    assert placeholders == {"hi-0002", "hi-0005", "hi-0009", "hi-0037", "hi-0048", "hi-0083", "hi-0084", "hi-0085"}
    assert all(by[k]["kept"] for k in placeholders)
    # a formula is not confidently any language: kept, though py3langid's best guess is not English
    assert by["hi-0039"]["kept"] and by["hi-0039"]["language_confidence"] < 0.5


def test_skeletons_take_the_slot_fillers_out():
    a = "Write an introduction of Hokuto Polymer Co., Ltd., a chemical company in Sendai, Japan. At least 300 words."
    b = "Write an introduction of Azure Coatings Ltd., a chemical company in Manchester, United Kingdom. At least 500 words."
    assert skeleton(a) == skeleton(b)
    assert skeleton("「火山」に関するクイズを5問") == skeleton("「江戸時代」に関するクイズを10問")
    assert has_placeholder("NAME_1 さんへ") and not has_placeholder("MY_NAME_1")


def test_template_settings_decide_what_is_a_template():
    rows = shipped_rows()
    strict = InstructionFilter(FilterSettings(template_min_size=9))  # the families have 8 rows each
    decisions, templates = strict.decide(rows)
    assert templates == {} and sum(d.reason == "template" for d in decisions) == 0
    flag_only = InstructionFilter(FilterSettings(drop_templates=False))
    decisions, templates = flag_only.decide(rows)
    assert sorted(templates.values()) == [8, 8] and sum(d.reason is None for d in decisions) == 106


# ----- the checkpointed output ------------------------------------------------------------------------------------


def test_checkpointed_lines_resume_from_the_last_checkpoint_and_restart_on_other_settings(tmp_path):
    path = tmp_path / "out.jsonl"
    out = CheckpointedLines(path, {"a": 1}, flush_every_s=3600)
    assert out.open() == 0
    for i in range(3):
        out.write({"i": i})
    out.flush()
    out.write({"i": 3})  # buffered, never flushed: a kill loses it
    with path.open("a") as f:
        f.write('{"i": 99}\n{"torn')  # written after the checkpoint by a killed run
    again = CheckpointedLines(path, {"a": 1})
    assert again.open() == 3 and [r["i"] for r in final_lines(path)] == [0, 1, 2]
    assert path.read_text().endswith('{"i": 2}\n')
    again.write({"i": 3})
    again.finish()
    assert is_complete(path, {"a": 1}) and not is_complete(path, {"a": 2})
    other = CheckpointedLines(path, {"a": 2})
    assert other.open() == 0 and other.restarted and path.read_text() == ""
    (tmp_path / "stray.jsonl").write_text('{"x": 1}\n')
    with pytest.raises(DataError, match="without its checkpoint"):
        CheckpointedLines(tmp_path / "stray.jsonl", {}).open()


# ----- translation ---------------------------------------------------------------------------------------------------


SOURCE = "Write a birthday card for NAME_1 at https://example.com/cards?id=7 using `print()` by 10:30."


def test_llm_translation_keeps_protected_spans_and_flags_what_it_lost():
    req = translation_request(SOURCE, "PROMPT", max_chars=80)
    payload = json.loads(req.messages[0]["content"].split("\n\n", 1)[1])
    masked = payload["instruction"]
    assert "NAME_1" not in masked and "example.com" not in masked and masked.count("⟦") == 4
    assert req.json_schema["properties"]["instruction"]["maxLength"] == 80

    def result(obj):
        return ChatResult(request=req, index=0, texts=[json.dumps(obj, ensure_ascii=False)], finish_reasons=["stop"])

    ok = read_llm_translation(SOURCE, result({"instruction": "⟦0⟧ への誕生日カードを ⟦1⟧ で ⟦2⟧ を使い ⟦3⟧ までに書いて"}))
    assert ok.status == "ok" and ok.text.startswith("NAME_1 への") and "https://example.com/cards?id=7" in ok.text
    lost = read_llm_translation(SOURCE, result({"instruction": "誕生日カードを書いて ⟦1⟧ ⟦2⟧ ⟦2⟧ ⟦3⟧"}))
    assert lost.status == "flagged" and lost.problems == ["lost 'NAME_1'", "'`print()`' appears 2 times"]
    cut = ChatResult(request=req, index=0, texts=['{"instruction": "誕生'], finish_reasons=["length"])
    assert read_llm_translation(SOURCE, cut).status == "failed"
    assert check_translation("Please summarise this article for me", "Please summarise this article")[1] == [
        "no Japanese in the translation (left untranslated?)"]


def _echo_translator() -> FastAPI:
    """An endpoint that "translates" by prefixing the masked text with Japanese (markers kept)."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict:
        body = json.loads(await request.body())
        masked = json.loads(body["messages"][-1]["content"].rsplit("\n\n", 1)[1])["instruction"]
        text = json.dumps({"instruction": f"訳: {masked}"}, ensure_ascii=False)
        return {"id": "x", "model": body["model"], "usage": {"prompt_tokens": 1, "completion_tokens": 1},
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}

    return app


def test_deepl_xml_round_trip_and_a_fake_deepl_server_with_the_official_client(tmp_path, monkeypatch):
    xml = to_deepl_xml("R&D > sales: `x` at https://a.io")
    assert xml == 'R&amp;D &gt; sales: <m i="0"/> at <m i="1"/>'
    assert from_deepl_xml('使う &lt;b&gt; <m i="0"/> と <m i="1"/>') == "使う <b> ⟦0⟧ と ⟦1⟧"

    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # DeepL's /v2/translate: JSON in, {"translations": [...]} out
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(body)
            out = {"translations": [{"detected_source_language": "EN", "text": "訳 " + t, "billed_characters": len(t)}
                                    for t in body["text"]]}
            data = json.dumps(out, ensure_ascii=False).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from jinstruct.generate.human_translate import deepl_translator

        monkeypatch.delenv("DEEPL_AUTH_KEY", raising=False)
        with pytest.raises(RuntimeError, match="DEEPL_AUTH_KEY"):
            deepl_translator()
        monkeypatch.setenv("DEEPL_AUTH_KEY", "fake-key:fx")
        translator = deepl_translator(server_url=f"http://127.0.0.1:{server.server_port}")
        cache = ResponseCache(tmp_path / "cache.sqlite3")
        out = translate_with_deepl([SOURCE, "What is 2+2?"], translator, cache)
        assert [t.status for t in out] == ["ok", "ok"] and out[0].translation == "deepl"
        assert out[0].text.startswith("訳 Write a birthday card for NAME_1 at https://example.com/cards?id=7")
        assert calls[0]["tag_handling"] == "xml" and calls[0]["ignore_tags"] == ["m"] and calls[0]["target_lang"] == "JA"
        again = translate_with_deepl([SOURCE, "What is 2+2?"], translator, cache)
        assert [t.text for t in again] == [t.text for t in out] and len(calls) == 1  # paid once
        cache.close()
    finally:
        server.shutdown()


# ----- the recipe end to end against fake endpoints ---------------------------------------------------------------


def run_recipe(tmp_path, name="run", state=None, responder_kw=None, **cfg_kw):
    """The recipe over the shipped file with a fake responder and judge (scores from its JSON instances: 0-9)."""
    options = {"n": 3, "judge_mode": "json", "chunk": 32, "translate": "none"} | cfg_kw
    cfg = hi.HumanInstructionsConfig(**options)
    layout = RunLayout(tmp_path / name)
    state = state or FakeState()
    responder, _ = fake_client(tmp_path, state, stage="responses", **(responder_kw or {}))
    judge, _ = fake_client(tmp_path, state, stage="scores", **(responder_kw or {}))
    with responder, judge:
        rep = hi.run_human_instructions(cfg, layout, translator_client=None, responder=responder, judge=judge,
                                        progress=False)
    return cfg, layout, rep, state


def test_the_recipe_samples_n_scores_each_0_to_10_and_keeps_the_best(tmp_path):
    cfg, layout, rep, state = run_recipe(tmp_path)
    records = read_jsonl(layout.generated)
    assert len(records) == 90 and rep.answered == 90 and rep.responses == 270
    responses = [b for b in state.bodies if "response_format" not in b]
    assert len(responses) == 90 and {b["n"] for b in responses} == {3}  # one request with n per instruction
    assert len(state.bodies) == 90 + 270  # and one grading per response
    for r in records:
        scored = r["synthesized_assistant_responses"]
        assert r["best_response_index"] == hi.best_response(scored)
        assert r["output"] == scored[r["best_response_index"]]["content"].strip()
        assert all(0 <= s["preference_score"] <= 9 and s["token_length"] > 0 and s["judgement"] for s in scored)
        assert r["id"] == r["conversation_id"] == r["source"] and r["recipe"] == "human_instructions"
        assert r["duplicate_user_instruction_ja"] is None and r["is_template_instruction"] is None
    assert sum(r["has_placeholder"] for r in records) == 8
    dropped = read_jsonl(layout.hi_dropped)
    assert len(dropped) == 30 and {(d["stage"], d["reason"]) for d in dropped} == {
        ("filters", "empty"), ("filters", "duplicate"), ("filters", "too_long"), ("filters", "language"),
        ("filters", "template")}
    assert rep.selection.kept == 90 and sum(rep.scores.values()) == 270 and sum(rep.best_scores.values()) == 90
    card = layout.generation_card.read_text()
    assert "| template" in card and "![score distribution](../figures/02_scores.png)" in card
    assert layout.figure("02_scores").with_suffix(".png").exists()

    # a minimum score drops the instructions whose best response is below it; in another run folder sharing the
    # LLM cache, nothing is asked again
    calls = state.calls
    _, _, rep2, _ = run_recipe(tmp_path, name="again", state=state, min_score=5)
    assert state.calls == calls
    best = [max(s["preference_score"] for s in r["synthesized_assistant_responses"]) for r in records]
    below = sum(b < 5 for b in best)
    assert rep2.selection.kept == 90 - below and rep2.selection.dropped[("select", "below_min_score")] == below


def test_best_response_breaks_ties_by_fewer_tokens_and_skips_repetitive_or_unscored():
    rs = [{"preference_score": 8, "token_length": 50}, {"preference_score": 8, "token_length": 20},
          {"preference_score": None, "token_length": 1}, {"preference_score": 9, "token_length": 90,
                                                          "repetition_flag": True}]
    assert hi.best_response(rs) == 1 and hi.best_response(rs, skip_repetitive=False) == 3
    assert hi.best_response([{"preference_score": None, "token_length": 3}]) is None
    assert hi.compression_ratio("東京は日本の首都です。" * 30) > 2.4 > hi.compression_ratio(
        "東京は日本の首都で、政治と経済の中心です。人口はおよそ千四百万人で、世界でも有数の大都市です。")


def test_a_killed_run_resumes_each_sub_stage_and_pays_for_nothing_twice(tmp_path):
    state = FakeState()
    _, whole, _, _ = run_recipe(tmp_path / "a", state=FakeState())

    class Killed(Exception):
        pass

    original = LLMClient.chat_many
    seen = {"n": 0}

    def dies_after_the_third_chunk(self, *args, **kwargs):
        results = original(self, *args, **kwargs)  # answered and cached, but never written
        seen["n"] += 1
        if seen["n"] == 3:
            raise Killed
        return results

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LLMClient, "chat_many", dies_after_the_third_chunk)
        with pytest.raises(Killed):
            run_recipe(tmp_path / "b", state=state)
    layout = RunLayout(tmp_path / "b" / "run")
    assert read_state(layout.hi_responses)["lines"] == 64 and not read_state(layout.hi_responses)["complete"]
    calls = state.calls
    run_recipe(tmp_path / "b", state=state)
    assert state.calls - calls == 270  # the 26 killed instructions' responses came from the cache; scores were new
    assert read_jsonl(layout.generated) == read_jsonl(whole.generated)


def test_responses_and_scores_through_the_batch_api(tmp_path):
    state = FakeState(polls_to_complete=1)
    _, layout, rep, _ = run_recipe(tmp_path, state=state, responder_kw={"use_batch_api": True, "batch_poll_s": 0.01})
    assert state.batches_created == 3 + 3  # 90 instructions in chunks of 32: one job per chunk, per sub-stage
    _, live, _, _ = run_recipe(tmp_path / "live")
    assert read_jsonl(layout.generated) == read_jsonl(live.generated)


def test_llm_translation_inside_the_recipe(tmp_path):
    cfg = hi.HumanInstructionsConfig(n=1, judge_mode="json", stages=["sources", "filters", "translate"])
    layout = RunLayout(tmp_path / "run")
    settings = EndpointSettings(base_url="http://translator.test/v1", model="mt", api_key_env=None)
    with LLMClient(settings, tmp_path / "c.sqlite3", progress=False, asgi_app=_echo_translator()) as client:
        hi.run_human_instructions(cfg, layout, translator_client=client, responder=None, judge=None, progress=False)
        assert client.ledger.record.requests == 53  # the 90 kept rows less the 37 already in Japanese
    rows = {r["conversation_id"]: r for r in final_lines(layout.hi_translated)}
    assert len(rows) == 90
    assert rows["hi-0009"]["instruction_ja"].startswith("訳: You are NAME_1, a pirate")
    assert rows["hi-0009"]["translation"] == "llm" and rows["hi-0009"]["translation_status"] == "ok"
    assert rows["hi-0002"]["translation"] == "none"  # already Japanese


def test_requests_are_spread_over_replicas(tmp_path):
    import httpx

    with serve_fake() as a, serve_fake() as b:
        settings = EndpointSettings(base_url=a, replicas=[b], model="fake-model", api_key_env=None, concurrency=4)
        with LLMClient(settings, tmp_path / "c.sqlite3", progress=False) as client:
            results = client.chat_many([ChatRequest.user(f"質問{i}") for i in range(24)])
        assert all(r.ok for r in results)
        calls = [httpx.get(u.removesuffix("/v1") + "/stats").json()["calls"] for u in (a, b)]
    assert sum(calls) == 24 and min(calls) >= 6
    with pytest.raises(ValueError, match="http"):
        EndpointSettings(base_url=a, replicas=["ftp://x"], model="m")


# ----- the estimate at scale ---------------------------------------------------------------------------------------


class CountingStage:
    def __init__(self, tmp_path, endpoints):
        self.layout = RunLayout(tmp_path / "run")
        self.cfg = type("Cfg", (), {"seed": 0})()
        self.endpoints, self.tmp = endpoints, tmp_path

    def client(self, name):
        return LLMClient(self.endpoints[name], self.tmp / "cache.sqlite3", progress=False)


def test_estimate_450k_instructions_6_responses_and_6_scores_api_and_vllm(tmp_path):
    api = EndpointSettings(base_url="https://api.example/v1", model="m", api_key_env=None,
                           pricing={"m": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}})
    vllm = EndpointSettings(base_url="http://127.0.0.1:8000/v1", model="llama", api_key_env=None,
                            tokens_per_s=2500, gpus_per_replica=8)
    cfg = hi.HumanInstructionsConfig(estimate_instructions=450_000, n=6, responder="vllm", judge="api",
                                     translator="api")
    translation, responding, scoring = hi.HumanInstructions.estimate(cfg, "api", CountingStage(
        tmp_path, {"api": api, "vllm": vllm}))
    responses, scores = responding.estimate, scoring.estimate
    assert responses.requests == 450_000 and responses.completion_tokens == 450_000 * 6 * 600
    assert responses.gpu_hours == pytest.approx(450_000 * 6 * 600 / 2500 / 3600 * 8)
    assert scores.requests == 2_700_000 and scores.completion_tokens == 2_700_000 * 300
    assert scores.prompt_tokens > 2_700_000 * 600  # each grading shows the judge prompt, instruction and response
    assert scores.cost_usd == pytest.approx((scores.prompt_tokens * 1.0 + scores.completion_tokens * 2.0) / 1e6,
                                            rel=1e-6)
    assert (translation.endpoint, responding.endpoint, scoring.endpoint) == ("api", "vllm", "api")
    assert translation.estimate.requests == 450_000 * 70 // 120  # the rows declared Japanese are not translated


@pytest.mark.slow
def test_the_tiny_config_runs_the_recipe_offline_through_the_notebooks(tmp_path):
    """Stages 01-03 of `configs/tiny.yaml --set generate.recipe=human_instructions`, as the runner runs them: the
    embedded tiny model translates, answers and judges; stage 03's dataset card carries the generation card."""
    from jinstruct.io import read_json
    from jinstruct.paths import configs_dir
    from jinstruct.run.estimate import estimate_run
    from jinstruct.run.runner import Runner, overrides_dict
    from jinstruct.run.stage import Stage

    overrides = [f"llm.cache={tmp_path / 'llm_cache.sqlite'}", "generate.recipe=human_instructions"]
    outcomes = Runner(configs_dir() / "tiny.yaml", overrides, runs_dir=tmp_path, name="tiny-hi",
                      log=lambda m: None).run("01-03")
    assert [o.status for o in outcomes] == ["ok"] * 3
    run = RunLayout(tmp_path / "tiny-hi")
    filtered = outcome(final_lines(run.hi_filtered))
    assert filtered.dropped == {"empty": 3, "duplicate": 6, "too_long": 2, "language": 3, "template": 16}
    records = read_jsonl(run.generated)
    assert 0 < len(records) <= 90 and all(len(r["synthesized_assistant_responses"]) == 3 for r in records)
    assert all(0 <= s["preference_score"] <= 10 for r in records for s in r["synthesized_assistant_responses"]
               if s["preference_score"] is not None)
    card = run.dataset_card.read_text()
    assert "## Generation: human-written instructions" in card and "### Score distribution" in card
    manifest = read_json(run.manifest)["stages"]["02_generation"]
    assert manifest["status"] == "ok" and manifest["llm"]["failed"] == 0
    st = Stage.open("estimate", configs_dir() / "tiny.yaml", run.root, overrides_dict(overrides))
    rows = [r for r in estimate_run(st) if r.stage == "02_generation"]
    assert len(rows) == 3 and all(r.estimate.to_send == 0 and r.estimate.requests > 0 for r in rows)
