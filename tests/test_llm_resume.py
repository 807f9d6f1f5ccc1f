"""SIGKILL a client process mid-run, several times: the cache stays whole and a resumed run repeats no answered request."""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fake_openai import serve_fake
from jinstruct.llm import ResponseCache

N, CONCURRENCY = 60, 4

CHILD = f"""
import sys
from jinstruct.llm import ChatRequest, EndpointSettings, LLMClient
url, cache = sys.argv[1], sys.argv[2]
settings = EndpointSettings(base_url=url + "/v1", model="fake-model", api_key_env=None,
                            concurrency={CONCURRENCY})
with LLMClient(settings, cache, stage="resume", progress=False) as client:
    results = client.chat_many([ChatRequest.user(f"再開{{i}}") for i in range({N})])
print(sum(r.ok for r in results))
"""


@pytest.fixture
def server():
    with serve_fake(delay_s=0.1) as base_url:
        yield base_url.removesuffix("/v1")


def _received(url: str) -> collections.Counter[str]:
    return collections.Counter(httpx.get(url + "/stats", timeout=5).json()["by_prompt"])


def _cached_prompts(cache_path: Path) -> set[str]:
    cache = ResponseCache(cache_path)
    try:
        return {row["request"]["body"]["messages"][-1]["content"] for row in cache.export()}
    finally:
        cache.close()


def test_killed_runs_resume_from_the_cache_without_repeating_a_request(tmp_path, server):
    url = server
    cache_path = tmp_path / "cache.sqlite3"
    answered_before: set[str] = set()
    before: collections.Counter[str] = collections.Counter()
    for kill_after in (8, 25, 42):
        child = subprocess.Popen([sys.executable, "-c", CHILD, url, str(cache_path)], stdout=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while sum(_received(url).values()) < kill_after and child.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert child.poll() is None, "the run ended before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

        with sqlite3.connect(cache_path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        received = _received(url)
        cached = _cached_prompts(cache_path)
        assert answered_before <= cached  # nothing already stored was lost
        # Nothing answered before this run was asked again, and only requests in flight were lost.
        assert all(received[p] == before[p] for p in answered_before)
        lost = {p for p in received if p not in cached}
        assert len(lost) <= CONCURRENCY
        answered_before, before = cached, received

    final = subprocess.run([sys.executable, "-c", CHILD, url, str(cache_path)], capture_output=True, text=True,
                           timeout=300, check=True)
    assert final.stdout.strip() == str(N)
    received = _received(url)
    assert len(_cached_prompts(cache_path)) == N
    assert all(received[p] == before[p] for p in answered_before)
    # Over four runs, at most the requests in flight at each kill were sent twice.
    assert set(received) == {f"再開{i}" for i in range(N)}
    assert sum(received.values()) <= N + 3 * CONCURRENCY
