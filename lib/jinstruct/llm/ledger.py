"""Money: prices, the per-stage ledger in the run folder, the budget guard and the no-call estimate.

Budget policy: before each call the client reserves the most it could cost (estimated prompt tokens
plus max_tokens x n completion tokens at the model's price); a call is sent only while
spent + reserved + this reservation <= budget_usd. When the answer arrives its actual cost replaces the
reservation. A call that does not fit waits for calls in flight to settle (they usually cost less than
reserved); when none is left in flight it raises BudgetExceeded. So the ledger never passes the budget,
unless the prompt-token estimate is low, and that estimate is scaled by the ratio of actual to estimated
prompt tokens seen so far.

The ledger of a stage lives in the run folder and is never deleted: `ledger/<stage>.json` holds the totals over
every attempt of the stage (so `budget_usd` caps the stage's spend over all its attempts) and one entry per
client session (`attempts`: which process, when, what it sent and spent). Every HTTP call is also appended, as it
ends, to `ledger/<stage>.calls.jsonl` (model, tokens, cost, ok): a process killed between two saves of the totals
loses nothing, because whoever reads the ledger next adds the calls logged after what the totals include. Several
clients of one stage (one per endpoint) share the files; the totals are merged under a file lock. To spend more
after a budget stop, raise `budget_usd`; to give the stage a fresh budget, reset it (`reset_budget`, or
`python -m jinstruct run --reset-budget`): the budget then counts only what is spent after the reset, and the
totals keep everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from jinstruct.io import read_json, write_json
from jinstruct.llm.settings import ModelPrice


class BudgetExceeded(RuntimeError):
    """The next request could pass budget_usd; `results` holds what was answered before the stop."""

    def __init__(self, message: str, results: Sequence[Any] = ()):
        super().__init__(message)
        self.results = list(results)


def estimate_text_tokens(text: str) -> int:
    """Tokens of a text without a tokenizer: 1 per non-ASCII character (Japanese runs close to one token per
    character) and 1 per 4 ASCII characters."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    return (len(text) - ascii_chars) + math.ceil(ascii_chars / 4)


def estimate_prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Tokens of a prompt without a tokenizer (`estimate_text_tokens` of each message), and 4 per message for the
    chat format."""
    total = 3
    for m in messages:
        content = m.get("content")
        total += 4 + estimate_text_tokens(content if isinstance(content, str) else str(content))
    return total


def cost_usd(price: ModelPrice | None, prompt_tokens: float, completion_tokens: float, discount: float = 1.0) -> float:
    if price is None:
        return 0.0
    return discount * (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6


class Attempt(BaseModel):
    """One client session of a stage (a notebook run, an attempt the runner made, a killed one): what it did."""

    id: str
    pid: int
    host: str
    started: str
    updated: str = ""
    requests: int = 0
    cached: int = 0
    calls: int = 0
    failed_calls: int = 0
    cost_usd: float = 0.0
    budget_stop: bool = False


class LedgerRecord(BaseModel):
    """What one stage asked for and paid, over all its attempts, in `<run_dir>/ledger/<stage>.json`."""

    stage: str
    models: list[str] = Field(default_factory=list)
    requests: int = 0
    cached: int = 0
    failed: int = 0
    truncated: int = 0
    invalid: int = 0
    not_sent: int = 0  # requests taken but left unsent by a budget stop
    calls: int = 0  # HTTP calls made (retries included), from the call log
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0  # what the endpoint charged, at `pricing`, over every attempt
    saved_usd: float = 0.0
    budget_usd: float | None = None
    budget_since_usd: float = 0.0  # cost_usd at the last budget reset: the budget caps cost_usd - budget_since_usd
    unpriced_models: list[str] = Field(default_factory=list)
    batch_ids: list[str] = Field(default_factory=list)
    calls_logged_bytes: int = 0  # how much of the call log these totals include
    attempts: list[Attempt] = Field(default_factory=list)
    updated_at: str = ""


# counted per request by the client that answered it; merged into the file as differences
_REQUEST_COUNTERS = ("requests", "cached", "failed", "truncated", "invalid", "not_sent", "saved_usd")
# counted per call, from the call log only
_CALL_COUNTERS = ("calls", "failed_calls", "prompt_tokens", "completion_tokens", "cost_usd")


def calls_log_path(path: Path) -> Path:
    """`ledger/<stage>.calls.jsonl` next to `ledger/<stage>.json`."""
    return path.with_name(path.stem + ".calls.jsonl")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `<path>.lock` (held by this process until the block ends; a killed holder frees it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _absorb_calls(record: LedgerRecord, path: Path) -> None:
    """Add to `record` the calls logged after what it includes (complete lines only)."""
    log = calls_log_path(path)
    if not log.exists():
        return
    with log.open("rb") as f:
        f.seek(record.calls_logged_bytes)
        data = f.read()
    end = data.rfind(b"\n") + 1
    for raw in data[:end].splitlines():
        if not raw.strip():
            continue
        try:
            call = json.loads(raw)
        except json.JSONDecodeError:
            continue  # a line torn by a power cut: its call is lost to the books, not the rest
        record.calls += int(call.get("n", 1))
        record.failed_calls += 0 if call.get("ok", True) else int(call.get("n", 1))
        record.prompt_tokens += int(call.get("p", 0))
        record.completion_tokens += int(call.get("c", 0))
        record.cost_usd += float(call.get("usd", 0.0))
    record.calls_logged_bytes += end


def _read(path: Path, stage: str) -> LedgerRecord:
    """The totals in the file plus the calls logged since (no lock taken)."""
    record = LedgerRecord.model_validate(read_json(path)) if path.exists() else LedgerRecord(stage=stage)
    _absorb_calls(record, path)
    return record


def load_ledger(path: str | os.PathLike[str]) -> LedgerRecord | None:
    """A stage's ledger as its files stand (the calls of a killed process included); None when there is none."""
    path = Path(path)
    if not path.exists() and not calls_log_path(path).exists():
        return None
    with _file_lock(path):
        return _read(path, path.stem)


