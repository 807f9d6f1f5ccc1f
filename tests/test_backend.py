"""The embedded backend, through the path the client uses: openai.AsyncOpenAI over httpx.ASGITransport.

The model is a quick build of the tiny architecture (a few optimiser steps): these tests check the API's
contract, which must hold for any model; what the fully trained tiny model says is test_tinymodel's business.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from jinstruct.llm import tinymodel
from jinstruct.llm.backend import create_app
from jinstruct.llm.tinymodel import TinyModelSpec, build_tiny_model
from transformers import AutoTokenizer

QUICK = TinyModelSpec(train_steps=4, batch_size=2, block_size=32)
ASK = [{"role": "user", "content": "新しい指示を考えてください。"}]

INSTRUCTIONS = {  # what the generation stage asks for: a list of records with string fields
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "instruction": {"type": "string", "minLength": 1, "maxLength": 30},
            "input": {"type": "string", "maxLength": 20},
            "output": {"type": "string", "minLength": 1, "maxLength": 30},
        },
        "required": ["instruction", "input", "output"],
    },
    "minItems": 1,
    "maxItems": 3,
}
SCORE = {  # what a judge returns
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "reason": {"type": "string", "maxLength": 40},
    },
    "required": ["score", "reason"],
}
VERDICT = {
    "type": "object",
    "properties": {
        "winner": {"type": "string", "enum": ["A", "B", "tie"]},
        "confident": {"type": "boolean"},
        "scores": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 10}, "minItems": 2, "maxItems": 2},
    },
    "required": ["winner", "confident", "scores"],
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tinymodel, "SPEC", QUICK)
        return build_tiny_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def app(model_dir: Path) -> Any:
    return create_app(model_dir, served_model_name="tiny-test")


def client_for(app: Any) -> openai.AsyncOpenAI:
    transport = httpx.ASGITransport(app=app)
    http = httpx.AsyncClient(transport=transport, base_url="http://embedded")
    return openai.AsyncOpenAI(base_url="http://embedded/v1", api_key="unused", http_client=http, max_retries=0)


def chat(app: Any, **kwargs: Any) -> Any:
    async def go() -> Any:
        async with client_for(app) as client:
            return await client.chat.completions.create(model="anything", **{"messages": ASK, **kwargs})

    return asyncio.run(go())


def texts(resp: Any) -> list[str]:
    return [c.message.content for c in resp.choices]


def test_models_lists_the_served_model(app: Any) -> None:
    async def go() -> Any:
        async with client_for(app) as client:
            return await client.models.list()

    models = asyncio.run(go())
    assert [m.id for m in models.data] == ["tiny-test"]


def test_n_choices_and_usage_counts(app: Any, model_dir: Path) -> None:
    resp = chat(app, n=3, temperature=1.0, seed=7, max_tokens=6)
    assert resp.model == "tiny-test" and resp.object == "chat.completion"
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert len(set(texts(resp))) == 3, "three sampled replies differ"
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompt = tok.apply_chat_template(ASK, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert resp.usage.prompt_tokens == len(prompt)
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.usage.completion_tokens <= 3 * 6
    if all(c.finish_reason == "length" for c in resp.choices):
        assert resp.usage.completion_tokens == 18


def test_seed_reproduces_and_greedy_is_deterministic(app: Any) -> None:
    a = chat(app, n=2, temperature=0.9, top_p=0.95, seed=123, max_tokens=8)
    b = chat(app, n=2, temperature=0.9, top_p=0.95, seed=123, max_tokens=8)
    c = chat(app, n=2, temperature=0.9, top_p=0.95, seed=124, max_tokens=8)
    assert texts(a) == texts(b)
    assert texts(a) != texts(c)
    g1 = chat(app, n=2, temperature=0, max_tokens=8)
    g2 = chat(app, temperature=0, seed=99, max_tokens=8)
    assert texts(g1) == [g2.choices[0].message.content] * 2


def test_stop_strings_and_length(app: Any) -> None:
    full = chat(app, temperature=0, max_tokens=24).choices[0].message.content
    at = next(i for i in range(3, len(full) - 2) if "\ufffd" not in full[i : i + 2] and full[i : i + 2].strip())
    stop = full[at : at + 2]
    cut = chat(app, temperature=0, max_tokens=24, stop=[stop, "never-appears"])
    assert cut.choices[0].message.content == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    assert cut.usage.completion_tokens < 24

    # 50 letters cannot fit in 3 tokens (no token of this vocabulary holds 17 letters): cut by the limit
    long = chat(app, max_tokens=3, extra_body={"structured_outputs": {"regex": "[a-z]{50}"}})
    assert long.choices[0].finish_reason == "length" and long.usage.completion_tokens == 3
    short = chat(app, max_tokens=40, extra_body={"structured_outputs": {"regex": "[a-z]{3}"}})
    assert short.choices[0].finish_reason == "stop"
    assert len(short.choices[0].message.content) == 3 and short.choices[0].message.content.isalpha()


@pytest.mark.parametrize("schema", [INSTRUCTIONS, SCORE, VERDICT], ids=["instructions", "score", "verdict"])
def test_json_schema_replies_always_validate(app: Any, schema: dict[str, Any]) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}
    for seed, temperature in [(1, 1.0), (2, 0.7), (3, 0.0)]:
        resp = chat(app, n=4, temperature=temperature, seed=seed, max_tokens=400, response_format=fmt)
        for choice in resp.choices:
            assert choice.finish_reason == "stop", "a bounded schema always completes within 400 tokens"
            jsonschema.validate(json.loads(choice.message.content), schema)


def test_unbounded_schema_replies_validate_or_say_length(app: Any) -> None:
    schema = {"type": "array", "items": {"type": "object", "properties": {"instruction": {"type": "string"}},
                                         "required": ["instruction"]}}
    for seed in range(3):
        resp = chat(app, temperature=1.0, seed=seed, max_tokens=30,
                    extra_body={"structured_outputs": {"json": schema}})
        choice = resp.choices[0]
        if choice.finish_reason == "stop":
            jsonschema.validate(json.loads(choice.message.content), schema)
        else:
            assert choice.finish_reason == "length" and resp.usage.completion_tokens == 30


def test_choice_replies_are_always_one_of_the_choices(app: Any) -> None:
    options = ["A", "B", "tie", 'say "yes"\\', "日本語"]
    for seed, temperature in [(5, 1.0), (6, 0.0)]:
        resp = chat(app, n=6, temperature=temperature, seed=seed, max_tokens=20,
                    extra_body={"structured_outputs": {"choice": options}})
        assert all(t in options for t in texts(resp)), texts(resp)
        assert all(c.finish_reason == "stop" for c in resp.choices)
    sampled = chat(app, n=16, temperature=2.0, seed=8, max_tokens=20, extra_body={"structured_outputs": {"choice": options}})
    assert len(set(texts(sampled))) > 1


def test_guided_choice_is_ignored_like_vllm(app: Any) -> None:
    resp = chat(app, temperature=1.0, seed=1, max_tokens=12, extra_body={"guided_choice": ["A", "B"]})
    plain = chat(app, temperature=1.0, seed=1, max_tokens=12)
    assert texts(resp) == texts(plain)


def test_content_parts_and_system_messages(app: Any) -> None:
    parts = [{"role": "system", "content": "簡潔に。"},
             {"role": "user", "content": [{"type": "text", "text": "新しい指示を"}, {"type": "text", "text": "考えてください。"}]}]
    joined = [parts[0], {"role": "user", "content": "新しい指示を考えてください。"}]
    a = chat(app, messages=parts, temperature=0, max_tokens=6)
    b = chat(app, messages=joined, temperature=0, max_tokens=6)
    assert texts(a) == texts(b) and a.usage == b.usage


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
        ({"temperature": 5}, "temperature"),
        ({"n": 0}, "n"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 100_000}, "maximum context length"),
        ({"stop": [""]}, "stop"),
        ({"stream": True, "max_tokens": 2}, "stream"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
         "structured output"),
        ({"response_format": {"type": "json_schema"}}, "schema"),
        ({"extra_body": {"structured_outputs": {"regex": "(unclosed"}}}, "structured output"),
        ({"response_format": {"type": "json_object"}, "extra_body": {"structured_outputs": {"choice": ["a"]}}},
         "one kind"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "text"),
    ],
)
def test_bad_requests_get_400_with_a_message(app: Any, kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        chat(app, **kwargs)
    assert err.value.status_code == 400
    body = err.value.body
    assert isinstance(body, dict) and needle in body["message"], body
    assert body["type"] == "invalid_request_error"


def test_malformed_body_and_unknown_path(app: Any) -> None:
    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://embedded") as http:
            bad = await http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
            missing = await http.get("/v1/nothing")
            return bad, missing

    bad, missing = asyncio.run(go())
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]
    assert missing.status_code == 404 and missing.json()["error"]["message"]


def test_concurrent_requests_are_served_safely_and_reproducibly(app: Any) -> None:
    async def go() -> list[list[str]]:
        async with client_for(app) as client:
            calls = [client.chat.completions.create(model="m", messages=ASK, n=2, seed=s, temperature=1.0, max_tokens=10)
                     for s in range(8)]
            return [texts(r) for r in await asyncio.gather(*calls)]

    together = asyncio.run(go())
    alone = [texts(chat(app, n=2, seed=s, temperature=1.0, max_tokens=10)) for s in (0, 5)]
    assert [together[0], together[5]] == alone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(model_dir: Path) -> Iterator[str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "jinstruct", "serve", "--model", str(model_dir), "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("server did not come up within 60 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_real_http_server(server: str, model_dir: Path) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    resp = client.chat.completions.create(model="x", messages=ASK, max_tokens=20,
                                          extra_body={"structured_outputs": {"choice": ["はい", "いいえ"]}})
    assert resp.choices[0].message.content in ("はい", "いいえ")
    assert resp.model == model_dir.name
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="x", messages=[], max_tokens=2)


def test_missing_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        create_app(tmp_path)
