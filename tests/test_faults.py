"""The generation and judging stages against the fault-injecting endpoint (`fake_openai`: 429 with and without
Retry-After, 500, hangs, malformed bodies, empty choices on a fixed share of first calls): no record is lost, the
output is the one a fault-free run makes, and no distinct request is paid twice, within one process (identical
requests in flight share one call) or across processes sharing the cache (leases)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FAULT_KINDS, FakeState, fake_client, serve_fake, server_stats

from jinstruct.answer.records import make_answer
from jinstruct.formats.fastchat import Question
from jinstruct.formats.seed_task import load_seed_tasks
from jinstruct.generate.self_instruct import SelfInstructRecipe, generate_self_instruct
from jinstruct.judge.engine import judge_pairwise, judge_single
from jinstruct.judge.prompts import load_prompts, pairwise_tasks, single_tasks
from jinstruct.llm import ChatRequest
from jinstruct.llm.ledger import cost_usd
from jinstruct.llm.settings import ModelPrice

ROOT = Path(__file__).resolve().parent.parent
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
FAULTY = dict(timeout_s=1.0, max_retries=6, backoff_base_s=0.01, backoff_max_s=0.05, pricing={"fake-model": PRICE})
RATE = 0.35  # the share of distinct requests whose first call fails


def charged_usd(state: FakeState) -> float:
    price = ModelPrice(**PRICE)
    return sum(cost_usd(price, p, c) for p, c in state.usage)


def account(state: FakeState) -> dict[str, int]:
    """What the endpoint saw: calls sent, distinct requests, answers billed, requests billed more than once."""
    return {"sent": state.calls, "distinct": len(state.received), "charged": sum(state.charged.values()),
            "paid_twice": sum(1 for n in state.charged.values() if n > 1), "injected": sum(state.injected.values())}


def generate(tmp: Path, state: FakeState, target: int) -> tuple[list[dict[str, Any]], Any]:
    client, _ = fake_client(tmp, state, concurrency=4, stage="02_generation", **FAULTY)
    recipe = SelfInstructRecipe.from_seeds(load_seed_tasks(ROOT / "data/seeds/ja_seed_tasks.jsonl"), seed=0,
                                           max_tokens=1000)
    with client:
        generate_self_instruct(recipe, client, tmp / "generated.jsonl", target, progress=False)
    lines = (tmp / "generated.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x) for x in lines], client.ledger.record


def test_generation_under_faults_loses_no_record_and_pays_each_request_once(tmp_path):
    clean_state = FakeState(tasks=True)
    clean, _ = generate(tmp_path / "clean", clean_state, 60)
    state = FakeState(tasks=True, fault_rate=RATE, hang_s=5.0, retry_after="0.01")
    faulty, ledger = generate(tmp_path / "faulty", state, 60)

    n = account(state)
    print(f"\ngeneration under faults: {n} ({dict(state.injected)}); fault-free: {account(clean_state)}")
    assert len(faulty) == 60 and [r["id"] for r in faulty] == [f"si-{i:06d}" for i in range(1, 61)]
    same = ("id", "instruction", "input", "output", "source", "request")
    assert [{k: r[k] for k in same} for r in faulty] == [{k: r[k] for k in same} for r in clean], \
        "the faults change nothing in the output"
    assert set(state.injected) == set(FAULT_KINDS) and n["injected"] >= 8
    assert n["paid_twice"] == 0 and n["charged"] <= n["distinct"]
    # only a first call can fail, and it is sent again once (unless the target was reached meanwhile)
    assert max(state.received.values()) == 2 and n["sent"] <= n["distinct"] + n["injected"]
    # the ledger books every call the endpoint saw, and exactly what it billed
    assert (ledger.calls, ledger.failed_calls) == (n["sent"], n["injected"])
    assert ledger.cost_usd == pytest.approx(charged_usd(state))


QUESTIONS = [Question(question_id=i, category=c, turns=[f"{c}の質問{i}"])
             for i, c in enumerate(["writing", "roleplay", "knowledge", "generic", "common-sense", "fermi"], 1)]


def answers() -> dict[str, dict[Any, Any]]:
    """Three models; `copycat` gives `tuned`'s answers to half the questions, so the judge sees identical prompts."""
    out: dict[str, dict[Any, Any]] = {}
    for m in ("tuned", "base", "copycat"):
        out[m] = {}
        for q in QUESTIONS:
            who = "tuned" if m == "copycat" and q.question_id % 2 else m
            out[m][q.question_id] = make_answer(q.question_id, m, [[f"{who}の答え{q.question_id}"]])
    return out


def judge(tmp: Path, state: FakeState) -> tuple[list[dict[str, Any]], Any, int]:
    prompts = load_prompts()
    ans = answers()
    models = sorted(ans)
    pairs = pairwise_tasks(QUESTIONS, ans, models, prompts, baseline="base")
    singles = single_tasks(QUESTIONS, ans, models, prompts)
    client, _ = fake_client(tmp, state, concurrency=6, stage="06_judging", **FAULTY)
    common = dict(mode="json", max_tokens=64, max_attempts=2, judge_name="fake-judge", echo=False)
    with client:
        p = judge_pairwise(client, pairs, tmp / "judgments", **common)
        s = judge_single(client, singles, tmp / "judgments", **common)
    assert (p.errors_left, s.errors_left) == (0, 0)
    records = []
    for path in (p.path, s.path):
        records += [{k: v for k, v in json.loads(x).items() if k != "tstamp"}
                    for x in path.read_text(encoding="utf-8").splitlines()]
    return records, client.ledger.record, 2 * len(pairs) + len(singles)


