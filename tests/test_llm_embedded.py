"""The client against the embedded offline backend (in-process, the tiny local model): structured replies always validate."""

from __future__ import annotations

import pytest

pytest.importorskip("jinstruct.llm.backend")

from jinstruct.llm import ChatRequest, EndpointSettings, LLMClient
from jinstruct.llm.structured import validate_reply

VERDICT = {
    "type": "object",
    "properties": {"verdict": {"enum": ["A", "B", "tie"]}, "confident": {"type": "boolean"}},
    "required": ["verdict", "confident"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tiny_model():
    from jinstruct.llm.tinymodel import build_tiny_model

    return build_tiny_model()


@pytest.mark.slow
def test_structured_replies_from_the_embedded_backend_always_validate(tmp_path, tiny_model):
    settings = EndpointSettings(base_url="embedded", embedded_model=tiny_model, concurrency=2, timeout_s=600,
                                structured_retries=0)
    judged = [ChatRequest.user(f"回答{i}を比べて", json_schema=VERDICT, temperature=1.0, seed=i, max_tokens=48)
              for i in range(4)]
    picked = [ChatRequest.user(f"質問{i}: はいかいいえで", choices=["はい", "いいえ"], temperature=1.0, seed=i, max_tokens=8)
              for i in range(4)]
    plain = ChatRequest.user("日本の首都は?", n=2, temperature=0.8, seed=1, max_tokens=5)
    with LLMClient(settings, tmp_path / "cache.sqlite3", stage="embedded", run_dir=tmp_path, progress=False) as client:
        results = client.chat_many(judged + picked + [plain])
        assert client.ledger.record.invalid == 0  # constrained decoding: no reply needed a retry
    for r in results[:4]:
        assert r.ok, r.error
        assert validate_reply(r.text, VERDICT, None)[1] is None and r.parsed["verdict"] in ("A", "B", "tie")
    for r in results[4:8]:
        assert r.ok, r.error
        assert r.parsed in ("はい", "いいえ")
    text = results[8]
    assert text.ok and len(text.texts) == 2 and text.usage.prompt_tokens > 0 and text.usage.completion_tokens > 0
    assert all(reason in ("stop", "length") for reason in text.finish_reasons)
