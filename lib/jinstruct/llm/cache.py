"""The persistent response cache: one SQLite file (WAL) shared by every process and stage.

Each answer is committed on its own as it arrives, so a killed process loses only what was in flight;
SQLite's journal keeps the file whole whatever the moment of the kill. The first answer stored under a
key wins, so several processes racing on one request all end up reading the same answer.

Leases keep two processes from paying for one request (two runs of a sweep sharing the cache): before sending,
a client takes the request's lease (a row with its owner, host, pid and an expiry); a client that finds the
lease held by another live process waits for that answer instead of sending the request again. A lease ends when
the answer is stored or the sender gives up, and is taken over when it expires or its holder, on this host, has
died (a killed run never blocks the next one).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from jinstruct import paths

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def default_cache_path() -> Path:
    """<project root>/runs/llm_cache.sqlite: the cache every config uses unless its `llm.cache` says otherwise."""
    return paths.runs_dir() / "llm_cache.sqlite"


class ResponseCache:
    """Responses (the JSON body of a chat completion) by request key."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 60000")
        self._db.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a committed answer survives any process kill; only a power cut may drop the last few.
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)
        self.owner = uuid.uuid4().hex
        self._host, self._pid = socket.gethostname(), os.getpid()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, model: str, request: str, response: dict[str, Any], raw: bytes | None = None) -> dict[str, Any]:
        """Store `response` (`raw`: the same JSON as received, stored as it is) unless the key is already
        answered; return the answer kept under the key."""
        usage = response.get("usage") or {}
        try:
            text = raw.decode("utf-8") if raw is not None else None
        except UnicodeDecodeError:
            text = None
        if text is None:
            text = json.dumps(response, ensure_ascii=False, separators=(",", ":"))
        row = (key, model, request, text, int(usage.get("prompt_tokens") or 0),
               int(usage.get("completion_tokens") or 0), time.time())
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            self._db.execute("DELETE FROM leases WHERE key = ?", (key,))
            if cur.rowcount == 1:
                return response
            kept = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(kept[0])

    def lease(self, key: str, ttl_s: float) -> bool:
        """Take (or renew) the lease on `key` for `ttl_s` seconds: True when this cache now holds it, False while
        another live holder does (wait for its answer). Call it before sending a request that is not cached."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT owner, host, pid, expires_at FROM leases WHERE key = ?",
                                       (key,)).fetchone()
                free = (row is None or row[0] == self.owner or row[3] < now
                        or (row[1] == self._host and not _alive(row[2])))
                if free:
                    self._db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?)",
                                     (key, self.owner, self._host, self._pid, now + ttl_s))
            finally:
                self._db.execute("COMMIT")
        return free

    def release(self, key: str) -> None:
        """Give up the lease on `key` (the request failed: another process may try it)."""
        with self._lock:
            self._db.execute("DELETE FROM leases WHERE key = ? AND owner = ?", (key, self.owner))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def stats(self) -> dict[str, Any]:
        """Answers, tokens and dates per model, and the file size."""
        with self._lock:
            rows = self._db.execute(
                "SELECT model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), MIN(created_at), MAX(created_at)"
                " FROM responses GROUP BY model ORDER BY model"
            ).fetchall()
        models = [
            {"model": m, "answers": n, "prompt_tokens": p or 0, "completion_tokens": c or 0,
             "first": _iso(t0), "last": _iso(t1)}
            for m, n, p, c, t0, t1 in rows
        ]
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {"path": str(self.path), "bytes": size, "answers": sum(m["answers"] for m in models), "models": models}

    def export(self, model: str | None = None) -> Iterator[dict[str, Any]]:
        """Every stored answer as {key, model, request, response, created_at}, oldest first (read lazily)."""
        sql = "SELECT key, model, request, response, created_at FROM responses"
        args: tuple[Any, ...] = ()
        if model is not None:
            sql, args = sql + " WHERE model = ?", (model,)
        db = sqlite3.connect(self.path, timeout=60.0)
        try:
            for key, m, req, resp, t in db.execute(sql + " ORDER BY created_at, key", args):
                yield {"key": key, "model": m, "request": json.loads(req), "response": json.loads(resp),
                       "created_at": _iso(t)}
        finally:
            db.close()

    def keys(self, keys: Iterable[str]) -> set[str]:
        """Which of `keys` are answered."""
        found: set[str] = set()
        batch = list(keys)
        with self._lock:
            for i in range(0, len(batch), 500):
                part = batch[i : i + 500]
                marks = ",".join("?" * len(part))
                found.update(r[0] for r in self._db.execute(f"SELECT key FROM responses WHERE key IN ({marks})", part))
        return found

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