def test_judging_under_faults_loses_no_judgment_and_pays_each_request_once(tmp_path):
    clean_state = FakeState()
    clean, _, asked = judge(tmp_path / "clean", clean_state)
    state = FakeState(fault_rate=RATE, hang_s=5.0, retry_after="0.01")
    faulty, ledger, _ = judge(tmp_path / "faulty", state)

    n = account(state)
    print(f"\njudging under faults: {asked} requests asked, {n} ({dict(state.injected)}); "
          f"fault-free: {account(clean_state)}")
    key = lambda r: (r["question_id"], str(r.get("model") or (r["model_1"], r["model_2"])), r["turn"])  # noqa: E731
    assert sorted(faulty, key=key) == sorted(clean, key=key), "every judgment made, the same as without faults"
    assert len(faulty) == 2 * len(QUESTIONS) + 3 * len(QUESTIONS)
    # the judge is asked the same prompt for tuned and copycat: identical requests share one call
    assert n["distinct"] < asked and n["distinct"] == account(clean_state)["distinct"]
    assert n["paid_twice"] == 0 and n["sent"] == n["distinct"] + n["injected"]
    assert (ledger.calls, ledger.failed_calls) == (n["sent"], n["injected"])
    assert ledger.cost_usd == pytest.approx(charged_usd(state))


def test_identical_requests_in_flight_share_one_call(tmp_path):
    client, state = fake_client(tmp_path, FakeState(delay_s=0.2), concurrency=8)
    with client:
        results = client.chat_many([ChatRequest.user(f"同じ{i % 3}") for i in range(12)])
    assert all(r.ok for r in results) and state.calls == 3
    assert sum(r.calls for r in results) == 3 and sum(r.cached for r in results) == 9
    assert [r.text for r in results[:3]] == [r.text for r in results[3:6]]


CHILD = """
import sys, time
from pathlib import Path
from jinstruct.llm import ChatRequest, EndpointSettings, LLMClient
url, cache, n, order, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], Path(sys.argv[5])
settings = EndpointSettings(base_url=url, model="fake-model", api_key_env=None, concurrency=4)
numbers = range(n) if order == "forward" else reversed(range(n))
with LLMClient(settings, cache, stage="sweep", progress=False) as client:
    Path(str(go) + "." + order).touch()
    while not go.exists():  # both start together
        time.sleep(0.01)
    results = client.chat_many([ChatRequest.user(f"共有{i}") for i in numbers])
print(sum(r.ok for r in results), sum(r.calls for r in results))
"""


def test_two_processes_sharing_the_cache_send_each_request_once(tmp_path):
    """Two runs of a sweep at once on one cache, one going through the requests forward, the other backward: a
    request one is sending, the other waits for (its lease) instead of sending it too."""
    n, go = 40, tmp_path / "go"
    with serve_fake(delay_s=0.15) as url:
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, url, str(tmp_path / "cache.sqlite3"), str(n), order,
                                   str(go)], stdout=subprocess.PIPE, text=True) for order in ("forward", "backward")]
        while not all(Path(f"{go}.{o}").exists() for o in ("forward", "backward")):
            assert all(p.poll() is None for p in procs)
            time.sleep(0.02)
        go.touch()
        outs = [p.communicate(timeout=240)[0].split() for p in procs]
        stats = server_stats(url)
    assert [p.returncode for p in procs] == [0, 0]
    print(f"\ntwo processes, one cache: {stats['calls']} requests sent for {stats['distinct']} distinct "
          f"(calls per process: {[int(o[1]) for o in outs]})")
    assert [int(o[0]) for o in outs] == [n, n]
    assert stats["distinct"] == n and stats["calls"] == n, "each distinct request sent once"
    assert sum(int(o[1]) for o in outs) == n and min(int(o[1]) for o in outs) > 0, "both sent a share"


@pytest.mark.parametrize("kind", ["429", "429bare"])
def test_rate_limits_with_and_without_retry_after_are_retried(tmp_path, kind):
    state = FakeState(fault_rate=1.0, fault_kinds=(kind,), retry_after="0.05")
    client, _ = fake_client(tmp_path, state, backoff_base_s=0.01, backoff_max_s=0.1)
    with client:
        results = client.chat_many([ChatRequest.user(f"制限{i}") for i in range(5)])
    assert all(r.ok and r.calls == 2 for r in results)
    assert state.injected[kind] == 5 and account(state)["paid_twice"] == 0


def test_fault_kinds_are_the_documented_ones():
    assert set(FAULT_KINDS) == {"429", "429bare", "500", "hang", "garbage", "empty"}
