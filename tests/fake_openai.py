"""A local OpenAI-compatible app that injects faults, for the LLM client's tests (and a server for the kill test).

Faults are written into the last user message, so each request carries its own script:
  [429xN] [500xN] [slowxN] [garbagexN] [emptyxN] [invalidxN]  the first N calls for this prompt fail that way
  [always500] [400]                                           every call fails
429 replies carry `Retry-After: <state.retry_after>`; [slow] sleeps `state.slow_s` before answering;
[garbage] is a 200 whose JSON body is cut in half; [empty] is a 200 without choices; [invalid] makes a
structured reply break its schema or choices. Replies are deterministic: an echo of the prompt (or a
JSON instance of the schema, or one of the choices), cut at max_tokens (1 token = 1 character) with
finish_reason "length". It also implements /v1/files and /v1/batches for the Batch API round trip.

Run as a server: python tests/fake_openai.py PORT [--delay S] [--slow S] [--require-key KEY] (or `serve_fake()`)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.parser
import email.policy
import hashlib
import itertools
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

FAULT = re.compile(r"\[(429|500|slow|garbage|empty|invalid)x(\d+)\]|\[(always500|400)\]")


@dataclass
class FakeState:
    delay_s: float = 0.0
    retry_after: str = "0.01"
    slow_s: float = 5.0
    require_key: str | None = None
    polls_to_complete: int = 1
    calls: int = 0
    by_prompt: collections.Counter[str] = field(default_factory=collections.Counter)
    slowed: collections.Counter[str] = field(default_factory=collections.Counter)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches_created: int = 0
    ids: Any = field(default_factory=itertools.count)


def _prompt(body: dict[str, Any]) -> str:
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    return str(users[-1]) if users else ""


def _instance(schema: dict[str, Any], salt: int) -> Any:
    """A value that matches a simple JSON schema."""
    if "enum" in schema:
        return schema["enum"][salt % len(schema["enum"])]
    kind = schema.get("type")
    if kind == "object":
        return {k: _instance(v, salt) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [_instance(schema.get("items", {}), salt)]
    if kind == "integer":
        return max(salt % 10, schema.get("minimum", 0))
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return salt % 2 == 0
    return f"値{salt % 100}"


def _reply(body: dict[str, Any], index: int, broken: bool) -> str:
    salt = int(hashlib.sha256(json.dumps([body.get("seed"), index, _prompt(body)]).encode()).hexdigest()[:8], 16)
    choice = (body.get("structured_outputs") or {}).get("choice")
    if choice:
        return "どれでもない" if broken else choice[salt % len(choice)]
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        if broken:
            return '{"oops": '
        return json.dumps(_instance(fmt["json_schema"]["schema"], salt), ensure_ascii=False)
    return f"答え: {_prompt(body)} #{salt % 1000}"


def answer(state: FakeState, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body or raw bytes) for one chat completion request."""
    prompt = _prompt(body)
    state.by_prompt[prompt] += 1
    call = state.by_prompt[prompt]
    faults = {}
    for m in FAULT.finditer(prompt):
        if m.group(3):
            faults[m.group(3)] = 10**9
        else:
            faults[m.group(1)] = int(m.group(2))
    if "400" in faults:
        return 400, {}, {"error": {"message": "bad request (injected)", "type": "invalid_request_error"}}
    if call <= faults.get("always500", 0) or call <= faults.get("500", 0):
        return 500, {}, {"error": {"message": "server error (injected)", "type": "server_error"}}
    if call <= faults.get("429", 0):
        return 429, {"retry-after": state.retry_after}, {"error": {"message": "rate limited (injected)", "type": "rate_limit"}}
    if call <= faults.get("garbage", 0):
        return 200, {}, b'{"id": "chatcmpl-x", "choices": [{"index": 0, "mess'
    if call <= faults.get("empty", 0):
        return 200, {}, {"id": "chatcmpl-x", "object": "chat.completion", "choices": []}
    broken = call <= faults.get("invalid", 0)
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    choices, completion = [], 0
    for i in range(body.get("n", 1)):
        text, reason = _reply(body, i, broken), "stop"
        for s in body.get("stop") or []:
            if s in text:
                text = text[: text.index(s)]
        if limit is not None and len(text) > limit:
            text, reason = text[:limit], "length"
        completion += len(text)
        choices.append({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason})
    prompt_tokens = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
    return 200, {}, {
        "id": f"chatcmpl-{next(state.ids)}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", ""), "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion},
    }


def _respond(status: int, headers: dict[str, str], payload: Any) -> Response:
    if isinstance(payload, bytes):
        return Response(payload, status_code=status, headers=headers, media_type="application/json")
    return JSONResponse(payload, status_code=status, headers=headers)


def _batch_view(b: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in b.items() if not k.startswith("_")}


