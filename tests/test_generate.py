"""Self-instruct growth through the real LLM client, with scripted replies served in-process over ASGI.

The scripted endpoint answers request r (recognised by the sampling seed the client derives from its sample index)
with a numbered list of tasks 4..19: random-kanji instructions that pass the ROUGE-L filter, one copy of the
prompt's first demonstration that must not, every seventh reply cut off at max_tokens, request 5 refused (HTTP 400).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from jinstruct.generate.self_instruct import (
    RECIPE,
    GenerationStopped,
    ResumableOutput,
    SelfInstructRecipe,
    generate_self_instruct,
    load_generated,
    load_prompt,
    plot_kept_vs_generated,
    progress_path,
    request_series,
)
from jinstruct.io import DataError, read_json, read_jsonl
from jinstruct.plotting import in_language
from jinstruct.llm import EndpointSettings, LLMClient, ResponseCache
from jinstruct.llm.request import derived_seed
from jinstruct.filter.rouge import rouge_l_text
from jinstruct.formats.seed_task import Instance, SeedTask

SEED = 7
REFUSED = 5


def seeds(n: int = 8) -> list[SeedTask]:
    topics = ["季節", "料理", "電車", "天気", "俳句", "計算", "手紙", "旅行", "健康", "歴史"]
    return [SeedTask(id=f"seed_task_{i}", name=f"t{i}", instruction=f"{topics[i]}についての質問に答えてください。",
                     instances=[Instance(input="" if i % 2 else f"{topics[i]}の例", output=f"{topics[i]}の答えです。")],
                     is_classification=False) for i in range(n)]


def kanji(rng: random.Random, n: int) -> str:
    return "".join(chr(rng.randrange(0x4E00, 0x9FA0)) for _ in range(n))


def scripted_tasks(r: int, prompt: str) -> list[tuple[str, str, str]]:
    rng = random.Random(r)
    first_demo = re.search(r"^1\. 指示: (.*)$", prompt, re.MULTILINE).group(1)
    tasks = []
    for i in range(4, 20):
        instruction = first_demo if i == 7 else kanji(rng, 12) + "を説明してください。"
        if i == 9:  # shares 4 characters more with item 8: a near neighbour (ROUGE-L 0.64), still kept
            instruction = tasks[-1][0][:4] + instruction[4:]
        tasks.append((instruction, "" if i % 3 else kanji(rng, 8), kanji(rng, 20)))
    return tasks


def scripted_app(log: list[int] | None = None, log_path: Path | None = None, delay_s: float = 0.0,
                 broken: bool = False) -> FastAPI:
    """The scripted endpoint; each request's number goes to `log` (and a line of `log_path`) as it arrives."""
    import asyncio

    numbers = {derived_seed(SEED, r, 0): r for r in range(5000)}
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        r = numbers[body["seed"]]
        if log is not None:
            log.append(r)
        if log_path is not None:
            with log_path.open("a") as f:
                f.write(f"{r}\n")
        if delay_s:
            await asyncio.sleep(delay_s)
        if r == REFUSED:
            return JSONResponse({"error": {"message": "refused (scripted)"}}, status_code=400)
        prompt = body["messages"][-1]["content"]
        tasks = scripted_tasks(r, prompt)
        reason = "stop"
        if broken:
            text = "申し訳ありませんが、お手伝いできません。"
        elif "response_format" in body:
            text = json.dumps({"tasks": [{"instruction": i, "input": x, "output": o} for i, x, o in tasks]},
                              ensure_ascii=False)
        else:
            blocks = [f"{n}. 指示: {i}\n{n}. 入力:\n{x or '<入力なし>'}\n{n}. 出力:\n{o}" for n, (i, x, o) in enumerate(tasks, 4)]
            text = "###\n" + "\n###\n".join(blocks) + "\n###\n"
            if r % 7 == 3:
                text, reason = text[: len(text) - 10], "length"
        return JSONResponse({
            "id": f"chatcmpl-{r}", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(text)},
        })

    return app


