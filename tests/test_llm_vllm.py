"""Opt-in (`pytest -m vllm`): the client against a real vLLM server on the tiny local model, structured outputs included.

Skipped when vllm is not installed. On a CPU machine, `vllm-cpu` runs a tiny Llama only with head_dim >= 32
(after removing the torchvision, torchaudio and torchcodec it pulls in); the server starts with
--enforce-eager and VLLM_CPU_KVCACHE_SPACE=1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm")

from jinstruct.llm import ChatRequest, EndpointSettings, LLMClient
from jinstruct.llm.structured import validate_reply

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"enum": ["はい", "いいえ"]}, "sure": {"type": "boolean"}},
    "required": ["answer", "sure"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    from jinstruct.llm.tinymodel import build_tiny_model

    model_dir = build_tiny_model()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
           "--max-model-len", "512", "--dtype", "float32"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM did not start in 15 minutes:\n{log.read_text()[-4000:]}")
            time.sleep(2)
        yield url + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_client_against_a_real_vllm_server(tmp_path, vllm_server):
    settings = EndpointSettings(base_url=vllm_server, model="tiny", api_key_env=None, concurrency=4, timeout_s=300,
                                structured_retries=0)
    requests = [
        ChatRequest.user("日本の首都はどこですか。", n=2, temperature=0.8, seed=1, max_tokens=16),
        ChatRequest.user("こんにちは", temperature=0.0, max_tokens=4),
        *[ChatRequest.user(f"質問{i}: 答えて", json_schema=SCHEMA, temperature=1.0, seed=i, max_tokens=64) for i in range(3)],
        *[ChatRequest.user(f"選んで{i}", choices=["A", "B", "C"], temperature=1.0, seed=i, max_tokens=4) for i in range(3)],
    ]
    with LLMClient(settings, tmp_path / "cache.sqlite3", stage="vllm", run_dir=tmp_path, progress=False) as client:
        results = client.chat_many(requests)
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        two, short = results[0], results[1]
        assert len(two.texts) == 2 and two.usage.prompt_tokens > 0 and two.usage.completion_tokens > 0
        assert short.usage.completion_tokens <= 4 and short.finish_reasons[0] in ("stop", "length")
        for r in results[2:5]:
            assert validate_reply(r.text, SCHEMA, None)[1] is None and r.parsed["answer"] in ("はい", "いいえ")
        for r in results[5:]:
            assert r.parsed in ("A", "B", "C")
        assert client.ledger.record.invalid == 0
        calls = client.ledger.record.calls
        again = client.chat_many(requests)
        assert all(r.cached for r in again) and client.ledger.record.calls == calls
        assert [r.texts for r in again] == [r.texts for r in results]
