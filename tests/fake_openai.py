"""A local OpenAI-compatible app that injects faults, for the LLM client's tests (and a server for the kill tests).

Faults are written into the last user message, so each request carries its own script:
  [429xN] [500xN] [slowxN] [garbagexN] [emptyxN] [invalidxN]  the first N calls for this prompt fail that way
  [always500] [400]                                           every call fails
429 replies carry `Retry-After: <state.retry_after>`; [slow] sleeps `state.slow_s` before answering;
[garbage] is a 200 whose JSON body is cut in half; [empty] is a 200 without choices; [invalid] makes a
structured reply break its schema or choices.

Faults can also be scheduled for requests whose text the test does not write (a stage builds them): with
`fault_rate` p, the first call of a distinct request body fails with probability p (decided by the body's hash,
so the schedule is the same in every run), in one of `fault_kinds` in turn: "429" (with Retry-After), "429bare"
(without), "500", "hang" (no answer until the client gives up), "garbage", "empty".

Replies are deterministic: an echo of the prompt (or a JSON instance of the schema, or one of the choices), cut at
max_tokens (1 token = 1 character) with finish_reason "length"; with `tasks` on, a self-instruct request (its prompt
numbers demonstrations "1. 指示: ...") gets a numbered list of distinct tasks. The state counts what a test needs to
tell what was paid: `received` (calls per distinct body), `charged` (answers with choices per distinct body, what a
real endpoint bills) with their `usage`, and `injected` faults by kind. It also implements /v1/files and
/v1/batches for the Batch API round trip.

Run as a server: python tests/fake_openai.py PORT [--delay S] [--slow S] [--require-key KEY] [--fault-rate P]
[--tasks] (or `serve_fake()`); GET /stats returns the counts.
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
import random
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
FAULT_KINDS = ("429", "429bare", "500", "hang", "garbage", "empty")


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
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    hang_s: float = 30.0
    tasks: bool = False
    received: collections.Counter[str] = field(default_factory=collections.Counter)
    charged: collections.Counter[str] = field(default_factory=collections.Counter)
    usage: list[tuple[int, int]] = field(default_factory=list)
    injected: collections.Counter[str] = field(default_factory=collections.Counter)

    def stats(self) -> dict[str, Any]:
        return {"calls": self.calls, "by_prompt": dict(self.by_prompt), "batches_created": self.batches_created,
                "distinct": len(self.received), "received": dict(self.received), "charged": dict(self.charged),
                "usage": self.usage, "injected": dict(self.injected)}


def body_key(body: dict[str, Any]) -> str:
    """A distinct request: its whole body."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def scheduled_fault(state: FakeState, key: str) -> str | None:
    """The fault the first call of a body gets under `fault_rate` (whether it gets one is decided by the body, the
    same in every run; the kinds take turns, so that a handful of faults shows each), else None."""
    if state.fault_rate <= 0 or state.received[key] != 1:
        return None
    if (int(key[:12], 16) % 10_000) / 10_000 >= state.fault_rate:
        return None
    return state.fault_kinds[sum(state.injected.values()) % len(state.fault_kinds)]


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


def _tasks_reply(prompt: str, salt: int) -> str | None:
    """A self-instruct reply: the tasks after the prompt's numbered demonstrations, each made of random kanji
    (distinct enough to pass the ROUGE-L filter)."""
    shown = re.findall(r"^(\d+)\. 指示:", prompt, re.MULTILINE)
    if not shown:
        return None
    rng = random.Random(salt)
    start = int(shown[-1]) + 1
    blocks = []
    for n in range(start, start + 4):
        words = "".join(chr(rng.randrange(0x4E00, 0x9FA0)) for _ in range(10))
        blocks.append(f"{n}. 指示: {words}を説明してください。\n{n}. 入力:\n<入力なし>\n{n}. 出力:\n{words}です。")
    return "###\n" + "\n###\n".join(blocks) + "\n###\n"