def make_client(tmp: Path, app: FastAPI, concurrency: int = 4, cache: Path | None = None) -> LLMClient:
    settings = EndpointSettings(base_url="http://scripted.test/v1", model="scripted", api_key_env=None,
                                concurrency=concurrency, max_retries=0)
    return LLMClient(settings, cache or tmp / "cache.sqlite3", stage="02_generation", run_dir=tmp, progress=False,
                     asgi_app=app)


def recipe(**kw) -> SelfInstructRecipe:
    return SelfInstructRecipe.from_seeds(seeds(), **{"seed": SEED, **kw})


def run(tmp: Path, target: int, *, concurrency: int = 4, out: Path | None = None, log: list[int] | None = None,
        cache: Path | None = None, rec: SelfInstructRecipe | None = None, **kw):
    client = make_client(tmp, scripted_app(log), concurrency, cache)
    try:
        return generate_self_instruct(rec or recipe(), client, out or tmp / "generated.jsonl", target,
                                      progress=False, **kw)
    finally:
        client.close()


# ----- the recipe --------------------------------------------------------------------------------------------


def test_request_shows_k_numbered_seed_demos_and_asks_for_the_rest():
    rec = recipe()
    req = rec.request(0)
    prompt = req.messages[-1]["content"]
    assert req.temperature == 1.0 and req.top_p == 1.0 and req.sample_index == 0 and req.seed == SEED
    assert "\n20." in req.stop and req.json_schema is None
    shown = re.findall(r"^(\d+)\. 指示: (.*)$", prompt, re.MULTILINE)
    assert [n for n, _ in shown] == ["1", "2", "3"]
    seed_instructions = {s.instruction for s in seeds()}
    assert all(text in seed_instructions for _, text in shown)
    assert "4番から20番まで" in prompt and "{" not in prompt.replace("{\"", "")
    ids = req.tag.split(":")[2].split(",")
    assert req.tag.startswith(f"{RECIPE}:0:") and len(ids) == 3 and all(i.startswith("seed_task_") for i in ids)


def test_requests_are_a_deterministic_function_of_seed_and_number():
    a, b = recipe(), recipe()
    assert [a.request(r) for r in range(20)] == [b.request(r) for r in range(20)]
    prompts = {a.request(r).messages[-1]["content"] for r in range(20)}
    assert len(prompts) > 10  # different demonstrations
    assert len({a.request(r).sample_index for r in range(20)}) == 20
    assert recipe(seed=SEED + 1).request(3) != a.request(3)


def test_structured_recipe_asks_for_the_tasks_schema_without_stop():
    req = recipe(structured=True, num_demos=2, total=10).request(1)
    assert req.json_schema["properties"]["tasks"]["type"] == "array" and req.stop is None
    assert "3番から10番まで" in req.messages[-1]["content"]


def test_generated_demos_come_only_from_earlier_waves():
    from jinstruct.generate.self_instruct import Demo

    rec = recipe(num_generated_demos=1, wave=10)
    generated = [Demo(f"si-{i:06d}", f"生成{i}", "", "答") for i in range(5)]
    req = rec.request(12, generated)
    ids = req.tag.split(":")[2].split(",")
    assert sum(i.startswith("si-") for i in ids) == 1 and sum(i.startswith("seed_task_") for i in ids) == 2
    assert rec.request(3) == rec.request(3, [])  # nothing generated yet: seeds only
    assert rec.wave_start(12) == 10 and rec.wave_start(9) == 0


def test_recipe_checks_its_settings(tmp_path):
    with pytest.raises(ValueError, match="num_generated_demos"):
        recipe(num_generated_demos=4)
    with pytest.raises(ValueError, match="fewer than num_demos"):
        SelfInstructRecipe.from_seeds(seeds(2), num_demos=3)
    bad = tmp_path / "prompt.txt"
    bad.write_text("タスクを作って: {demos}", encoding="utf-8")
    with pytest.raises(DataError, match=r"\{next\}"):
        load_prompt(bad)
    bad.write_text("{demos} の後に {next} から {total} まで。JSON の例: {\"tasks\": []}", encoding="utf-8")
    with pytest.raises(DataError, match="stray brace"):
        load_prompt(bad)
    assert "{demos}" in load_prompt()


