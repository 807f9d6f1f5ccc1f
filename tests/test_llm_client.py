"""The LLM client against a local fault-injecting OpenAI-compatible app (in-process, no network)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from fake_openai import FakeState, fake_client, serve_fake
from fastapi import FastAPI, Request
from jinstruct.llm import (
    BudgetExceeded,
    ChatRequest,
    EndpointSettings,
    LLMClient,
    MissingAPIKey,
    ReplyError,
    ResponseCache,
    resolve_api_key,
)
from jinstruct.llm.limits import RateLimiter, RetryAfterTooLong, backoff_s, retry_after_s
from jinstruct.llm.transport import aiohttp_available

SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
    "additionalProperties": False,
}
PRICING = {"fake-model": {"input_per_mtok": 1000.0, "output_per_mtok": 2000.0}}


def test_faults_are_retried_nothing_is_lost_and_order_is_kept(tmp_path):
    faults = ["[429x2]", "[500x1]", "[garbagex1]", "[emptyx1]", "[slowx1]", ""]
    failed_calls = {"[429x2]": 2, "[500x1]": 1, "[garbagex1]": 1, "[emptyx1]": 1, "[slowx1]": 1, "": 0}
    prompts = [f"質問{i} {faults[i % len(faults)]}" for i in range(36)]
    client, _ = fake_client(tmp_path, FakeState(slow_s=3.0), concurrency=8, timeout_s=0.4)
    with client:
        results = client.chat_many([ChatRequest.user(p) for p in prompts])
    assert [r.index for r in results] == list(range(36))
    assert all(r.error is None for r in results)
    assert [r.text.split(" #")[0] for r in results] == [f"答え: {p}" for p in prompts]
    expected_failures = sum(failed_calls[faults[i % len(faults)]] for i in range(36))
    record = client.ledger.record
    assert record.failed_calls == expected_failures
    assert record.calls == 36 + expected_failures == sum(r.calls for r in results)
    assert record.requests == 36 and record.failed == 0


BACKENDS = ["openai", pytest.param("aiohttp", marks=pytest.mark.skipif(not aiohttp_available(),
                                                                     reason="aiohttp is not installed"))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_faults_over_a_real_socket_with_each_http_backend(tmp_path, monkeypatch, backend):
    secret = "sk-socket-Zq8dontleak"
    monkeypatch.setenv("JINSTRUCT_FAKE_KEY", secret)
    prompts = ["a [429x2]", "b [500x1]", "c [garbagex1]", "d [emptyx1]", "e [slowx1]", "f", "g [400]", "h [always500]"]
    with serve_fake(slow_s=3.0, require_key=secret) as url:
        settings = EndpointSettings(base_url=url, model="fake-model", api_key_env="JINSTRUCT_FAKE_KEY", concurrency=6,
                                    http_backend=backend, timeout_s=0.5, backoff_base_s=0.01, backoff_max_s=0.05,
                                    max_retries=3)
        with LLMClient(settings, tmp_path / "c.sqlite3", progress=False) as client:
            results = client.chat_many([ChatRequest.user(p) for p in prompts])
        monkeypatch.setenv("JINSTRUCT_FAKE_KEY", secret + "-wrong")
        with LLMClient(settings, tmp_path / "c.sqlite3", progress=False) as client:
            denied = client.chat(ChatRequest.user("who am I"))
    assert [r.text.split(" #")[0] for r in results[:6]] == [f"答え: {p}" for p in prompts[:6]]
    assert [r.calls for r in results[:6]] == [3, 2, 2, 2, 2, 1]
    assert "400" in results[6].error and "bad request (injected)" in results[6].error and results[6].calls == 1
    assert "500" in results[7].error and "gave up after 4 attempts" in results[7].error
    assert "401" in denied.error and "Incorrect API key" in denied.error and secret not in denied.error


def test_a_request_that_keeps_failing_is_reported_without_taking_others_down(tmp_path):
    client, state = fake_client(tmp_path, max_retries=2)
    with client:
        results = client.chat_many([ChatRequest.user("a"), ChatRequest.user("b [always500]"),
                                    ChatRequest.user("c [400]"), ChatRequest.user("d")])
    ok_a, broken, bad, ok_d = results
    assert ok_a.ok and ok_d.ok
    assert "500" in broken.error and "gave up after 3 attempts" in broken.error and broken.calls == 3
    assert "400" in bad.error and bad.calls == 1  # a client error is not retried
    with pytest.raises(ReplyError, match="request 1 failed"):
        _ = broken.text
    assert client.ledger.record.failed == 2
    assert state.by_prompt["b [always500]"] == 3


def test_retry_after_is_honoured_instead_of_the_backoff(tmp_path):
    # The backoff alone would wait at least 0.5 * 5 s; the server asks for 0.3 s.
    client, _ = fake_client(tmp_path, FakeState(retry_after="0.3"), backoff_base_s=5.0, backoff_max_s=10.0)
    with client:
        t0 = time.monotonic()
        result = client.chat(ChatRequest.user("x [429x1]"))
        elapsed = time.monotonic() - t0
    assert result.ok and result.calls == 2
    assert 0.3 <= elapsed < 2.0


def test_backoff_is_exponential_capped_and_reads_every_retry_after_form():
    for retry in range(8):
        expected = min(8.0, 0.5 * 2**retry)
        assert all(0.5 * expected <= backoff_s(retry, 0.5, 8.0) <= expected for _ in range(20))
    assert backoff_s(3, 0.5, 8.0, {"retry-after": "2"}) == 2.0
    assert backoff_s(0, 0.5, 8.0, {"retry-after-ms": "250"}) == 0.25
    assert backoff_s(0, 0.5, 8.0, {"retry-after": "8"}) == 8.0
    with pytest.raises(RetryAfterTooLong, match=r"'retry-after: 9999'.*backoff_max_s=8"):
        backoff_s(0, 0.5, 8.0, {"retry-after": "9999"})
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 28 <= retry_after_s({"retry-after": http_date}) <= 31
    assert retry_after_s({"retry-after": "soon"}) is None


def test_truncated_replies_are_recorded_not_hidden(tmp_path):
    client, _ = fake_client(tmp_path)
    with client:
        cut, whole = client.chat_many([ChatRequest.user("長い質問です", max_tokens=4), ChatRequest.user("短い")])
    assert cut.ok and cut.truncated and cut.finish_reasons == ["length"] and len(cut.text) == 4
    assert whole.ok and not whole.truncated
    assert client.ledger.record.truncated == 1


def test_a_repeated_run_sends_nothing_that_is_cached(tmp_path):
    requests = [ChatRequest.user(f"q{i}", temperature=0.7, tag=f"t{i}") for i in range(10)]
    client, state = fake_client(tmp_path)
    with client:
        first = client.chat_many(requests)
    assert state.calls == 10 and not any(r.cached for r in first)

    # Same cache, another endpoint URL and tags: the key is the request content (model included), not the URL.
    again, state2 = fake_client(tmp_path, stage="again", base_url="http://another.test/v1")
    with again:
        retagged = [r.model_copy(update={"tag": "other"}) for r in requests]
        second = again.chat_many(retagged)
        assert state2.calls == 0
        assert [r.texts for r in second] == [r.texts for r in first] and all(r.cached for r in second)
        assert again.ledger.record.cached == 10 and again.ledger.record.calls == 0
        # Another draw (sample_index), another temperature, another model: new requests.
        again.chat_many([requests[0].model_copy(update={"sample_index": 1}),
                         requests[0].model_copy(update={"temperature": 0.9}),
                         requests[0].model_copy(update={"model": "other-model"})])
        assert state2.calls == 3


def test_sample_index_gives_distinct_reproducible_draws(tmp_path):
    client, state = fake_client(tmp_path)
    draws = [ChatRequest.user("詩を書いて", temperature=1.0, seed=7, sample_index=k) for k in range(4)]
    with client:
        results = client.chat_many(draws)
        assert len({r.key for r in results}) == 4
        seeds = [b["seed"] for b in state.bodies]
        assert seeds[0] == 7 and len(set(seeds)) == 4  # draw 0 keeps the caller's seed; others get their own
        assert [r.texts for r in client.chat_many(draws)] == [r.texts for r in results]
        assert state.calls == 4


def test_the_key_never_reaches_cache_ledger_or_errors(tmp_path, monkeypatch):
    secret = "sk-test-Zq8dontleak"
    monkeypatch.setenv("JINSTRUCT_FAKE_KEY", secret)
    client, _ = fake_client(tmp_path, FakeState(require_key=secret), api_key_env="JINSTRUCT_FAKE_KEY", max_retries=0)
    with client:
        assert client.chat(ChatRequest.user("hello")).ok
    monkeypatch.setenv("JINSTRUCT_FAKE_KEY", secret + "-wrong")
    client, _ = fake_client(tmp_path, FakeState(require_key=secret), api_key_env="JINSTRUCT_FAKE_KEY", max_retries=0)
    with client:
        denied = client.chat(ChatRequest.user("again"))
    assert "401" in denied.error and "Incorrect API key" in denied.error and secret not in denied.error
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_api_key_comes_from_the_named_variable_or_dotenv(tmp_path, monkeypatch):
    monkeypatch.delenv("JINSTRUCT_NO_SUCH_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    remote = EndpointSettings(base_url="https://api.example.com/v1", model="m", api_key_env="JINSTRUCT_NO_SUCH_KEY")
    with pytest.raises(MissingAPIKey, match="JINSTRUCT_NO_SUCH_KEY"):
        resolve_api_key(remote)
    (tmp_path / ".env").write_text("JINSTRUCT_NO_SUCH_KEY=from-dotenv\n")
    assert resolve_api_key(remote) == "from-dotenv"
    local = EndpointSettings(base_url="http://127.0.0.1:8000/v1", model="m", api_key_env="JINSTRUCT_OTHER_KEY")
    assert resolve_api_key(local) == "EMPTY"
    with pytest.raises(ValueError, match="NAME of an environment variable") as err:
        EndpointSettings(base_url="https://api.example.com/v1", model="m", api_key_env="sk-abc123-secret")
    assert "sk-abc123-secret" not in str(err.value)


def test_budget_stops_before_a_request_would_pass_it_and_a_rerun_goes_on(tmp_path):
    # Each request may cost up to (prompt ~9 tok * 1000 + 20 tok * 2000) / 1e6 = ~$0.05; the budget fits a few.
    requests = [ChatRequest.user(f"問題{i:02d}", max_tokens=20) for i in range(20)]
    client, state = fake_client(tmp_path, concurrency=4, pricing=PRICING, budget_usd=0.25)
    with client, pytest.raises(BudgetExceeded) as stop:
        client.chat_many(requests)
    done = stop.value.results
    assert 3 <= len(done) < 20 and all(r.ok for r in done)
    assert client.ledger.record.cost_usd <= 0.25
    assert f"{len(done)} of the first" in str(stop.value) and "raise budget_usd" in str(stop.value)
    assert state.calls == len(done)
    ledger = json.loads((tmp_path / "run" / "ledger" / "test.json").read_text())
    assert ledger["cost_usd"] == pytest.approx(client.ledger.record.cost_usd)

    # The budget covers the stage's ledger: a re-run with a larger one pays only for what is missing.
    more, state2 = fake_client(tmp_path, concurrency=4, pricing=PRICING, budget_usd=5.0)
    with more:
        results = more.chat_many(requests)
    assert all(r.ok for r in results) and state2.calls == 20 - len(done)
    assert sum(r.cached for r in results) == len(done)
    assert more.ledger.record.cost_usd == pytest.approx(sum(r.cost_usd for r in results))


def test_budget_needs_a_price_and_a_bound(tmp_path):
    with pytest.raises(ValueError, match="no entry for model 'fake-model'"):
        fake_client(tmp_path, budget_usd=1.0)
    client, _ = fake_client(tmp_path, pricing=PRICING, budget_usd=1.0)
    with client, pytest.raises(ValueError, match="needs max_tokens"):
        client.chat(ChatRequest.user("unbounded"))


def test_estimate_calls_nothing_and_counts_only_what_would_be_sent(tmp_path):
    client, state = fake_client(tmp_path, pricing=PRICING)
    with client:
        client.chat(ChatRequest.user("cached already", max_tokens=50))
        calls = state.calls
        est = client.estimate([ChatRequest.user("cached already", max_tokens=50),
                               ChatRequest.user("日本語の質問", max_tokens=50, n=2),
                               ChatRequest.user("abcdefgh", max_tokens=50)], expected_output_tokens=10)
    assert state.calls == calls
    assert (est.requests, est.cached, est.to_send) == (3, 1, 2)
    assert est.prompt_tokens == (3 + 4 + 6) + (3 + 4 + 2)  # 6 Japanese characters; 8 ASCII characters = 2 tokens
    assert est.completion_tokens == 30 and est.max_completion_tokens == 150
    assert est.cost_usd == pytest.approx((est.prompt_tokens * 1000 + 30 * 2000) / 1e6)
    assert "3 requests, 1 cached, 2 to send" in str(est)


def test_json_schema_and_choice_requests_are_sent_as_openai_and_vllm_expect(tmp_path):
    client, state = fake_client(tmp_path)
    with client:
        judged, chosen = client.chat_many([ChatRequest.user("採点して", json_schema=SCHEMA),
                                           ChatRequest.user("どちら?", choices=["A", "B"])])
    schema_body, choice_body = state.bodies
    assert schema_body["response_format"] == {"type": "json_schema",
                                              "json_schema": {"name": "response", "schema": SCHEMA, "strict": True}}
    assert choice_body["structured_outputs"] == {"choice": ["A", "B"]}
    assert "guided_choice" not in choice_body and "response_format" not in choice_body
    assert set(judged.parsed) == {"score", "reason"} and 1 <= judged.parsed["score"] <= 10
    assert chosen.parsed in ("A", "B")


def test_an_invalid_structured_reply_is_retried_as_a_fresh_sample_then_reported(tmp_path):
    client, state = fake_client(tmp_path, structured_retries=2)
    with client:
        fixed, hopeless = client.chat_many([ChatRequest.user("採点 [invalidx1]", json_schema=SCHEMA, seed=3),
                                            ChatRequest.user("選んで [invalidx9]", choices=["はい", "いいえ"])])
        assert fixed.ok and fixed.calls == 2 and fixed.parsed["score"] >= 1
        # The retry is another draw: another seed on the wire and its own cache key.
        sent_seeds = [b["seed"] for b in state.bodies if b["messages"][0]["content"].startswith("採点")]
        assert sent_seeds[0] == 3 and sent_seeds[1] != 3
        assert not hopeless.ok and "invalid reply after 3 attempts" in hopeless.error
        assert "not one of" in hopeless.error and hopeless.texts == ["どれでもない"]
        with pytest.raises(ReplyError):
            _ = hopeless.parsed
        assert client.ledger.record.invalid == 1 + 3
        calls = state.calls
        again = client.chat_many([fixed.request, hopeless.request])
        assert state.calls == calls  # every attempt is cached: the same outcome without a call
        assert again[0].parsed == fixed.parsed and again[1].error == hopeless.error


def test_a_bad_schema_is_an_error_before_anything_is_sent(tmp_path):
    client, state = fake_client(tmp_path)
    with client, pytest.raises(ValueError, match="not a valid JSON schema"):
        client.chat(ChatRequest.user("x", json_schema={"type": "no-such-type"}))
    assert state.calls == 0


def test_stream_pulls_lazily_and_stops_early(tmp_path):
    pulled = []

    def requests():
        for i in range(10_000):
            pulled.append(i)
            yield ChatRequest.user(f"生成{i}")

    client, state = fake_client(tmp_path, FakeState(delay_s=0.01), concurrency=4)
    with client:
        got = []
        for result in client.stream(requests()):
            got.append(result)
            if len(got) == 10:
                break
        assert len(pulled) <= 10 + 3 * 4
        assert state.calls <= len(pulled)
        assert sorted(r.index for r in got) == sorted({r.index for r in got})
        assert all(r.text.startswith(f"答え: 生成{r.index}") for r in got)


def test_sync_calls_work_inside_a_running_event_loop_and_async_calls_from_any_loop(tmp_path):
    client, state = fake_client(tmp_path, concurrency=3)
    requests = [ChatRequest.user(f"j{i}") for i in range(6)]

    async def notebook_cell():
        # A Jupyter cell runs inside the kernel's event loop: the sync API must still work there.
        asyncio.get_running_loop()
        sync = client.chat_many(requests[:3])
        awaited = await client.achat_many(requests[3:])
        streamed = [r async for r in client.astream(requests)]
        return sync, awaited, streamed

    with client:
        sync, awaited, streamed = asyncio.run(notebook_cell())
        assert [r.index for r in sync] == [0, 1, 2] and [r.index for r in awaited] == [0, 1, 2]
        assert sorted(r.index for r in streamed) == list(range(6)) and all(r.cached for r in streamed)
        assert state.calls == 6


def test_requests_per_minute_are_paced(tmp_path):
    client, _ = fake_client(tmp_path, concurrency=8, requests_per_minute=120)  # 2 per second, a burst of 2
    with client:
        t0 = time.monotonic()
        assert all(r.ok for r in client.chat_many([ChatRequest.user(f"r{i}") for i in range(6)]))
        elapsed = time.monotonic() - t0
    assert 1.8 <= elapsed < 4.0


def test_tokens_per_minute_limiter_pays_a_large_request_in_parts_and_keeps_the_rate():
    async def run():
        limiter = RateLimiter(per_minute=600)  # 10 tokens per second, a bucket of 10
        t0 = time.monotonic()
        await limiter.acquire(10)  # fills the bucket at once
        await limiter.acquire(25)  # larger than the bucket: 10 + 10 + 5, each when the bucket has drained enough
        t1 = time.monotonic()
        await limiter.acquire(5)  # the bucket is full again: waits for 5 tokens to drain
        return t1 - t0, time.monotonic() - t0

    first, second = asyncio.run(run())
    assert 2.3 <= first < 2.9  # 25 tokens at 10/s, after a full bucket
    assert 2.8 <= second < 3.5  # 40 tokens in all: never faster than 10/s after the first bucket


def test_progress_bar_shows_requests_tokens_and_cost(tmp_path, capsys):
    client, _ = fake_client(tmp_path, pricing=PRICING)
    with client:
        client.chat_many([ChatRequest.user(f"p{i}") for i in range(3)], desc="judging", progress=True)
    err = capsys.readouterr().err
    assert "judging" in err and "3/3" in err and "tok" in err and "$" in err


def test_the_ledger_file_accumulates_across_runs_of_a_stage(tmp_path):
    for round_ in range(2):
        client, _ = fake_client(tmp_path, pricing=PRICING)
        with client:
            client.chat_many([ChatRequest.user(f"l{i}", max_tokens=5) for i in range(3 + round_)])
    ledger = json.loads((tmp_path / "run" / "ledger" / "test.json").read_text())
    assert ledger["requests"] == 7 and ledger["cached"] == 3 and ledger["calls"] == 4
    assert ledger["cost_usd"] > 0 and ledger["saved_usd"] > 0 and ledger["models"] == ["fake-model"]


def test_processes_share_one_cache(tmp_path):
    path = tmp_path / "shared.sqlite3"
    writer = (
        "import sys\nfrom jinstruct.llm import ResponseCache\n"
        "c = ResponseCache(sys.argv[1])\n"
        "for i in range(120):\n"
        "    c.put(f'{sys.argv[2]}-{i % 60}', 'm', '{}', {'choices': [], 'who': sys.argv[2]})\n"
        "    c.put(f'common-{i}', 'm', '{}', {'choices': [], 'who': sys.argv[2]})\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(path), name]) for name in ("a", "b", "c")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    cache = ResponseCache(path)
    assert len(cache) == 3 * 60 + 120
    assert cache.stats()["answers"] == 300
    cache.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_in_process_app_gets_its_lifespan_and_state(tmp_path):
    events = []

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        yield {"greeting": "こんにちは"}
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": request.state.greeting},
                                        "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}

    settings = EndpointSettings(base_url="http://app.test/v1", model="m", api_key_env=None)
    with LLMClient(settings, tmp_path / "c.sqlite3", progress=False, asgi_app=app) as client:
        assert client.chat(ChatRequest.user("hi")).text == "こんにちは"
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


def test_stream_keeps_going_when_the_caller_is_slower_than_the_endpoint(tmp_path):
    # finished results must reach a slow caller even when every window permit is held: no deadlock
    client, state = fake_client(tmp_path, concurrency=4)
    with client:
        seen = []
        done = threading.Event()

        def consume():
            for result in client.stream(ChatRequest.user(f"質問{i}") for i in range(120)):
                time.sleep(0.005)
                seen.append(result.index)
            done.set()

        worker = threading.Thread(target=consume, daemon=True)
        worker.start()
        assert done.wait(60), f"stream stalled after {len(seen)} results"
        assert sorted(seen) == list(range(120)) and state.calls == 120


def test_astream_pulls_lazily_and_stops_early(tmp_path):
    pulled = []

    def requests():
        for i in range(10_000):
            pulled.append(i)
            yield ChatRequest.user(f"非同期{i}")

    async def consume(client):
        got = []
        async for result in client.astream(requests()):
            got.append(result)
            if len(got) == 5:
                break
        return got

    client, state = fake_client(tmp_path, FakeState(delay_s=0.01), concurrency=3)
    with client:
        got = asyncio.run(consume(client))
        time.sleep(0.2)
        assert len(got) == 5 and all(r.ok for r in got)
        assert len(pulled) <= 5 + 3 * 3 and state.calls <= len(pulled)


def test_ledger_reads_as_one_line(tmp_path):
    client, _ = fake_client(tmp_path, stage="02_generation")
    with client:
        client.chat_many([ChatRequest.user("a"), ChatRequest.user("b")])
        client.chat_many([ChatRequest.user("a")])
        record = client.ledger.record
        text = str(client.ledger)
    assert (record.requests, record.cached, record.failed, record.calls) == (3, 1, 0, 2)
    assert record.prompt_tokens > 0 and record.completion_tokens > 0
    assert "\n" not in text and text.startswith("02_generation: 3 requests (1 cached, 0 failed, 0 cut off), 2 calls")
