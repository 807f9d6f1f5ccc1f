"""The one LLM client: every stage's chat completions go through `LLMClient`.

All network work runs on one event loop in a worker thread that the client owns, so the sync methods
work anywhere (a script, or a Jupyter cell whose event loop is already running) and the async methods
can be awaited from any loop. Each answer is looked up in the cache before anything is sent, and
committed to it as soon as it arrives.

A request is paid once. Identical requests in flight together in one client (two models gave the same answer, so
the judge sees the same prompt twice) share one call. Across processes sharing the cache, the cache's lease on the
request makes a second process wait for the first one's answer. A call on the wire when its caller stops waiting
(a stream closed early, a budget stop, an interrupt) is let finish: its answer is cached and its cost booked, so
nothing the endpoint charged for is lost; it is only not retried.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import queue
import threading
import weakref
from dataclasses import dataclass
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sized
from pathlib import Path
from typing import Any, NamedTuple, Self, TypeVar, cast

import openai

from jinstruct.progress import bar as progress_bar
from jinstruct.llm.cache import ResponseCache, default_cache_path
from jinstruct.llm.ledger import BudgetExceeded, Estimate, Ledger, cost_usd, estimate_prompt_tokens
from jinstruct.llm.limits import RateLimiter, RetryAfterTooLong, backoff_s
from jinstruct.formats.layout import RunLayout
from jinstruct.llm.batch import run_batch
from jinstruct.llm.request import ChatRequest, ChatResult, MalformedReply, Usage, build_payload, parse_body, request_key
from jinstruct.llm.settings import EndpointSettings, ModelPrice, resolve_api_key
from jinstruct.llm.structured import check_schema, validate_reply
from jinstruct.llm.transport import (
    AiohttpPoster,
    CallFailed,
    InProcessApp,
    OpenAIPoster,
    SpreadPoster,
    aiohttp_available,
    asgi_http_client,
    openai_clients,
)

T = TypeVar("T")
Prepared = tuple[str, str, dict[str, Any]]  # (cache key, canonical request JSON, wire payload)
Poster = AiohttpPoster | OpenAIPoster | SpreadPoster

RETRYABLE_STATUS = {408, 409, 429}
_END = object()


class _Outcome(NamedTuple):
    """What fetching one attempt gave: the answer kept in the cache (None: failed), the HTTP calls made for it by
    this caller, and why it failed."""

    body: dict[str, Any] | None
    calls: int
    error: str | None


@dataclass
class _Fetch:
    """One attempt being fetched, shared by every caller in this client that asks for the same cache key."""

    task: asyncio.Task[_Outcome] | None = None
    waiters: int = 0  # callers awaiting it; at 0 no new call is started (one on the wire is let finish)
    on_wire: bool = False

class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="jinstruct-llm", daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a sync LLMClient call from inside the client's own loop (e.g. from the request "
                               "iterator given to stream()) would wait for itself; use another client")
        future = self.submit(coro)
        try:
            return future.result()
        except BaseException:  # KeyboardInterrupt (a Jupyter interrupt) included: stop the work too
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        if not self.thread.is_alive():
            self.loop.close()


class LLMClient:
    """Chat completions against one OpenAI-compatible endpoint, cached, paced, retried, budgeted and booked.

    settings: the endpoint and its limits. cache_path: the SQLite response cache (shared by all stages).
    stage: the ledger's name; run_dir: where `ledger/<stage>.json` (and Batch API state) go.
    asgi_app: serve requests from this ASGI app in-process instead of over HTTP (tests, custom backends).
    """

    def __init__(
        self,
        settings: EndpointSettings,
        cache_path: str | Path,
        stage: str = "",
        run_dir: str | Path | None = None,
        *,
        progress: bool = True,
        asgi_app: Any = None,
    ):
        self.settings = settings
        self.stage = stage or "default"
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.model = settings.model_name()
        self.progress = progress
        self._api_key = resolve_api_key(settings)
        if settings.budget_usd is not None:
            self.price_for(self.model)
        self.cache = ResponseCache(cache_path)
        ledger_path = RunLayout.of(self.run_dir).ledger(self.stage) if self.run_dir is not None else None
        self.ledger = Ledger(self.stage, ledger_path, settings.budget_usd)
        self._asgi_app = asgi_app
        self._in_process: InProcessApp | None = None
        self._oais: list[openai.AsyncOpenAI] = []
        self._poster: Poster | None = None
        self._open_lock: asyncio.Lock | None = None
        self._runner: _LoopThread | None = None
        self._fetches: dict[str, _Fetch] = {}  # cache key -> the attempt in flight (in-process merging)
        self._rpm = RateLimiter(settings.requests_per_minute) if settings.requests_per_minute else None
        self._tpm = RateLimiter(settings.tokens_per_minute) if settings.tokens_per_minute else None
        self._closed = False
        atexit.register(_close_at_exit, weakref.ref(self))

    # ----- public API ---------------------------------------------------------------------------

    def chat(self, request: ChatRequest) -> ChatResult:
        """One request; a failure is reported in `result.error`."""
        return self.chat_many([request], progress=False)[0]

    def chat_many(self, requests: Iterable[ChatRequest], desc: str = "", *, progress: bool | None = None) -> list[ChatResult]:
        """All answers, in input order (sync; safe inside a running event loop such as Jupyter's).

        Raises BudgetExceeded (with `.results`: what was answered) when the budget stops the stage."""
        requests = list(requests)
        return self._loop().run(self._chat_many(requests, self._bar(len(requests), desc, progress)))

    async def achat_many(self, requests: Iterable[ChatRequest], desc: str = "", *, progress: bool | None = None) -> list[ChatResult]:
        """`chat_many`, awaitable from any event loop."""
        requests = list(requests)
        future = self._loop().submit(self._chat_many(requests, self._bar(len(requests), desc, progress)))
        return await asyncio.wrap_future(future)

    async def astream(self, requests: Iterable[ChatRequest], desc: str = "", *, progress: bool | None = None) -> AsyncIterator[ChatResult]:
        """Results as they complete (each knows its `index`). Requests are pulled lazily, never more than
        twice the concurrency ahead of what the caller has taken, so a caller can stop early (break)."""
        caller = asyncio.get_running_loop()
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        window = asyncio.Semaphore(2 * self.settings.concurrency)
        future = self._loop().submit(
            self._pump_into(requests, self._bar(_size(requests), desc, progress), window,
                            lambda item: caller.call_soon_threadsafe(inbox.put_nowait, item))
        )
        try:
            while True:
                item = await inbox.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                self._loop().loop.call_soon_threadsafe(window.release)
                yield item
        finally:
            future.cancel()

    def stream(self, requests: Iterable[ChatRequest], desc: str = "", *, progress: bool | None = None) -> Iterator[ChatResult]:
        """The sync twin of `astream`: results as they complete, requests pulled lazily."""
        inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        window = asyncio.Semaphore(2 * self.settings.concurrency)
        runner = self._loop()
        future = runner.submit(self._pump_into(requests, self._bar(_size(requests), desc, progress), window, inbox.put))
        try:
            while True:
                item = inbox.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                runner.loop.call_soon_threadsafe(window.release)
                yield item
        finally:
            future.cancel()  # the caller stopped: what the pump does next no longer matters

    def estimate(self, requests: Iterable[ChatRequest], expected_output_tokens: int | None = None) -> Estimate:
        """Requests, tokens and cost of sending `requests` now, calling nothing. Cached answers cost nothing;
        completions count `expected_output_tokens` per reply (default: max_tokens, the worst case)."""
        price = self.settings.pricing.get(self.model)
        discount = self.settings.batch_discount if self.settings.use_batch_api else 1.0
        total = cached = prompt = completion = worst = 0
        cost = max_cost = 0.0
        bounded = True
        for i, req in enumerate(requests):
            total += 1
            if self._from_cache(i, req)[0] is not None:
                cached += 1
                continue
            p = estimate_prompt_tokens(req.messages)
            limit = (req.max_tokens or self.settings.default_max_tokens or 0) * req.n
            bounded = bounded and limit > 0
            expected = expected_output_tokens * req.n if expected_output_tokens is not None else limit
            req_price = self.settings.pricing.get(req.model or self.model)
            prompt, completion, worst = prompt + p, completion + expected, worst + limit
            cost += cost_usd(req_price, p, expected, discount)
            max_cost += cost_usd(req_price, p, limit, discount)
        s = self.settings
        gpu_hours = completion / s.tokens_per_s / 3600 * s.gpus_per_replica if s.tokens_per_s else None
        return Estimate(model=self.model, requests=total, cached=cached, to_send=total - cached, prompt_tokens=prompt,
                        completion_tokens=completion, max_completion_tokens=worst if bounded else None,
                        cost_usd=cost, max_cost_usd=max_cost if bounded else None, priced=price is not None,
                        gpu_hours=gpu_hours)

    def key_of(self, request: ChatRequest, attempt: int = 0) -> Prepared:
        """(cache key, canonical request JSON, wire payload) of `request` (of its `attempt`-th structured try)."""
        return self.prepare(request, attempt)

    def close(self) -> None:
        """Let the calls on the wire finish (cached and booked), write the ledger, close connections and the cache."""
        if self._closed:
            return
        self._closed = True
        if self._runner is not None:
            try:
                self._runner.run(self._aclose())
            finally:
                self._runner.stop()
        self.ledger.close()
        self.cache.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- the engine (runs on the client's loop) ---------------------------------------------

    def _loop(self) -> _LoopThread:
        if self._closed:
            raise RuntimeError("this LLMClient is closed")
        if self._runner is None:
            self._runner = _LoopThread()
        return self._runner

    async def openai_client(self) -> openai.AsyncOpenAI:
        """The openai client (the Batch API's files and batches go through it)."""
        await self._open()
        return self._oais[0]

    async def _open(self) -> Poster:
        """Connect once: openai clients, and the poster that sends chat completions."""
        if self._poster is not None:
            return self._poster
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._poster is None:
                s = self.settings
                if self._asgi_app is not None or s.is_embedded:
                    app = self._asgi_app
                    if app is None:
                        from jinstruct.llm.backend import create_app

                        assert s.embedded_model is not None
                        app = await asyncio.to_thread(create_app, Path(s.embedded_model))
                    self._in_process = InProcessApp(app)
                    await self._in_process.start()
                    base_url = "http://embedded/v1" if s.is_embedded else s.base_url
                    http = asgi_http_client(self._in_process, base_url)
                    self._oais = [openai.AsyncOpenAI(api_key=self._api_key, base_url=base_url, max_retries=0,
                                                     timeout=s.timeout_s, http_client=cast(Any, http))]
                    self._poster = OpenAIPoster(self._oais)
                elif s.http_backend == "aiohttp" or (s.http_backend == "auto" and aiohttp_available()):
                    if not aiohttp_available():
                        raise RuntimeError("http_backend: aiohttp needs the aiohttp package (pip install 'openai[aiohttp]')")
                    self._oais = openai_clients(s.base_url, self._api_key, 1, s.timeout_s)
                    posters = [AiohttpPoster(url, self._api_key, s.concurrency, s.timeout_s) for url in s.base_urls]
                    self._poster = posters[0] if len(posters) == 1 else SpreadPoster(posters)
                else:
                    self._oais = openai_clients(s.base_url, self._api_key, s.concurrency, s.timeout_s)
                    posters = [OpenAIPoster(self._oais)] + [
                        OpenAIPoster(openai_clients(url, self._api_key, s.concurrency, s.timeout_s))
                        for url in s.replicas]
                    self._poster = posters[0] if len(posters) == 1 else SpreadPoster(posters)
        return self._poster

    async def _aclose(self) -> None:
        fetches = list(self._fetches.values())
        for f in fetches:
            if not f.on_wire and f.task is not None:
                f.task.cancel()  # nothing sent yet: nothing to pay for
        tasks = [f.task for f in fetches if f.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.timeout_s + 5)
        if self._poster is not None:
            await self._poster.close()
        for oai in self._oais:
            await oai.close()
        if self._in_process is not None:
            await self._in_process.stop()

    def _redact(self, text: str) -> str:
        if self._api_key and self._api_key != "EMPTY":
            text = text.replace(self._api_key, "***")
        return text

    def price_for(self, model: str) -> ModelPrice:
        price = self.settings.pricing.get(model)
        if price is None:
            raise ValueError(f"budget_usd is set but pricing has no entry for model '{model}': the budget cannot be enforced")
        return price

    def attempts(self, req: ChatRequest) -> int:
        structured = req.json_schema is not None or req.choices is not None
        return 1 + (self.settings.structured_retries if structured else 0)

    def prepare(self, req: ChatRequest, attempt: int) -> Prepared:
        s = self.settings
        payload = build_payload(req, self.model, attempt, s.default_max_tokens, s.max_tokens_param, s.extra_body)
        key, canonical = request_key(payload, req.sample_index, attempt)
        return key, canonical, payload

    def make_result(self, index: int, req: ChatRequest, key: str, body: dict[str, Any], *, cached: bool, calls: int,
                discount: float = 1.0) -> tuple[ChatResult, str | None]:
        """A result from a response body, and what is wrong with its structured reply (None when valid)."""
        choices = sorted(body["choices"], key=lambda c: c.get("index", 0))
        texts = [c["message"].get("content") or "" for c in choices]
        finish = [c.get("finish_reason") for c in choices]
        raw_usage = body.get("usage") or {}
        usage = Usage(prompt_tokens=raw_usage.get("prompt_tokens") or 0,
                      completion_tokens=raw_usage.get("completion_tokens") or 0)
        model = req.model or self.model
        cost = cost_usd(self.settings.pricing.get(model), usage.prompt_tokens, usage.completion_tokens, discount)
        parsed: list[Any] | None = None
        problem = None
        if req.json_schema is not None or req.choices is not None:
            parsed = []
            for n, (text, reason) in enumerate(zip(texts, finish)):
                value, problem = validate_reply(text, req.json_schema, req.choices)
                if problem is not None:
                    cut = " (finish_reason=length: cut off at max_tokens)" if reason == "length" else ""
                    problem = f"choice {n}: {problem}{cut}"
                    break
                parsed.append(value)
        result = ChatResult(request=req, index=index, texts=texts, finish_reasons=finish, usage=usage, cost_usd=cost,
                            cached=cached, request_id=body.get("id"), model=body.get("model") or model,
                            parsed_all=parsed if problem is None else None, calls=calls, key=key)
        return result, problem

    def _from_cache(self, index: int, req: ChatRequest) -> tuple[ChatResult | None, int, Prepared | None]:
        """The result made from the cache alone; else None, the first attempt still to send and its
        (key, canonical JSON, payload)."""
        if req.json_schema is not None:
            check_schema(req.json_schema)
        last: tuple[ChatResult, str] | None = None
        for attempt in range(self.attempts(req)):
            prepared = self.prepare(req, attempt)
            body = self.cache.get(prepared[0])
            if body is None:
                return None, attempt, prepared
            result, problem = self.make_result(index, req, prepared[0], body, cached=True, calls=0)
            if problem is None:
                return result, attempt, None
            last = (result, problem)
        assert last is not None
        return self.invalid(last[0], last[1]), self.attempts(req), None

    def invalid(self, result: ChatResult, problem: str) -> ChatResult:
        return result.model_copy(update={"error": f"invalid reply after {self.attempts(result.request)} attempts: {problem}"})

    async def _run_one(self, index: int, req: ChatRequest, first: int, prepared: Prepared) -> tuple[ChatResult, int]:
        """Answer one request from attempt `first` on (the earlier ones are cached and invalid; `first`, already
        `prepared`, is not cached): calls with retries, each answer cached. Never raises but for BudgetExceeded.
        Returns the result and how many invalid structured replies were rejected on the way."""
        calls = invalid = 0
        last: tuple[ChatResult, str] | None = None
        for attempt in range(first, self.attempts(req)):
            key, canonical, payload = prepared if attempt == first else self.prepare(req, attempt)
            body = None if attempt == first else self.cache.get(key)
            if body is None:
                outcome = await self._fetch(req, key, canonical, payload)
                calls += outcome.calls
                if outcome.body is None:
                    return ChatResult(request=req, index=index, error=outcome.error, calls=calls, key=key), invalid
                body = outcome.body
            result, problem = self.make_result(index, req, key, body, cached=calls == 0, calls=calls)
            if problem is None:
                return result, invalid
            invalid += 1
            last = (result, problem)
        assert last is not None
        return self.invalid(last[0], last[1]), invalid

    async def _fetch(self, req: ChatRequest, key: str, canonical: str, payload: dict[str, Any]) -> _Outcome:
        """The answer to one attempt: joined with the same attempt already in flight in this client, else sent. A
        caller that joins made no call (calls=0); a cancelled caller leaves the shared attempt running."""
        fetch = self._fetches.get(key)
        leader = fetch is None
        if fetch is None:
            fetch = self._fetches[key] = _Fetch()
            fetch.task = asyncio.get_running_loop().create_task(self._send(req, key, canonical, payload, fetch))
            fetch.task.add_done_callback(lambda t, k=key, f=fetch: self._fetch_done(t, k, f))
        assert fetch.task is not None
        fetch.waiters += 1
        try:
            outcome = await asyncio.shield(fetch.task)
        finally:
            fetch.waiters -= 1
        return outcome if leader else outcome._replace(calls=0)

    def _fetch_done(self, task: asyncio.Task[_Outcome], key: str, fetch: _Fetch) -> None:
        if self._fetches.get(key) is fetch:
            del self._fetches[key]
        if not task.cancelled():
            task.exception()  # seen here when every caller had gone (a budget stop after a stream closed)

    async def _claim(self, key: str, ttl_s: float) -> dict[str, Any] | None:
        """Take the cache's lease on `key` (None: send it now); while another process holds it, wait for its answer
        and return that."""
        delay = 0.02
        while True:
            body = self.cache.get(key)
            if body is not None:
                return body
            if self.cache.lease(key, ttl_s):
                return None
            await asyncio.sleep(delay)
            delay = min(2 * delay, 0.5)

    async def _send(self, req: ChatRequest, key: str, canonical: str, payload: dict[str, Any], fetch: _Fetch) -> _Outcome:
        """POST one attempt with retries, under the cache's lease; the answer is cached and every call booked as it
        ends. Raises BudgetExceeded when the budget stops it."""
        s = self.settings
        poster = await self._open()
        model = payload["model"]
        price = self.price_for(model) if s.budget_usd is not None else s.pricing.get(model)
        metered = s.budget_usd is not None or self._tpm is not None
        estimated = estimate_prompt_tokens(req.messages) if metered else 0
        max_completion = (req.max_tokens or s.default_max_tokens or 0) * req.n
        if s.budget_usd is not None and not max_completion:
            raise ValueError("budget_usd needs max_tokens (on the request or default_max_tokens) to bound each request's cost")
        lease_s = s.timeout_s + s.backoff_max_s + 30.0
        calls = 0
        why = ""
        try:
            for retry in range(s.max_retries + 1):
                if fetch.waiters == 0:
                    return _Outcome(None, calls, (f"{why}; " if why else "") + "not sent again: nobody waits for it")
                other = await self._claim(key, lease_s)
                if other is not None:  # another process sent it meanwhile
                    return _Outcome(other, calls, None)
                if self._rpm is not None:
                    await self._rpm.acquire(1)
                if self._tpm is not None:
                    await self._tpm.acquire(estimated + max_completion)
                reserved = cost_usd(price, estimated * self.ledger.prompt_scale(), max_completion)
                await self.ledger.reserve(reserved)
                calls += 1
                headers = None
                fetch.on_wire = True
                try:
                    async with asyncio.timeout(s.timeout_s):
                        content = await poster.post(payload)
                    body = parse_body(content, req.n)
                    if price is None and not s.is_embedded and model not in self.ledger.record.unpriced_models:
                        self.ledger.record.unpriced_models.append(model)
                    usage = body.get("usage") or {}
                    prompt_tokens = int(usage.get("prompt_tokens") or 0)
                    completion_tokens = int(usage.get("completion_tokens") or 0)
                    self.ledger.book_call(model, ok=True, prompt_tokens=prompt_tokens,
                                          completion_tokens=completion_tokens,
                                          cost=cost_usd(price, prompt_tokens, completion_tokens))
                    if metered:
                        self.ledger.learn_prompt(estimated, prompt_tokens)
                    return _Outcome(self.cache.put(key, model, canonical, body, raw=content), calls, None)
                except CallFailed as e:
                    self.ledger.book_call(model, ok=False)
                    why = self._redact(str(e))
                    if e.status is not None and e.status not in RETRYABLE_STATUS and e.status < 500:
                        return _Outcome(None, calls, why)
                    headers = e.headers
                except TimeoutError:
                    self.ledger.book_call(model, ok=False)
                    why = f"timed out after {s.timeout_s:g} s"
                except MalformedReply as e:
                    self.ledger.book_call(model, ok=False)
                    why = str(e)
                finally:
                    fetch.on_wire = False
                    await self.ledger.settle(reserved)
                if retry < s.max_retries:
                    try:
                        wait = backoff_s(retry, s.backoff_base_s, s.backoff_max_s, headers)
                    except RetryAfterTooLong as e:
                        return _Outcome(None, calls, f"{why}; {e}")
                    await asyncio.sleep(wait)
            return _Outcome(None, calls, f"{why} (gave up after {calls} attempts)")
        finally:
            self.cache.release(key)

    async def _results(self, requests: Iterable[ChatRequest], bar: Any, window: asyncio.Semaphore | None) -> AsyncIterator[ChatResult]:
        """Results as they complete: cache hits at once, the rest through at most `concurrency` calls."""
        self.ledger.stopped, self.ledger.blocked_usd = False, 0.0
        finished: asyncio.Queue[asyncio.Task[tuple[ChatResult, int]]] = asyncio.Queue()
        running: set[asyncio.Task[tuple[ChatResult, int]]] = set()
        limit = self.settings.concurrency
        source = iter(requests)
        index, answered, exhausted, budget_error = 0, 0, False, None
        start_cost, start_tokens = self.ledger.record.cost_usd, self._tokens()

        def done(task: asyncio.Task[tuple[ChatResult, int]]) -> None:
            running.discard(task)
            finished.put_nowait(task)

        def book(result: ChatResult, invalid: int) -> None:
            nonlocal answered
            answered += 1
            self.ledger.count(cached=result.cached, failed=result.error is not None, truncated=result.truncated,
                              invalid=invalid, saved_usd=result.cost_usd if result.cached else 0.0,
                              model=result.model)
            if bar is not None:
                bar.update(1)
                spent = self.ledger.record.cost_usd - start_cost
                bar.set_postfix_str(f"{self._tokens() - start_tokens:,} tok, ${spent:.4f}", refresh=False)
            self.ledger.save(every_s=10.0)

        try:
            while True:
                while not exhausted and len(running) < limit and not self.ledger.stopped:
                    if window is not None:
                        if window.locked() and not finished.empty():
                            # the caller is behind: hand over what is done first, or its permits never come back
                            break
                        await window.acquire()
                    try:
                        req = next(source)
                    except StopIteration:
                        exhausted = True
                        if window is not None:
                            window.release()
                        break
                    if not isinstance(req, ChatRequest):
                        req = ChatRequest.model_validate(req)
                    hit, first, prepared = self._from_cache(index, req)
                    if hit is not None:
                        book(hit, 0)
                        index += 1
                        yield hit
                        continue
                    assert prepared is not None
                    task = asyncio.get_running_loop().create_task(self._run_one(index, req, first, prepared))
                    task.add_done_callback(done)
                    running.add(task)
                    index += 1
                if not running and finished.empty():
                    break
                task = await finished.get()
                try:
                    result, invalid = task.result()
                except BudgetExceeded as e:
                    budget_error = budget_error or e
                    continue
                book(result, invalid)
                yield result
        finally:
            for task in list(running):
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            self.ledger.save()
            if bar is not None:
                bar.close()
        if budget_error is not None:
            # a list's every request is known: those never taken are cut by the stop too
            self.ledger.cut_by_budget((len(requests) if isinstance(requests, Sized) else index) - answered)
            self.ledger.save()
            raise BudgetExceeded(self.ledger.stop_message(answered, index))

    def _tokens(self) -> int:
        return self.ledger.record.prompt_tokens + self.ledger.record.completion_tokens

    def _bar(self, total: int | None, desc: str, progress: bool | None) -> Any:
        """A progress bar made in the caller's thread (where Jupyter shows it), updated from the client's loop."""
        if not (self.progress if progress is None else progress):
            return None
        return progress_bar(total=total, desc=desc or self.stage, unit="req")

    async def _chat_many(self, requests: list[ChatRequest], bar: Any) -> list[ChatResult]:
        if self.settings.use_batch_api:
            return await run_batch(self, requests, bar)
        results: list[ChatResult] = []
        try:
            async for result in self._results(requests, bar, None):
                results.append(result)
        except BudgetExceeded as e:
            e.results = sorted(results, key=lambda r: r.index)
            raise
        results.sort(key=lambda r: r.index)
        return results

    async def _pump_into(self, requests: Iterable[ChatRequest], bar: Any, window: asyncio.Semaphore,
                         put: Callable[[Any], Any]) -> None:
        try:
            if self.settings.use_batch_api:
                items: Iterable[ChatResult] = await self._chat_many(list(requests), bar)
                for r in items:
                    put(r)
            else:
                async for r in self._results(requests, bar, window):
                    put(r)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            put(e)
            return
        put(_END)


def _size(requests: Iterable[Any]) -> int | None:
    return len(requests) if isinstance(requests, Sized) else None


def _close_at_exit(ref: weakref.ref[LLMClient]) -> None:
    client = ref()
    if client is not None:
        client.close()


def open_client(settings: EndpointSettings, run_dir: str | Path | None, stage: str,
                cache_path: str | Path | None = None, *, progress: bool = True) -> LLMClient:
    """The client a stage uses: the shared cache (default under the user's cache folder), the stage's ledger
    in `run_dir`."""
    return LLMClient(settings, cache_path or default_cache_path(), stage=stage, run_dir=run_dir, progress=progress)