# ----- growth ------------------------------------------------------------------------------------------------


def test_reaches_exactly_the_target_without_near_duplicates(tmp_path):
    stats = run(tmp_path, 60)
    records = read_jsonl(tmp_path / "generated.jsonl")
    assert len(records) == 60 == stats.kept == stats.new_records
    assert [r["id"] for r in records] == [f"si-{i:06d}" for i in range(1, 61)]
    instructions = [r["instruction"] for r in records]
    seed_texts = [s.instruction for s in seeds()]
    assert max(rouge_l_text(a, b) for a, b in combinations(instructions, 2)) <= 0.7
    assert max(rouge_l_text(a, s) for a in instructions for s in seed_texts) <= 0.7
    first = records[0]
    assert first["recipe"] == RECIPE and first["model"] == "scripted" and first["request_id"] == "chatcmpl-0"
    assert len(first["source"]) == 3 and all(s.startswith("seed_task_") for s in first["source"])
    assert set(first) >= {"id", "instruction", "input", "output", "recipe", "source", "model", "request_id",
                          "most_similar", "rouge_l", "request"}
    assert any(r["input"] == "" for r in records) and any(r["input"] for r in records)
    by_id = {r["id"]: r for r in records}
    for r in records:  # neighbours are exact, at or above the Deduper's floor (0.5), most similar first
        scores = [n["rouge_l"] for n in r["most_similar"]]
        assert scores == sorted(scores, reverse=True) and all(0.5 <= x <= 0.7 for x in scores)
        assert r["rouge_l"] == (scores[0] if scores else None)
        for n in r["most_similar"]:
            other = by_id[n["id"]]["instruction"] if n["id"] in by_id else None
            assert n["instruction"] == other and n["rouge_l"] == round(rouge_l_text(r["instruction"], other), 4)
    near = [r for r in records if r["rouge_l"] is not None and r["rouge_l"] > 0.6]  # the scripted near pairs
    assert len(near) >= 3 and all(r["most_similar"][0]["id"] == f"si-{int(r['id'][3:]) - 1:06d}" for r in near)
    # the copied demonstration in every reply is rejected by dedup; the 7th request's reply was cut off
    assert stats.rejected["dedup"] >= stats.replies - 1  # (the last reply may reach the target first)
    assert stats.candidates == sum(stats.rejected.values()) + stats.kept - stats.rejected.get("parse:truncated", 0)
    assert stats.sent == stats.requests and stats.cached == 0
    assert 0 < stats.dedup_share < 1 and stats.requests_per_s > 0


def test_every_request_is_processed_in_order_and_logged(tmp_path):
    stats = run(tmp_path, 100)
    steps = read_jsonl(progress_path(tmp_path / "generated.jsonl"))
    assert [s["request"] for s in steps] == list(range(len(steps))) and len(steps) == stats.requests
    refused = steps[REFUSED]
    assert refused["error"] and "400" in refused["error"] and refused["kept"] == 0
    cut = steps[3]
    assert cut["finish_reason"] == "length" and cut["rejected"]["parse:truncated"] == 1 and cut["candidates"] == 15
    assert stats.failed == 1 and stats.truncated >= 1
    assert steps[-1]["kept_total"] == 100
    records = read_jsonl(tmp_path / "generated.jsonl")
    assert [r["request"] for r in records] == sorted(r["request"] for r in records)
    assert REFUSED not in {r["request"] for r in records}


def test_replies_beyond_the_target_are_dropped(tmp_path):
    stats = run(tmp_path, 25)  # the second reply holds more than the 25th record needs
    assert stats.kept == 25 and stats.rejected["over target"] > 0
    steps = read_jsonl(progress_path(tmp_path / "generated.jsonl"))
    assert steps[-1]["kept_total"] == 25 and steps[-1]["rejected"]["over target"] > 0