def _reply(body: dict[str, Any], index: int, broken: bool, tasks: bool = False) -> str:
    salt = int(hashlib.sha256(json.dumps([body.get("seed"), index, _prompt(body)]).encode()).hexdigest()[:8], 16)
    if tasks and not body.get("response_format") and (listed := _tasks_reply(_prompt(body), salt)) is not None:
        return listed
    choice = (body.get("structured_outputs") or {}).get("choice")
    if choice:
        return "どれでもない" if broken else choice[salt % len(choice)]
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        if broken:
            return '{"oops": '
        return json.dumps(_instance(fmt["json_schema"]["schema"], salt), ensure_ascii=False)
    return f"答え: {_prompt(body)} #{salt % 1000}"


def answer(state: FakeState, body: dict[str, Any], fault: str | None = None) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body or raw bytes) for one chat completion request (`fault`: a scheduled one)."""
    if fault == "429":
        return 429, {"retry-after": state.retry_after}, {"error": {"message": "rate limited (scheduled)"}}
    if fault == "429bare":
        return 429, {}, {"error": {"message": "rate limited, no Retry-After (scheduled)"}}
    if fault == "500":
        return 500, {}, {"error": {"message": "server error (scheduled)", "type": "server_error"}}
    if fault == "garbage":
        return 200, {}, b'{"id": "chatcmpl-x", "choices": [{"index": 0, "mess'
    if fault == "empty":
        return 200, {}, {"id": "chatcmpl-x", "object": "chat.completion", "choices": []}
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
        text, reason = _reply(body, i, broken, state.tasks), "stop"
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
        return state.stats()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "tests"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = json.loads(await request.body())
        state.calls += 1
        state.bodies.append(body)
        key = body_key(body)
        state.received[key] += 1
        fault = scheduled_fault(state, key)
        if fault is not None:
            state.injected[fault] += 1
        prompt = _prompt(body)
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        if fault == "hang":
            await asyncio.sleep(state.hang_s)  # the client gives up first; nothing is answered, nothing billed
            return _respond(503, {}, {"error": {"message": "hung (scheduled)"}})
        m = re.search(r"\[slowx(\d+)\]", prompt)
        if m and state.slowed[prompt] < int(m.group(1)):
            state.slowed[prompt] += 1
            await asyncio.sleep(state.slow_s)
        status, headers, payload = answer(state, body, fault)
        if status == 200 and isinstance(payload, dict) and payload.get("choices"):
            state.charged[key] += 1
            usage = payload.get("usage") or {}
            state.usage.append((usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)))
        return _respond(status, headers, payload)

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


def server_stats(base_url: str) -> dict[str, Any]:
    """GET /stats of a served fake (`base_url` as `serve_fake` yields it)."""
    import httpx

    return httpx.get(base_url.removesuffix("/v1") + "/stats", timeout=10).json()


@contextlib.contextmanager
def serve_fake(delay_s: float = 0.0, slow_s: float = 5.0, require_key: str | None = None, fault_rate: float = 0.0,
               tasks: bool = False, hang_s: float = 30.0, fault_kinds: tuple[str, ...] = FAULT_KINDS) -> Iterator[str]:
    """The fake app as a real server on 127.0.0.1 (a subprocess); yields its base URL (".../v1")."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, __file__, str(port), "--delay", str(delay_s), "--slow", str(slow_s),
           "--fault-rate", str(fault_rate), "--hang", str(hang_s), "--fault-kinds", ",".join(fault_kinds)]
    cmd += ["--tasks"] if tasks else []
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
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--hang", type=float, default=30.0)
    ap.add_argument("--tasks", action="store_true")
    ap.add_argument("--fault-kinds", default=",".join(FAULT_KINDS))
    a = ap.parse_args()
    uvicorn.run(create_app(FakeState(delay_s=a.delay, slow_s=a.slow, require_key=a.require_key,
                                     fault_rate=a.fault_rate, hang_s=a.hang, tasks=a.tasks,
                                     fault_kinds=tuple(a.fault_kinds.split(",")))),
                host="127.0.0.1", port=a.port, log_level="warning")