def reset_budget(path: str | os.PathLike[str]) -> LedgerRecord:
    """Give the stage a fresh budget: from now on `budget_usd` counts only what is spent after this reset (the
    totals keep everything). Returns the ledger as written."""
    path = Path(path)
    with _file_lock(path):
        record = _read(path, path.stem)
        record.budget_since_usd = record.cost_usd
        record.updated_at = _now()
        write_json(path, record)
    return record


class Ledger:
    """Counts and money for one stage; the budget gate for its calls (used from the client's event loop).

    `record` holds the stage's totals over all attempts: as read from the run folder when the client opened, plus
    what this client did since."""

    def __init__(self, stage: str, path: Path | None, budget_usd: float | None):
        self.path = path
        self.record = LedgerRecord(stage=stage, budget_usd=budget_usd)
        if path is not None:
            with _file_lock(path):
                self.record = _read(path, stage)
            self.record.budget_usd = budget_usd
        self._synced = self.record.model_copy(deep=True)
        self.attempt = Attempt(id=uuid.uuid4().hex[:12], pid=os.getpid(), host=socket.gethostname(), started=_now())
        self._log_fd: int | None = None
        self._mutex = threading.RLock()
        self.budget_usd = budget_usd
        self.reserved = 0.0
        self.in_flight = 0
        self.stopped = False
        self.blocked_usd = 0.0
        self._estimated_prompt = 0
        self._actual_prompt = 0
        self._cond: asyncio.Condition | None = None
        self._saved_at = 0.0

    @property
    def spent(self) -> float:
        """What counts against the budget: the stage's spend over all attempts since its last budget reset."""
        return self.record.cost_usd - self.record.budget_since_usd

    def prompt_scale(self) -> float:
        """Actual / estimated prompt tokens over the answers so far, at least 1."""
        if self._estimated_prompt == 0:
            return 1.0
        return max(1.0, self._actual_prompt / self._estimated_prompt)

    def learn_prompt(self, estimated: int, actual: int) -> None:
        self._estimated_prompt += estimated
        self._actual_prompt += actual

    async def reserve(self, amount: float) -> None:
        """Hold `amount` dollars for a call; BudgetExceeded when it cannot fit even with nothing in flight."""
        if self.budget_usd is None:
            self.in_flight += 1
            return
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            while not self.stopped and self.spent + self.reserved + amount > self.budget_usd + 1e-12:
                if self.in_flight == 0:
                    self.stopped = True
                    break
                await self._cond.wait()
            if self.stopped:
                self.blocked_usd = max(self.blocked_usd, amount)
                self._cond.notify_all()
                raise BudgetExceeded(f"budget_usd=${self.budget_usd:.4f} reached")
            self.reserved += amount
            self.in_flight += 1

    def book_call(self, model: str, *, ok: bool, prompt_tokens: int = 0, completion_tokens: int = 0,
                  cost: float = 0.0, calls: int = 1) -> None:
        """A call ended (answered or not): append it to the call log at once and count it (`calls=0` books money
        that came without a call of its own, as a Batch API result)."""
        line = json.dumps({"a": self.attempt.id, "m": model, "n": calls, "ok": ok, "p": prompt_tokens,
                           "c": completion_tokens, "usd": cost}, separators=(",", ":")) + "\n"
        with self._mutex:
            if self.path is not None:
                if self._log_fd is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._log_fd = os.open(calls_log_path(self.path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
                os.write(self._log_fd, line.encode())  # one write on an O_APPEND file: whole, whoever else appends
            r, a = self.record, self.attempt
            r.calls += calls
            a.calls += calls
            if not ok:
                r.failed_calls += calls
                a.failed_calls += calls
            r.prompt_tokens += prompt_tokens
            r.completion_tokens += completion_tokens
            r.cost_usd += cost
            a.cost_usd += cost

    async def settle(self, reserved: float) -> None:
        """A call ended: release its reservation (its cost is booked by `book_call`)."""
        self.in_flight -= 1
        if self.budget_usd is None:
            return
        self.reserved -= reserved
        if self._cond is not None:
            async with self._cond:
                self._cond.notify_all()

    def stop_message(self, answered: int, pulled: int) -> str:
        """Why and where the stage stopped: answered of the requests taken so far, and the money."""
        r = self.record
        return (
            f"stage '{r.stage}' stopped by budget_usd=${self.budget_usd:.4f}: {answered} of the first {pulled} "
            f"requests done ({pulled - answered} not sent); the stage has spent ${self.spent:.4f} of its budget "
            f"over all its attempts ({r.calls} calls in all) and the next request could cost up to "
            f"${self.blocked_usd:.4f}. Answers are cached: raise budget_usd (or reset the stage's budget with "
            f"`python -m jinstruct run --reset-budget`) and re-run to go on."
        )

    def count(self, *, cached: bool, failed: bool, truncated: bool, invalid: int, saved_usd: float,
              model: str | None) -> None:
        """Book one finished request (`invalid`: structured replies rejected on the way; its calls are booked
        by `book_call` as they end)."""
        with self._mutex:
            r = self.record
            r.requests += 1
            r.cached += cached
            r.failed += failed
            r.truncated += truncated
            r.invalid += invalid
            r.saved_usd += saved_usd
            self.attempt.requests += 1
            self.attempt.cached += cached
            if model and model not in r.models:
                r.models.append(model)

    def cut_by_budget(self, not_sent: int) -> None:
        """A budget stop left `not_sent` requests that were taken unsent."""
        with self._mutex:
            self.record.not_sent += not_sent
            self.attempt.budget_stop = True

    def __str__(self) -> str:
        r = self.record
        budget = f" of a ${r.budget_usd:.2f} budget" if r.budget_usd is not None else ""
        return (f"{r.stage or 'ledger'}: {r.requests} requests ({r.cached} cached, {r.failed} failed, "
                f"{r.truncated} cut off), {r.calls} calls, {r.prompt_tokens:,} prompt + {r.completion_tokens:,} "
                f"completion tokens, ${r.cost_usd:.4f} spent{budget}, ${r.saved_usd:.4f} saved by the cache")

    def save(self, every_s: float = 0.0) -> None:
        """Merge this client's counts into the stage's ledger file, atomically and under its lock (at most once per
        `every_s` seconds when that is given). Afterwards `record` holds the file's totals, other clients' included."""
        now = time.monotonic()
        if self.path is None or (every_s and now - self._saved_at < every_s):
            return
        self._saved_at = now
        with self._mutex, _file_lock(self.path):
            disk = _read(self.path, self.record.stage)
            mine, synced = self.record, self._synced
            for name in _REQUEST_COUNTERS:
                setattr(disk, name, getattr(disk, name) + getattr(mine, name) - getattr(synced, name))
            for name in ("models", "unpriced_models", "batch_ids"):
                kept = getattr(disk, name)
                kept.extend(x for x in getattr(mine, name) if x not in kept)
            disk.budget_usd = self.budget_usd
            self.attempt.updated = _now()
            disk.attempts = [a for a in disk.attempts if a.id != self.attempt.id] + [self.attempt.model_copy()]
            disk.updated_at = self.attempt.updated
            write_json(self.path, disk)
            # the calls this client logged but the file did not include yet are in `disk` now (from the log)
            self.record = disk
            self._synced = disk.model_copy(deep=True)

    def close(self) -> None:
        """Save, and close the call log."""
        self.save()
        with self._mutex:
            if self._log_fd is not None:
                os.close(self._log_fd)
                self._log_fd = None


class Estimate(BaseModel):
    """What a list of requests would cost, computed without calling anything."""

    model: str
    requests: int
    cached: int
    to_send: int
    prompt_tokens: int
    completion_tokens: int
    max_completion_tokens: int | None
    cost_usd: float
    max_cost_usd: float | None
    priced: bool
    gpu_hours: float | None = None  # self-hosted endpoints with a throughput: GPU-hours to generate the completions

    def __str__(self) -> str:
        price = "" if self.priced else " (no price for this model: cost shown as 0)"
        if self.max_cost_usd is None or self.max_completion_tokens is None:
            worst = "no upper bound: some requests have no max_tokens"
        else:
            worst = f"at most {self.max_completion_tokens:,} completion tokens, ${self.max_cost_usd:.4f}"
        gpu = f"; ~{self.gpu_hours:,.1f} GPU-hours" if self.gpu_hours is not None else ""
        return (
            f"{self.model}: {self.requests} requests, {self.cached} cached, {self.to_send} to send; "
            f"~{self.prompt_tokens:,} prompt + ~{self.completion_tokens:,} completion tokens, "
            f"~${self.cost_usd:.4f} ({worst}){price}{gpu}"
        )