def test_output_does_not_depend_on_concurrency_or_timing(tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    run(one, 120, concurrency=1)
    run(many, 120, concurrency=16)
    assert (one / "generated.jsonl").read_bytes() == (many / "generated.jsonl").read_bytes()


def test_resume_continues_from_the_file_and_the_cache(tmp_path):
    fresh = tmp_path / "fresh"
    run(fresh, 90)
    sent: list[int] = []
    first = run(tmp_path, 40, log=sent)
    before = set(sent)
    again: list[int] = []
    second = run(tmp_path, 90, log=again)
    assert (tmp_path / "generated.jsonl").read_bytes() == (fresh / "generated.jsonl").read_bytes()
    # the last request of the first run stopped at 40 records: it is processed again (from the cache)
    assert second.resumed_from_requests == first.requests - 1 and second.resumed_from_records < 40
    assert not set(again) & (before - {REFUSED})  # answered once, never sent again (the refusal has no answer)
    processed = set(range(second.resumed_from_requests, second.resumed_from_requests + second.requests))
    assert second.cached == len(processed & before - {REFUSED}) > 1
    assert run(tmp_path, 90).requests == 0  # already complete: nothing to do


def test_mixed_demos_replay_identically_on_resume(tmp_path):
    rec = recipe(num_generated_demos=1, wave=4)
    fresh = tmp_path / "fresh"
    run(fresh, 150, rec=rec)
    records = read_jsonl(fresh / "generated.jsonl")
    late = [r for r in records if r["request"] >= 4]
    assert late and all(sum(s.startswith("si-") for s in r["source"]) == 1 for r in late)
    early = [r for r in records if r["request"] < 4]
    assert all(all(s.startswith("seed_task_") for s in r["source"]) for r in early)
    by_id = {r["id"]: r for r in records}
    for r in late:  # a generated demonstration always comes from an earlier wave
        (gen_id,) = [s for s in r["source"] if s.startswith("si-")]
        assert by_id[gen_id]["request"] < r["request"] - r["request"] % 4
    run(tmp_path, 70, rec=rec)
    sent: list[int] = []
    run(tmp_path, 150, rec=rec, log=sent)
    assert (tmp_path / "generated.jsonl").read_bytes() == (fresh / "generated.jsonl").read_bytes()


def test_structured_mode(tmp_path):
    stats = run(tmp_path, 40, rec=recipe(structured=True))
    assert stats.kept == 40 and stats.rejected["dedup"] >= stats.replies - 1
    assert "parse:truncated" not in stats.rejected


def test_task_filter_rejections_are_counted(tmp_path):
    def no_inputs(task):
        return "has input" if task["input"] else None

    stats = run(tmp_path, 30, task_filter=no_inputs)
    assert stats.rejected["filter:has input"] > 0
    assert all(r["input"] == "" for r in read_jsonl(tmp_path / "generated.jsonl"))


def test_resuming_with_other_settings_is_refused(tmp_path):
    run(tmp_path, 20)
    with pytest.raises(ValueError, match="num_demos"):
        run(tmp_path, 40, rec=recipe(num_demos=2))
    with pytest.raises(ValueError, match="threshold"):
        run(tmp_path, 40, threshold=0.5)
    with pytest.raises(ValueError, match="more than target"):
        run(tmp_path, 10)


def test_a_file_without_checkpoint_is_never_overwritten(tmp_path):
    out = tmp_path / "generated.jsonl"
    out.write_text('{"id": "mine"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="checkpoint"):
        run(tmp_path, 10)
    assert out.read_text(encoding="utf-8") == '{"id": "mine"}\n'


def test_lines_after_the_checkpoint_and_a_torn_tail_are_cut_off(tmp_path):
    fresh = tmp_path / "fresh"
    run(fresh, 70)
    run(tmp_path, 35)
    out = tmp_path / "generated.jsonl"
    with out.open("a", encoding="utf-8") as f:  # what a run killed between append and checkpoint leaves
        f.write(json.dumps({"id": "si-999999", "instruction": "幽霊", "request": 99}, ensure_ascii=False) + "\n")
        f.write('{"id": "si-9999')
    with progress_path(out).open("a") as f:
        f.write('{"request": 99')
    state = read_json(out.with_name("generated.state.json"))
    records, steps = ResumableOutput(out, state["params"]).open()
    assert len(records) == 35 and records[-1]["id"] == "si-000035" and len(steps) == state["steps"]
    assert out.read_bytes().endswith(b"\n") and b"si-999999" not in out.read_bytes()
    run(tmp_path, 70)
    assert out.read_bytes() == (fresh / "generated.jsonl").read_bytes()


def test_a_hopeless_endpoint_stops_with_a_message(tmp_path):
    client = make_client(tmp_path, scripted_app(broken=True))
    try:
        with pytest.raises(GenerationStopped, match="in a row kept nothing"):
            generate_self_instruct(recipe(), client, tmp_path / "generated.jsonl", 10, patience=6, progress=False)
        with pytest.raises(GenerationStopped, match="max_requests=8"):
            generate_self_instruct(recipe(), client, tmp_path / "generated.jsonl", 10, patience=100,
                                   max_requests=8, progress=False)
    finally:
        client.close()
    steps = read_jsonl(progress_path(tmp_path / "generated.jsonl"))
    assert len(steps) == 8 and all(s["kept"] == 0 for s in steps)  # checkpointed, resumable


def test_estimate_counts_requests_and_cached_answers(tmp_path):
    rec = recipe()
    client = make_client(tmp_path, scripted_app())
    try:
        est = rec.estimate(client, 200)
        assert est.requests == math.ceil(200 / (0.5 * 16)) and est.cached == 0
        assert est.completion_tokens == est.requests * 150 * 16
        generate_self_instruct(rec, client, tmp_path / "generated.jsonl", 30, progress=False)
        assert rec.estimate(client, 200).cached >= 3
    finally:
        client.close()


def test_request_series_and_figure(tmp_path):
    run(tmp_path, 100)
    series = request_series(tmp_path / "generated.jsonl")
    assert list(series["request"]) == list(range(len(series)))
    assert series["kept_total"].iloc[-1] == 100 and (series["generated"].diff().fillna(0) >= 0).all()
    assert (series["kept_total"] <= series["generated"]).all() and series["failed"].sum() == 1
    with in_language("en"):
        fig = plot_kept_vs_generated(series)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["kept (ROUGE-L <= threshold)"].get_ydata()) == list(series["kept_total"])
    assert list(lines["generated (parsed candidates)"].get_ydata()) == list(series["generated"])
    assert len(load_generated(tmp_path / "generated.jsonl")) == 100


# ----- a run killed by SIGKILL resumes without paying twice ---------------------------------------------------


def _child(workdir: str, target: str) -> None:
    """Run generation in this process (the parent kills it)."""
    work = Path(workdir)
    settings = EndpointSettings(base_url="http://scripted.test/v1", model="scripted", api_key_env=None,
                                concurrency=2, max_retries=0)
    client = LLMClient(settings, work / "cache.sqlite3", stage="02_generation", run_dir=work, progress=False,
                       asgi_app=scripted_app(log_path=work / "received.txt", delay_s=0.15))
    generate_self_instruct(recipe(), client, work / "generated.jsonl", int(target), flush_every_s=0.0,
                           progress=False)
    client.close()


def _answered(cache: Path) -> set[int]:
    return {row["request"]["sample_index"] for row in ResponseCache(cache).export()}


def test_killed_run_resumes_without_sending_an_answered_request_again(tmp_path):
    work = tmp_path / "killed"
    work.mkdir()
    target = 200
    cmd = [sys.executable, __file__, work.as_posix(), str(target)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(cmd, env=env)
    state = work / "generated.state.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        if state.exists() and 0 < read_json(state)["records"] < target // 2:
            break
        time.sleep(0.01)
    else:
        child.kill()
        pytest.fail("the child was not caught half way (it finished, failed or made no progress)")
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = read_json(state)["records"]
    assert 0 < killed_at < target
    answered = _answered(work / "cache.sqlite3")
    received_before = (work / "received.txt").read_text().split()
    subprocess.run(cmd, env=env, check=True, timeout=120)
    received_after = (work / "received.txt").read_text().split()[len(received_before):]
    assert not {int(r) for r in received_after} & answered
    assert len(received_before) + len(received_after) - len(set(received_before + received_after)) <= 2 * 2
    run(tmp_path / "clean", target)
    assert (work / "generated.jsonl").read_bytes() == (tmp_path / "clean" / "generated.jsonl").read_bytes()
    assert len(read_jsonl(work / "generated.jsonl")) == target


if __name__ == "__main__":
    _child(*sys.argv[1:3])


# ----- smaller sizes from a larger run (generate.from_run) ------------------------------------------------------


def test_a_prefix_of_a_larger_run_is_what_the_smaller_target_generates(tmp_path):
    from jinstruct.formats.layout import RunLayout
    from jinstruct.generate.reuse import take_prefix

    big, small, taken = (RunLayout(tmp_path / n) for n in ("big", "small", "taken"))
    run(tmp_path / "a", 60, out=big.generated)
    run(tmp_path / "b", 25, out=small.generated)  # generated anew, for the comparison only
    stats = take_prefix(big.root, taken.generated, 25, RECIPE)
    assert read_jsonl(taken.generated) == read_jsonl(small.generated) == read_jsonl(big.generated)[:25]
    assert (stats.taken, stats.source_records, stats.source) == (25, 60, big.generated)
    assert stats.table().loc["requests sent", "value"] == 0


class _Stage:
    """What run_generation asks of a notebook's stage; a client must never be opened."""

    def __init__(self, run_dir: Path, cfg):
        from jinstruct.formats.layout import RunLayout

        self.layout, self.cfg = RunLayout(run_dir), cfg

    def client(self, name):
        raise AssertionError(f"client {name!r} opened: an LLM would be called")


def test_from_run_takes_the_recipe_size_from_a_sibling_run_and_calls_nothing(tmp_path):
    from jinstruct.formats.layout import RunLayout
    from jinstruct.generate.recipes import describe, estimate_generation, run_generation
    from jinstruct.paths import configs_dir
    from jinstruct.run.schema import load_config

    source = RunLayout(tmp_path / "sweep" / "big")
    run(tmp_path, 30, out=source.generated)
    cfg = load_config(configs_dir() / "tiny.yaml", {"generate.self_instruct.target": 12, "generate.from_run": "big"})
    stage = _Stage(tmp_path / "sweep" / "small", cfg)
    assert "first 12 self_instruct records of run big" in describe(cfg.generate)
    assert estimate_generation(cfg.generate, stage).requests == 0
    stats = run_generation(cfg.generate, stage)
    assert stats.taken == 12 and read_jsonl(stage.layout.generated) == read_jsonl(source.generated)[:12]


def test_from_run_refuses_a_short_source_another_recipe_and_its_own_data(tmp_path):
    from jinstruct.formats.layout import RunLayout
    from jinstruct.generate.reuse import take_prefix

    with pytest.raises(DataError, match="has no generated data"):
        take_prefix(tmp_path / "missing", tmp_path / "out.jsonl", 5, RECIPE)
    src = RunLayout(tmp_path / "src")
    run(tmp_path, 10, out=src.generated)
    with pytest.raises(DataError, match="10 records, fewer than the 20"):
        take_prefix(src.root, tmp_path / "out.jsonl", 20, RECIPE)
    with pytest.raises(DataError, match=r"line 1: field 'recipe'.*'translate'"):
        take_prefix(src.root, tmp_path / "out.jsonl", 5, "translate")
    own = RunLayout(tmp_path / "own")
    run(tmp_path / "o", 4, out=own.generated)
    with pytest.raises(DataError, match="generated data of its own"):
        take_prefix(src.root, own.generated, 5, RECIPE)
    assert len(read_jsonl(own.generated)) == 4  # untouched
