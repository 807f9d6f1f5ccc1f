"""The OpenAI Batch API round trip against the fake app's /v1/files and /v1/batches."""

from __future__ import annotations

import json

import pytest
from fake_openai import FakeState, fake_client
from jinstruct.llm import BatchPending, BudgetExceeded, ChatRequest, EndpointSettings, LLMClient

PRICING = {"fake-model": {"input_per_mtok": 1000.0, "output_per_mtok": 2000.0}}


def batch_client(tmp_path, state=None, **kw):
    return fake_client(tmp_path, state or FakeState(polls_to_complete=2), use_batch_api=True, batch_poll_s=0.01, **kw)


def test_batch_round_trip_matches_answers_by_custom_id_and_retries_what_failed(tmp_path):
    requests = [ChatRequest.user(f"翻訳{i}") for i in range(4)] + [
        ChatRequest.user("一時的 [500x1]"),
        ChatRequest.user("だめ [400]"),
        ChatRequest.user("選択 [invalidx1]", choices=["はい", "いいえ"]),
    ]
    client, state = batch_client(tmp_path, pricing=PRICING)
    with client:
        results = client.chat_many(requests)
        assert [r.index for r in results] == list(range(7))
        assert [r.text.split(" #")[0] for r in results[:5]] == [f"答え: {q.messages[0]['content']}" for q in requests[:5]]
        assert "400" in results[5].error and results[5].calls == 1
        assert results[6].parsed in ("はい", "いいえ") and results[6].calls == 2
        # Round 1: all 7; round 2: the 500 and the invalid choice (as its next attempt); the 400 is final.
        assert state.batches_created == 2

        job_file = tmp_path / "run" / "batches" / "test.json"
        jobs = json.loads(job_file.read_text())["jobs"]
        assert [j["collected"] for j in jobs] == [True, True] and [j["requests"] for j in jobs] == [7, 2]
        first_input = (tmp_path / "run" / "batches" / jobs[0]["input"]).read_text().splitlines()
        lines = [json.loads(x) for x in first_input]
        assert [x["custom_id"] for x in lines][:5] == [r.key for r in results[:5]]
        assert all(x["method"] == "POST" and x["url"] == "/v1/chat/completions" for x in lines)
        assert lines[6]["body"]["structured_outputs"] == {"choice": ["はい", "いいえ"]}

        # Batch prices are half: cost is booked at the discount.
        r0 = results[0]
        full = (r0.usage.prompt_tokens * 1000 + r0.usage.completion_tokens * 2000) / 1e6
        assert r0.cost_usd == pytest.approx(full / 2) and not r0.cached
        assert client.ledger.record.batch_ids == [j["batch_id"] for j in jobs]

        again = client.chat_many(requests[:5] + requests[6:])
        assert all(r.cached for r in again) and state.batches_created == 2


def test_a_restarted_run_collects_its_batch_instead_of_paying_again(tmp_path):
    state = FakeState(polls_to_complete=10**9)
    requests = [ChatRequest.user(f"後で{i}") for i in range(5)]
    client, _ = batch_client(tmp_path, state, batch_wait_s=0.1)
    with client, pytest.raises(BatchPending, match="re-run the stage to collect it") as pending:
        client.chat_many(requests)
    job_file = tmp_path / "run" / "batches" / "test.json"
    batch_id = json.loads(job_file.read_text())["jobs"][0]["batch_id"]
    assert batch_id in str(pending.value) and state.batches_created == 1

    state.polls_to_complete = 0  # the job has finished meanwhile
    client, _ = batch_client(tmp_path, state)
    with client:
        results = client.chat_many(requests)
    assert all(r.ok for r in results) and state.batches_created == 1
    jobs = json.loads(job_file.read_text())["jobs"]
    assert len(jobs) == 1 and jobs[0]["batch_id"] == batch_id and jobs[0]["collected"]


def test_a_batch_whose_id_was_never_written_down_is_found_by_its_input(tmp_path):
    # A kill between batches.create and writing the id: the run folder does not know the job.
    state = FakeState(polls_to_complete=10**9)
    requests = [ChatRequest.user(f"孤児{i}") for i in range(3)]
    client, _ = batch_client(tmp_path, state, batch_wait_s=0.05)
    with client, pytest.raises(BatchPending):
        client.chat_many(requests)
    (tmp_path / "run" / "batches" / "test.json").unlink()
    state.polls_to_complete = 0
    client, _ = batch_client(tmp_path, state)
    with client:
        assert all(r.ok for r in client.chat_many(requests))
    assert state.batches_created == 1


def test_batch_budget_sends_only_what_fits(tmp_path):
    requests = [ChatRequest.user(f"予算{i}", max_tokens=20) for i in range(6)]
    # Worst case per request: (~7 prompt tokens * 1000 + 20 * 2000) / 1e6 / 2 = ~$0.024
    client, state = batch_client(tmp_path, pricing=PRICING, budget_usd=0.06)
    with client, pytest.raises(BudgetExceeded, match="2 of the first 6") as stop:
        client.chat_many(requests)
    assert [(r.index, r.ok) for r in stop.value.results] == [(0, True), (1, True)]
    assert client.ledger.record.cost_usd <= 0.06 and state.batches_created == 1


def test_batch_api_needs_a_run_folder_and_a_remote_endpoint(tmp_path):
    settings = EndpointSettings(base_url="http://127.0.0.1:9/v1", model="m", use_batch_api=True)
    with LLMClient(settings, tmp_path / "c.sqlite3", progress=False) as client, \
            pytest.raises(ValueError, match="needs a run folder"):
        client.chat_many([ChatRequest.user("x")])