def _run_batch(state: FakeState, b: dict[str, Any]) -> None:
    out, err = [], []
    for line in state.files[b["input_file_id"]].decode().splitlines():
        if not line.strip():
            continue
        req = json.loads(line)
        status, _, payload = answer(state, req["body"])
        if isinstance(payload, bytes):
            status, payload = 500, {"error": {"message": "malformed"}}
        entry = {"id": f"batch_req_{next(state.ids)}", "custom_id": req["custom_id"],
                 "response": {"status_code": status, "request_id": f"req_{next(state.ids)}", "body": payload}, "error": None}
        (out if status == 200 else err).append(json.dumps(entry, ensure_ascii=False))
    for name, lines in (("output_file_id", out), ("error_file_id", err)):
        if lines:
            fid = f"file-{next(state.ids)}"
            state.files[fid] = ("\n".join(lines) + "\n").encode()
            b[name] = fid
    b.update(status="completed", completed_at=int(time.time()),
             request_counts={"total": len(out) + len(err), "completed": len(out), "failed": len(err)})


def create_app(state: FakeState | None = None) -> FastAPI:
    state = state or FakeState()
    app = FastAPI()
    app.state.fake = state

    @app.middleware("http")
    async def auth(request: Request, call_next: Any) -> Response:
        if state.require_key is not None and request.headers.get("authorization") != f"Bearer {state.require_key}":
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            # Like some real servers, the error repeats the key it got: the client must not pass it on.
            return JSONResponse({"error": {"message": f"Incorrect API key provided: {given}"}}, status_code=401)
        return await call_next(request)

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return {"calls": state.calls, "by_prompt": dict(state.by_prompt), "batches_created": state.batches_created}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "tests"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = json.loads(await request.body())
        state.calls += 1
        state.bodies.append(body)
        prompt = _prompt(body)
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        m = re.search(r"\[slowx(\d+)\]", prompt)
        if m and state.slowed[prompt] < int(m.group(1)):
            state.slowed[prompt] += 1
            await asyncio.sleep(state.slow_s)
        return _respond(*answer(state, body))

    @app.post("/v1/files")
    async def upload(request: Request) -> dict[str, Any]:
        head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
        form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + await request.body())
        parts = {p.get_param("name", header="content-disposition"): p for p in form.iter_parts()}
        data = parts["file"].get_payload(decode=True)
        fid = f"file-{next(state.ids)}"
        state.files[fid] = data
        return {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": parts["file"].get_filename(), "purpose": parts["purpose"].get_payload(decode=True).decode(),
                "status": "processed"}

    @app.get("/v1/files/{fid}/content")
    async def content(fid: str) -> Response:
        return Response(state.files[fid], media_type="application/octet-stream")

    @app.post("/v1/batches")
    async def create_batch(request: Request) -> dict[str, Any]:
        body = json.loads(await request.body())
        state.batches_created += 1
        bid = f"batch_{next(state.ids)}"
        b = {"id": bid, "object": "batch", "endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
             "completion_window": body["completion_window"], "status": "validating", "created_at": int(time.time()),
             "metadata": body.get("metadata"), "_polls": 0}
        state.batches[bid] = b
        return _batch_view(b)

    @app.get("/v1/batches/{bid}")
    async def get_batch(bid: str) -> dict[str, Any]:
        b = state.batches[bid]
        b["_polls"] += 1
        if b["status"] != "completed":
            b["status"] = "in_progress"
            if b["_polls"] >= state.polls_to_complete:
                _run_batch(state, b)
        return _batch_view(b)

    @app.get("/v1/batches")
    async def list_batches(limit: int = 20) -> dict[str, Any]:
        data = [_batch_view(b) for b in reversed(list(state.batches.values()))][:limit]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": False}

    return app


def fake_client(tmp_path: Any, state: FakeState | None = None, stage: str = "test", **settings: Any) -> Any:
    """An LLMClient wired in-process to a fake app (cache and run folder under tmp_path); returns (client, state)."""
    from jinstruct.llm import EndpointSettings, LLMClient

    state = state or FakeState()
    options: dict[str, Any] = {"base_url": "http://fake.test/v1", "model": "fake-model", "api_key_env": None,
                               "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0}
    options.update(settings)
    client = LLMClient(EndpointSettings(**options), tmp_path / "cache.sqlite3", stage=stage, run_dir=tmp_path / "run",
                       progress=False, asgi_app=create_app(state))
    return client, state


@contextlib.contextmanager
def serve_fake(delay_s: float = 0.0, slow_s: float = 5.0, require_key: str | None = None) -> Iterator[str]:
    """The fake app as a real server on 127.0.0.1 (a subprocess); yields its base URL (".../v1")."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, __file__, str(port), "--delay", str(delay_s), "--slow", str(slow_s)]
    if require_key:
        cmd += ["--require-key", require_key]
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/stats", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the fake server did not start") from None
                time.sleep(0.1)
        yield url + "/v1"
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    import argparse

    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--slow", type=float, default=5.0)
    ap.add_argument("--require-key")
    a = ap.parse_args()
    uvicorn.run(create_app(FakeState(delay_s=a.delay, slow_s=a.slow, require_key=a.require_key)),
                host="127.0.0.1", port=a.port, log_level="warning")
