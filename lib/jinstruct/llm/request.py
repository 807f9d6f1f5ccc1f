"""What a stage asks (`ChatRequest`), what it gets back (`ChatResult`), and the cache key of a request."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KEY_VERSION = 1


class ReplyError(RuntimeError):
    """The text of a failed result was asked for."""


class ChatRequest(BaseModel):
    """One chat completion. Everything but `tag` is part of the cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: list[dict[str, Any]] = Field(min_length=1)
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1)
    stop: list[str] | None = None
    seed: int | None = None
    json_schema: dict[str, Any] | None = None
    choices: list[str] | None = None
    sample_index: int = Field(default=0, ge=0)
    tag: str = ""

    @field_validator("messages")
    @classmethod
    def _messages(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, m in enumerate(v):
            if "role" not in m or "content" not in m:
                raise ValueError(f"message {i} needs 'role' and 'content'")
        return v

    @field_validator("stop", mode="before")
    @classmethod
    def _stop(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _one_constraint(self) -> ChatRequest:
        if self.json_schema is not None and self.choices is not None:
            raise ValueError("ask for json_schema or choices, not both")
        if self.choices is not None and not self.choices:
            raise ValueError("choices must not be empty")
        return self

    @classmethod
    def user(cls, content: str, **kw: Any) -> ChatRequest:
        """A one-turn request: `ChatRequest.user("こんにちは", temperature=0.7)`."""
        return cls(messages=[{"role": "user", "content": content}], **kw)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatResult(BaseModel):
    """The answer to `request`, the `index`-th of the input; `error` says why there is none."""

    request: ChatRequest
    index: int
    texts: list[str] = Field(default_factory=list)
    finish_reasons: list[str | None] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    cached: bool = False
    error: str | None = None
    request_id: str | None = None
    model: str | None = None
    parsed_all: list[Any] | None = None
    calls: int = 0
    key: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        if self.error is not None:
            raise ReplyError(f"request {self.index} failed: {self.error}")
        return self.texts[0]

    @property
    def parsed(self) -> Any:
        """The validated JSON object (json_schema) or choice (choices) of the first reply."""
        if self.error is not None:
            raise ReplyError(f"request {self.index} failed: {self.error}")
        return self.parsed_all[0] if self.parsed_all else None

    @property
    def truncated(self) -> bool:
        """Some reply stopped at max_tokens (finish_reason "length"); callers decide what to do with it."""
        return "length" in self.finish_reasons


def derived_seed(seed: int | None, sample_index: int, attempt: int) -> int | None:
    """The seed sent for one draw: the caller's seed for draw 0, a distinct one per sample and retry otherwise."""
    if seed is None or (sample_index == 0 and attempt == 0):
        return seed
    digest = hashlib.sha256(f"{seed}:{sample_index}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def build_payload(
    req: ChatRequest,
    model: str,
    attempt: int,
    default_max_tokens: int | None,
    max_tokens_param: str,
    extra_body: dict[str, Any],
) -> dict[str, Any]:
    """The JSON body of /v1/chat/completions for one attempt at `req` (vLLM's extras included)."""
    body: dict[str, Any] = {"model": req.model or model, "messages": req.messages}
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    max_tokens = req.max_tokens or default_max_tokens
    if max_tokens is not None:
        body[max_tokens_param] = max_tokens
    if req.n != 1:
        body["n"] = req.n
    if req.stop:
        body["stop"] = req.stop
    seed = derived_seed(req.seed, req.sample_index, attempt)
    if seed is not None:
        body["seed"] = seed
    if req.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": req.json_schema, "strict": True},
        }
    body.update(extra_body)
    if req.choices is not None:
        body["structured_outputs"] = {"choice": req.choices}
    return body


def request_key(payload: dict[str, Any], sample_index: int, attempt: int) -> tuple[str, str]:
    """(sha256 hex, canonical JSON) of what decides the answer: the payload plus the draw's sample index and retry.

    The payload holds the model name, messages and every sampling and structure parameter; never the
    endpoint URL or the key. Draws with different sample_index (or structured retries) get different keys
    even at the same seed-less temperature, so repeated draws stay distinct and each is cached on its own.
    """
    content = {"v": KEY_VERSION, "body": payload, "sample_index": sample_index, "attempt": attempt}
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest(), canonical


class MalformedReply(Exception):
    """A 200 response whose body is not a chat completion."""


def parse_body(content: bytes, n: int) -> dict[str, Any]:
    """A chat completion body with exactly `n` choices, each with a message; else MalformedReply."""
    try:
        body = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedReply(f"malformed response body (not JSON: {e})") from None
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or len(choices) != n:
        got = len(choices) if isinstance(choices, list) else "no"
        raise MalformedReply(f"malformed response body ({got} choices for n={n})")
    for c in choices:
        message = c.get("message") if isinstance(c, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("content", ""), (str, type(None))):
            raise MalformedReply("malformed response body (a choice has no message content)")
    return body
