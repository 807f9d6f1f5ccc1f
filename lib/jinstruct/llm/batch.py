"""The OpenAI Batch API: the same requests sent as one job (half price, answers within 24 h).

Each round writes the unanswered requests to a JSONL file in the run folder (custom_id = the request's
cache key), uploads it, creates the batch and writes its id to `<run_dir>/batches/<stage>.json` before
waiting. A restarted run first collects the jobs listed there instead of paying again; a job created
just before a kill, whose id never reached the file, is found again by the sha256 of its input kept in
the batch's metadata. Collected answers go into the cache by custom_id; a further round resends only
what failed or was an invalid structured reply (as its next attempt).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Protocol

from jinstruct.formats.layout import RunLayout
from jinstruct.io import atomic_write_bytes, read_json, write_json
from jinstruct.llm.ledger import BudgetExceeded, cost_usd, estimate_prompt_tokens
from jinstruct.llm.cache import ResponseCache
from jinstruct.llm.ledger import Ledger
from jinstruct.llm.request import ChatRequest, ChatResult, MalformedReply, parse_body
from jinstruct.llm.settings import EndpointSettings, ModelPrice


class BatchHost(Protocol):
    """What the Batch API runner needs of a client: its settings, cache and ledger, and how it prepares a request
    and reads a reply, so a batch answer is keyed, validated and booked exactly like a live one."""

    settings: EndpointSettings
    cache: ResponseCache
    ledger: Ledger
    run_dir: Path | None
    stage: str

    async def openai_client(self) -> Any: ...
    def attempts(self, req: ChatRequest) -> int: ...
    def prepare(self, req: ChatRequest, attempt: int) -> tuple[str, str, dict[str, Any]]: ...
    def make_result(self, index: int, req: ChatRequest, key: str, body: dict[str, Any], *, cached: bool, calls: int,
                    discount: float = 1.0) -> tuple[ChatResult, str | None]: ...
    def invalid(self, result: ChatResult, problem: str) -> ChatResult: ...
    def price_for(self, model: str) -> ModelPrice: ...

TERMINAL = {"completed", "failed", "expired", "cancelled"}
ENDPOINT = "/v1/chat/completions"


class BatchPending(RuntimeError):
    """A batch job is still running after batch_wait_s; re-running the stage collects it."""


class _Round:
    """What one run of `run_batch` knows: answers bought now, errors by key, calls per request."""

    def __init__(self) -> None:
        self.fresh: set[str] = set()
        self.errors: dict[str, str] = {}
        self.final_errors: set[str] = set()
        self.canonical: dict[str, str] = {}


def _state_path(client: BatchHost) -> Path:
    assert client.run_dir is not None
    return RunLayout.of(client.run_dir).batches / f"{client.stage}.json"


def _load_state(path: Path) -> dict[str, Any]:
    return read_json(path) if path.exists() else {"jobs": []}


async def run_batch(client: BatchHost, requests: list[ChatRequest], bar: Any) -> list[ChatResult]:
    """Answer `requests` through batch jobs (cached answers are not sent); results in input order."""
    s = client.settings
    if client.run_dir is None:
        raise ValueError("use_batch_api needs a run folder (run_dir): the batch id is kept there so a restarted run "
                         "collects the job instead of paying again")
    if s.is_embedded:
        raise ValueError("the embedded backend has no Batch API: set use_batch_api: false")
    state_path = _state_path(client)
    state = _load_state(state_path)
    oai = await client.openai_client()
    found = _Round()
    for req in requests:
        for attempt in range(client.attempts(req)):
            key, canonical, _ = client.prepare(req, attempt)
            found.canonical[key] = canonical
    try:
        for job in state["jobs"]:
            if not job.get("collected"):
                await _collect(client, oai, job, state, found, bar)

        results: dict[int, ChatResult] = {}
        calls = [0] * len(requests)
        invalid = [0] * len(requests)
        budget_stop = False
        for _ in range(s.structured_retries + 2):
            pending = _settle(client, requests, results, found, calls, invalid)
            if not pending:
                break
            pending, budget_stop = _fit_budget(client, pending)
            if not pending:
                break
            job = await _submit(client, oai, pending, state)
            await _collect(client, oai, job, state, found, bar)
            for i, *_ in pending:
                calls[i] += 1
            if budget_stop:
                _settle(client, requests, results, found, calls, invalid)
                break
        for i, req in enumerate(requests):
            if i not in results:
                key, _, _ = client.prepare(req, 0)
                why = next((found.errors[k] for k in _keys(client, req) if k in found.errors), "no answer from the batch job")
                results[i] = ChatResult(request=req, index=i, error=why, calls=calls[i], key=key)
        ordered = [results[i] for i in range(len(requests))]
        for r in ordered:
            if r.calls:  # the money of answered requests was booked as it came (`_take`); these are the submissions
                client.ledger.book_call(r.model or client.model, ok=r.error is None, calls=r.calls)
            client.ledger.count(cached=r.cached, failed=r.error is not None, truncated=r.truncated,
                                invalid=invalid[r.index], saved_usd=r.cost_usd if r.cached else 0.0, model=r.model)
        if bar is not None:
            bar.update(len(ordered))
        if budget_stop:  # as without batches: the results of the requests that were sent or cached
            done = [r for r in ordered if r.cached or r.calls > 0]
            raise BudgetExceeded(client.ledger.stop_message(len(done), len(requests)), done)
        return ordered
    finally:
        client.ledger.save()
        if bar is not None:
            bar.close()


def _keys(client: BatchHost, req: ChatRequest) -> list[str]:
    return [client.prepare(req, a)[0] for a in range(client.attempts(req))]


def _settle(client: BatchHost, requests: list[ChatRequest], results: dict[int, ChatResult], found: _Round,
            calls: list[int], invalid: list[int]) -> list[tuple[int, str, str, dict[str, Any]]]:
    """Fill `results` from the cache; return (index, key, canonical, payload) of the attempts still to send."""
    pending = []
    discount = client.settings.batch_discount
    for i, req in enumerate(requests):
        if i in results:
            continue
        last = None
        invalid[i] = 0
        for attempt in range(client.attempts(req)):
            key, canonical, payload = client.prepare(req, attempt)
            body = client.cache.get(key)
            if body is None:
                if key not in found.final_errors:
                    pending.append((i, key, canonical, payload))
                break
            fresh = key in found.fresh
            result, problem = client.make_result(i, req, key, body, cached=not fresh and calls[i] == 0, calls=calls[i],
                                             discount=discount if fresh else 1.0)
            if problem is None:
                results[i] = result
                break
            invalid[i] += 1
            last = (result, problem)
        else:
            assert last is not None
            results[i] = client.invalid(*last)
    return pending


def _fit_budget(client: BatchHost, pending: list[tuple[int, str, str, dict[str, Any]]]) -> tuple[list[Any], bool]:
    """The longest prefix of `pending` whose worst-case cost fits the budget, and whether some were left out."""
    s = client.settings
    if s.budget_usd is None:
        return pending, False
    room = s.budget_usd - client.ledger.spent
    total, kept = 0.0, []  # type: tuple[float, list[Any]]
    for item in pending:
        payload = item[3]
        price = client.price_for(payload["model"])
        limit = (payload.get(s.max_tokens_param) or 0) * payload.get("n", 1)
        if not limit:
            raise ValueError("budget_usd needs max_tokens (on the request or default_max_tokens) to bound each request's cost")
        worst = cost_usd(price, estimate_prompt_tokens(payload["messages"]) * client.ledger.prompt_scale(), limit,
                         s.batch_discount)
        if total + worst > room + 1e-12:
            client.ledger.blocked_usd = worst
            return kept, True
        total += worst
        kept.append(item)
    return kept, False


async def _submit(client: BatchHost, oai: Any, pending: list[tuple[int, str, str, dict[str, Any]]],
                  state: dict[str, Any]) -> dict[str, Any]:
    seen: set[str] = set()
    lines = []
    for _, key, _, payload in pending:
        if key not in seen:  # identical requests share one answer
            seen.add(key)
            lines.append(json.dumps({"custom_id": key, "method": "POST", "url": ENDPOINT, "body": payload},
                                    ensure_ascii=False))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    sha = hashlib.sha256(data).hexdigest()
    name = f"{client.stage}-{sha[:16]}.jsonl"
    assert client.run_dir is not None
    atomic_write_bytes(RunLayout.of(client.run_dir).batches / name, data)
    known = {job["batch_id"] for job in state["jobs"]}
    batch = await _orphan(oai, sha, known)
    if batch is None:
        uploaded = await oai.files.create(file=(name, data, "application/jsonl"), purpose="batch")
        batch = await oai.batches.create(
            input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h",
            metadata={"jinstruct_sha256": sha, "jinstruct_stage": client.stage[:500]},
        )
    job = {"batch_id": batch.id, "input": name, "sha256": sha, "requests": len(lines), "collected": False,
           "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    state["jobs"].append(job)
    write_json(_state_path(client), state)
    client.ledger.record.batch_ids.append(batch.id)
    client.ledger.save()
    return job


async def _orphan(oai: Any, sha: str, known: set[str]) -> Any:
    """A live batch made from exactly this input whose id was never written down (a kill right after create)."""
    page = await oai.batches.list(limit=100)
    for b in page.data:
        meta = b.metadata or {}
        if meta.get("jinstruct_sha256") == sha and b.id not in known and b.status not in ("failed", "expired", "cancelled"):
            return b
    return None


async def _collect(client: BatchHost, oai: Any, job: dict[str, Any], state: dict[str, Any], found: _Round, bar: Any) -> None:
    """Wait for a job to end, then put every answer into the cache by custom_id and note every failure."""
    s = client.settings
    started = time.monotonic()
    while True:
        batch = await oai.batches.retrieve(job["batch_id"])
        counts = batch.request_counts
        done = f"{counts.completed + counts.failed}/{counts.total}" if counts else "?"
        if bar is not None:
            bar.set_postfix_str(f"batch {batch.id} {batch.status} {done}", refresh=True)
        if batch.status in TERMINAL:
            break
        if s.batch_wait_s is not None and time.monotonic() - started > s.batch_wait_s:
            raise BatchPending(f"batch {batch.id} is {batch.status} ({done} done); its id is kept in "
                               f"{_state_path(client)}: re-run the stage to collect it without paying again")
        await asyncio.sleep(s.batch_poll_s)

    assert client.run_dir is not None
    sent: dict[str, dict[str, Any]] = {}
    input_path = RunLayout.of(client.run_dir).batches / job["input"]
    for line in input_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            sent[obj["custom_id"]] = obj["body"]
    for file_id in (batch.output_file_id, batch.error_file_id):
        if not file_id:
            continue
        content = await oai.files.content(file_id)
        for line in content.content.decode("utf-8").splitlines():
            if line.strip():
                _take(client, json.loads(line), sent, found)
    if batch.status != "completed":
        why = "; ".join(e.message or "" for e in (batch.errors.data or [])) if batch.errors else ""
        for key in sent:
            found.errors.setdefault(key, f"batch {batch.id} {batch.status}{': ' + why if why else ''}")
    job["collected"], job["status"] = True, batch.status
    write_json(_state_path(client), state)


def _take(client: BatchHost, line: dict[str, Any], sent: dict[str, dict[str, Any]], found: _Round) -> None:

    key = line.get("custom_id", "")
    payload = sent.get(key)
    if payload is None:
        return
    response = line.get("response") or {}
    status = response.get("status_code")
    if status == 200:
        body = response.get("body")
        try:
            body = parse_body(json.dumps(body).encode(), payload.get("n", 1))
        except MalformedReply as e:
            found.errors[key] = f"batch: {e}"
            return
        usage = body.get("usage") or {}
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        if client.cache.get(key) is None:
            canonical = found.canonical.get(key) or json.dumps({"body": payload}, sort_keys=True, ensure_ascii=False)
            client.cache.put(key, payload["model"], canonical, body)
            price = client.settings.pricing.get(payload["model"])
            client.ledger.book_call(payload["model"], ok=True, prompt_tokens=pt, completion_tokens=ct,
                                    cost=cost_usd(price, pt, ct, client.settings.batch_discount), calls=0)
            found.fresh.add(key)
        return
    error = line.get("error") or (response.get("body") or {}).get("error") or {}
    message = error.get("message", "") if isinstance(error, dict) else str(error)
    found.errors[key] = f"batch: HTTP {status}: {message}" if status else f"batch: {message}"
    if status is not None and status < 500 and status not in (408, 409, 429):
        found.final_errors.add(key)
