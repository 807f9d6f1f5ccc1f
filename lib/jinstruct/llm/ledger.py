"""Money: prices, the per-stage ledger in the run folder, the budget guard and the no-call estimate.

Budget policy: before each call the client reserves the most it could cost (estimated prompt tokens
plus max_tokens x n completion tokens at the model's price); a call is sent only while
spent + reserved + this reservation <= budget_usd. When the answer arrives its actual cost replaces the
reservation. A call that does not fit waits for calls in flight to settle (they usually cost less than
reserved); when none is left in flight it raises BudgetExceeded. So the ledger never passes the budget,
unless the prompt-token estimate is low, and that estimate is scaled by the ratio of actual to estimated
prompt tokens seen so far. The budget covers the stage's whole ledger in the run folder, so a resumed
stage counts what its killed predecessors spent.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
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


class LedgerRecord(BaseModel):
    """What one stage asked for and paid, in `<run_dir>/ledger/<stage>.json`."""

    stage: str
    models: list[str] = Field(default_factory=list)
    requests: int = 0
    cached: int = 0
    failed: int = 0
    truncated: int = 0
    invalid: int = 0
    calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    saved_usd: float = 0.0
    budget_usd: float | None = None
    unpriced_models: list[str] = Field(default_factory=list)
    batch_ids: list[str] = Field(default_factory=list)
    updated_at: str = ""


class Ledger:
    """Counts and money for one stage; the budget gate for its calls (used from the client's event loop)."""

    def __init__(self, stage: str, path: Path | None, budget_usd: float | None):
        self.path = path
        self.record = LedgerRecord(stage=stage, budget_usd=budget_usd)
        if path is not None and path.exists():
            self.record = LedgerRecord.model_validate(read_json(path))
            self.record.budget_usd = budget_usd
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
        return self.record.cost_usd

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

    async def settle(self, reserved: float, actual: float, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """A call ended: release its reservation and book its tokens and what it cost."""
        self.in_flight -= 1
        self.record.cost_usd += actual
        self.record.prompt_tokens += prompt_tokens
        self.record.completion_tokens += completion_tokens
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
            f"requests done ({pulled - answered} not sent); the stage's ledger has spent ${r.cost_usd:.4f} "
            f"over {r.calls} calls and the next request could cost up to ${self.blocked_usd:.4f}. "
            f"Answers are cached: raise budget_usd and re-run to go on."
        )

    def count(self, *, cached: bool, failed: bool, truncated: bool, calls: int, invalid: int,
              saved_usd: float, model: str | None) -> None:
        """Book one finished request (`calls`: HTTP calls made for it now; `invalid`: structured replies rejected)."""
        r = self.record
        r.requests += 1
        r.cached += cached
        r.failed += failed
        r.truncated += truncated
        r.invalid += invalid
        r.calls += calls
        r.saved_usd += saved_usd
        if model and model not in r.models:
            r.models.append(model)

    def __str__(self) -> str:
        r = self.record
        budget = f" of a ${r.budget_usd:.2f} budget" if r.budget_usd is not None else ""
        return (f"{r.stage or 'ledger'}: {r.requests} requests ({r.cached} cached, {r.failed} failed, "
                f"{r.truncated} cut off), {r.calls} calls, {r.prompt_tokens:,} prompt + {r.completion_tokens:,} "
                f"completion tokens, ${r.cost_usd:.4f} spent{budget}, ${r.saved_usd:.4f} saved by the cache")

    def save(self, every_s: float = 0.0) -> None:
        """Write the ledger atomically (at most once per `every_s` seconds when that is given)."""
        now = time.monotonic()
        if self.path is None or (every_s and now - self._saved_at < every_s):
            return
        self._saved_at = now
        self.record.updated_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_json(self.path, self.record)


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
