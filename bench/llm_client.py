"""Benchmark of the LLM client: throughput against an endpoint that answers after a fixed latency, and cached throughput.

    python bench/llm_client.py [--latency 1.0] [--rounds 6] [--cached 20000] [--backend auto|openai|aiohttp]

A local server (uvicorn on 127.0.0.1, a separate process) answers every chat completion after `--latency`
seconds. For each concurrency the client sends rounds x concurrency distinct requests through a fresh
cache; the ideal rate is concurrency / latency. Client CPU is the process time of the client process
(all its threads) per request. Cached throughput is `chat_many` over answers already in the cache.
Targets: >= 90% of ideal at 64 and 256; >= 5,000 cached answers/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from jinstruct.llm import ChatRequest, EndpointSettings, LLMClient
from jinstruct.llm.transport import aiohttp_available

REPLY = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "はい、わかりました。" * 10}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 40, "completion_tokens": 100, "total_tokens": 140},
}


def make_app(latency: float):
    body = json.dumps(REPLY, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def app(scope, receive, send):  # a bare ASGI app: as little server CPU per request as possible
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        if scope["path"].endswith("/chat/completions"):
            await asyncio.sleep(latency)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def serve(port: int, latency: float) -> None:
    import uvicorn

    uvicorn.run(make_app(latency), host="127.0.0.1", port=port, log_level="warning", backlog=4096,
                timeout_keep_alive=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--latency", str(latency)])
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            httpx.get(url + "/models", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the benchmark server did not start")


def requests(n: int, tag: str) -> list[ChatRequest]:
    return [ChatRequest.user(f"ベンチマーク {tag} {i}: 日本語で短く答えてください。", max_tokens=128) for i in range(n)]


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of another process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def run_level(url: str, server_pid: int, concurrency: int, rounds: int, latency: float,
              backend: str = "auto") -> dict[str, float]:
    n = concurrency * rounds
    settings = EndpointSettings(base_url=url, model="bench-model", api_key_env=None, concurrency=concurrency,
                                timeout_s=60, http_backend=backend)
    with tempfile.TemporaryDirectory() as tmp, LLMClient(settings, Path(tmp) / "cache.sqlite3", progress=False) as client:
        client.chat(ChatRequest.user(f"warm-up {concurrency}"))  # open the connection pools: steady state is measured
        batch = requests(n, f"c{concurrency}")
        server0 = process_cpu_s(server_pid)
        cpu0, t0 = time.process_time(), time.perf_counter()
        results = client.chat_many(batch)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        server1 = process_cpu_s(server_pid)
    failed = sum(not r.ok for r in results)
    ideal = concurrency / latency
    server_ms = 1000 * (server1 - server0) / n if server0 is not None and server1 is not None else float("nan")
    return {"concurrency": concurrency, "requests": n, "failed": failed, "wall_s": wall, "rate": n / wall,
            "ideal": ideal, "pct": 100 * n / wall / ideal, "cpu_ms": 1000 * cpu / n, "server_ms": server_ms}


def run_cached(count: int) -> dict[str, float]:
    settings = EndpointSettings(base_url="http://127.0.0.1:9/v1", model="bench-model", api_key_env=None)
    with tempfile.TemporaryDirectory() as tmp, LLMClient(settings, Path(tmp) / "cache.sqlite3", progress=False) as client:
        batch = requests(count, "cached")
        for req in batch:
            key, canonical, _ = client.key_of(req)
            client.cache.put(key, "bench-model", canonical, REPLY)
        client.chat_many(batch[:100])  # start the client's loop
        cpu0, t0 = time.process_time(), time.perf_counter()
        results = client.chat_many(batch)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert all(r.cached for r in results)
    return {"requests": count, "wall_s": wall, "rate": count / wall, "cpu_ms": 1000 * cpu / count}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=6, help="requests per level = rounds x concurrency")
    ap.add_argument("--levels", default="8,64,256")
    ap.add_argument("--cached", type=int, default=20_000)
    ap.add_argument("--backend", default="auto", choices=["auto", "openai", "aiohttp"],
                    help="how chat completions are sent (auto: aiohttp when installed, else openai's client)")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.latency)
        return

    proc, url = start_server(args.latency)
    try:
        rows = [run_level(url, proc.pid, int(c), args.rounds, args.latency, args.backend)
                for c in args.levels.split(",")]
    finally:
        proc.terminate()
        proc.wait()
    cached = run_cached(args.cached)

    backend = args.backend if args.backend != "auto" else ("aiohttp" if aiohttp_available() else "openai")
    print(f"\nLLM client against a local endpoint answering after {args.latency:g} s (HTTP backend: {backend})\n")
    print("| concurrency | requests | failed | wall s | req/s | ideal req/s | % of ideal | client CPU ms/req | server CPU ms/req |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['requests']} | {r['failed']} | {r['wall_s']:.2f} | {r['rate']:.1f} | "
              f"{r['ideal']:.0f} | {r['pct']:.1f}% | {r['cpu_ms']:.2f} | {r['server_ms']:.2f} |")
    print(f"| cached | {cached['requests']} | 0 | {cached['wall_s']:.2f} | {cached['rate']:,.0f} | "
          f"target 5,000 | {100 * cached['rate'] / 5000:.0f}% of target | {cached['cpu_ms']:.3f} | - |")
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    ok = all(r["pct"] >= 90 for r in rows if r["concurrency"] >= 64) and cached["rate"] >= 5000
    print(f"\ntargets (>= 90% of ideal at 64 and 256; >= 5,000 cached answers/s): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
