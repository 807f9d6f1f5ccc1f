"""How requests reach the endpoint: an ASGI app called in-process, or a server over pooled HTTP connections."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import ModuleType
from typing import Any, cast
from urllib.parse import urlparse
from urllib.request import getproxies, proxy_bypass

import httpx
from asgi_lifespan import LifespanManager, LifespanNotSupported

ASGIApp = Any


class InProcessApp:
    """An ASGI app served in-process: its lifespan runs (startup before the first request, shutdown on `stop`) and
    each request sees the lifespan state, as under a server; httpx's ASGITransport alone runs no lifespan.
    asgi-lifespan does the protocol."""

    def __init__(self, app: ASGIApp):
        self.app: ASGIApp = app
        self._manager: LifespanManager | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    async def start(self) -> None:
        manager = LifespanManager(self.app, startup_timeout=None, shutdown_timeout=30)
        try:
            await manager.__aenter__()
        except LifespanNotSupported:  # an app without a lifespan needs no startup
            return
        except Exception as e:
            raise RuntimeError(f"the embedded app failed to start: {e}") from e
        self._manager, self.app = manager, manager.app

    async def stop(self) -> None:
        if self._manager is not None:
            manager, self._manager = self._manager, None
            await manager.__aexit__(None, None, None)


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


class SpreadPoster:
    """Several servers of one model (vLLM replicas): each request goes to the one with the fewest requests in
    flight (the first such, in order), so a slow or busy replica gets fewer; `sent` counts requests per server."""

    def __init__(self, posters: list[Any]):
        self.posters = posters
        self.in_flight = [0] * len(posters)
        self.sent = [0] * len(posters)

    async def post(self, payload: dict[str, Any]) -> bytes:
        i = min(range(len(self.posters)), key=lambda k: (self.in_flight[k], self.sent[k]))
        self.in_flight[i] += 1
        self.sent[i] += 1
        try:
            return cast(bytes, await self.posters[i].post(payload))
        finally:
            self.in_flight[i] -= 1

    async def close(self) -> None:
        for poster in self.posters:
            await poster.close()


def _error_message(content: bytes) -> str:
    """The `error.message` of an OpenAI-style error body, else the body itself (cut short)."""
    try:
        body = json.loads(content)
        message = body["error"]["message"] if isinstance(body.get("error"), dict) else body.get("error") or body
        return str(message)[:500]
    except (ValueError, KeyError, TypeError, AttributeError):
        return content[:500].decode("utf-8", "replace")
