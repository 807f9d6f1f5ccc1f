"""How requests reach the endpoint: an ASGI app called in-process, or a server over pooled HTTP connections."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from types import ModuleType
from typing import Any, cast
from urllib.parse import urlparse
from urllib.request import getproxies, proxy_bypass

import httpx

ASGIApp = Any


class InProcessApp:
    """Runs an ASGI app's lifespan (startup before the first request, shutdown on `stop`) and hands each
    request the lifespan state, as a server would; httpx's ASGITransport alone runs no lifespan."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.state: dict[str, Any] = {}
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = True

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and self.state:
            scope = {**scope, "state": dict(self.state)}
        await self.app(scope, receive, send)

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        self._task = asyncio.get_running_loop().create_task(self._run(scope))
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._from_app.get()
        if message["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the embedded app failed to start: {message.get('message', '')}")

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._to_app.get, self._from_app.put)
        except Exception:  # an app without lifespan support may raise on the scope: it needs no startup
            self._supported = False
            await self._from_app.put({"type": "lifespan.startup.complete"})

    async def stop(self) -> None:
        if self._task is None or self._task.done():
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self._from_app.get(), timeout=30)
        finally:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def asgi_http_client(app: InProcessApp, base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=cast(Any, app)), base_url=base_url, timeout=None)


class CallFailed(Exception):
    """One chat completion call failed: `status` (None: no HTTP answer) and the answer's headers (Retry-After)."""

    def __init__(self, why: str, status: int | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(why)
        self.status, self.headers = status, headers


def aiohttp_available() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


CONNECTIONS_PER_CLIENT = 16


def openai_clients(base_url: str, api_key: str, concurrency: int, timeout_s: float) -> list[Any]:
    """openai clients for `concurrency` parallel requests to a server, used in turn: one per 16 of them.

    httpcore's pool walks all its connections each time a request starts or ends (probing every idle
    socket), so a single pool of hundreds of connections costs CPU in proportion to its size on every
    request; several small pools keep that constant.
    """
    import openai

    hx: ModuleType
    try:
        import httpx2 as hx  # the HTTP library of openai >= 3
    except ImportError:
        hx = httpx
    count = max(1, -(-concurrency // CONNECTIONS_PER_CLIENT))
    per_pool = -(-concurrency // count)
    limits = hx.Limits(max_connections=2 * per_pool + 8, max_keepalive_connections=2 * per_pool + 8)
    timeout = hx.Timeout(timeout_s, connect=min(10.0, timeout_s))
    ssl_context = hx.create_ssl_context()  # the system's trust store, loaded once for all pools
    return [
        openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s,
                           http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout, verify=ssl_context))
        for _ in range(count)
    ]


class OpenAIPoster:
    """POST /chat/completions through `openai.AsyncOpenAI.post` (the clients in turn); the body goes as it
    is, vLLM's extra fields included, and comes back unparsed."""

    def __init__(self, clients: list[Any]):
        self.clients = clients
        self._turn = 0
        try:
            import httpx2  # the HTTP library of openai >= 3

            self._response: type[Any] = httpx2.Response
        except ImportError:
            self._response = httpx.Response

    async def post(self, payload: dict[str, Any]) -> bytes:
        import openai

        self._turn = (self._turn + 1) % len(self.clients)
        try:
            response = await self.clients[self._turn].post("/chat/completions", cast_to=self._response, body=payload)
        except openai.APIStatusError as e:
            raise CallFailed(e.message, e.status_code, e.response.headers) from None
        except openai.APITimeoutError:
            raise TimeoutError from None
        except openai.APIConnectionError as e:
            raise CallFailed(f"connection error: {e.__cause__ or e}") from None
        return cast(bytes, response.content)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


class AiohttpPoster:
    """POST /chat/completions with aiohttp: the same request the openai client sends (JSON body, bearer key),
    for a fifth of its CPU per request, which is what lets one process keep hundreds of requests in flight."""

    def __init__(self, base_url: str, api_key: str, concurrency: int, timeout_s: float):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                        "Accept": "application/json"}
        self.concurrency, self.timeout_s = concurrency, timeout_s
        # The proxy from HTTP(S)_PROXY / NO_PROXY, looked up once (aiohttp's trust_env would redo it per request).
        host = urlparse(self.url).hostname or ""
        self.proxy = None if proxy_bypass(host) else getproxies().get(urlparse(self.url).scheme)
        self._session: Any = None

    async def post(self, payload: dict[str, Any]) -> bytes:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency + 8, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            )
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            async with self._session.post(self.url, data=data, headers=self.headers, proxy=self.proxy) as response:
                content = await response.read()
                status, headers = response.status, response.headers
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors (some also ClientErrors): the caller says "timed out"
            raise
        except aiohttp.ClientError as e:
            raise CallFailed(f"connection error: {e}") from None
        if status >= 400:
            raise CallFailed(f"Error code: {status} - {_error_message(content)}", status, headers)
        return cast(bytes, content)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _error_message(content: bytes) -> str:
    """The `error.message` of an OpenAI-style error body, else the body itself (cut short)."""
    try:
        body = json.loads(content)
        message = body["error"]["message"] if isinstance(body.get("error"), dict) else body.get("error") or body
        return str(message)[:500]
    except (ValueError, KeyError, TypeError, AttributeError):
        return content[:500].decode("utf-8", "replace")
