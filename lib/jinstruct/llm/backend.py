"""The embedded offline backend: an OpenAI-compatible chat server for a local Hugging Face causal LM.

`create_app(model_dir)` returns a FastAPI app with `/v1/chat/completions` and `/v1/models` (plus `/health`).
The client reaches it in-process through `httpx.ASGITransport` (no socket), and `python -m jinstruct serve`
runs it under uvicorn. Structured outputs (`response_format` json_schema / json_object and vLLM's
`structured_outputs` choice / json / regex / grammar) are enforced token by token with xgrammar, so a
constrained reply that finishes with "stop" always parses. Requests are served one at a time in a worker
thread (the event loop stays free); each request samples from its own seeded generator, so a request
with a seed gives the same reply whatever else is being served.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

DEFAULT_MAX_TOKENS = 1024
MAX_N = 64


class BadRequest(ValueError):
    """A request the backend cannot serve; answered with status 400 and an OpenAI-style error body."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


# ---------------------------------------------------------------------------------------------------------------
# The request, as OpenAI and vLLM take it (unknown fields such as the removed `guided_choice` are ignored).


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StructuredOutputs(BaseModel):
    model_config = ConfigDict(extra="allow")
    choice: list[str] | None = Field(default=None, min_length=1)
    json_: dict[str, Any] | str | None = Field(default=None, alias="json")
    regex: str | None = None
    grammar: str | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    n: int = Field(default=1, ge=1, le=MAX_N)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = False
    logprobs: bool | None = False
    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputs | None = None

    @field_validator("stop")
    @classmethod
    def _stops_not_empty(cls, v: str | list[str] | None) -> str | list[str] | None:
        if v is not None and any(s == "" for s in ([v] if isinstance(v, str) else v)):
            raise ValueError("stop strings must not be empty")
        return v


# ---------------------------------------------------------------------------------------------------------------
# The model and its sampler.


@dataclass
class Completion:
    text: str
    finish_reason: Literal["stop", "length"]
    tokens: int  # sampled tokens, the stop token included, as vLLM counts them


def message_text(message: Message, index: int) -> str:
    """A message's content as plain text (OpenAI allows a list of typed parts)."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    parts = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise BadRequest("only text content parts are supported", f"messages.{index}.content")
        parts.append(part["text"])
    return "".join(parts)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# UTF-8 as a small automaton over bytes (RFC 3629, table 3-7 of the Unicode standard): state 0 is "between
# characters"; every other state owes continuation bytes, the first of which must lie in the given range.
_UTF8_STATES = {  # state: (lowest, highest allowed next byte, state after it)
    1: (0x80, 0xBF, 0),
    2: (0x80, 0xBF, 1),
    3: (0xA0, 0xBF, 1),  # after E0: no overlong forms
    4: (0x80, 0x9F, 1),  # after ED: no surrogates
    5: (0x80, 0xBF, 2),
    6: (0x90, 0xBF, 2),  # after F0: no overlong forms
    7: (0x80, 0x8F, 2),  # after F4: nothing above U+10FFFF
}
UTF8_STATE_COUNT = 8


def _utf8_lead(b: int) -> int | None:
    """The state after a byte read between characters (None: the byte cannot start one)."""
    if b < 0x80:
        return 0
    if 0xC2 <= b <= 0xDF:
        return 1
    if b == 0xE0:
        return 3
    if b == 0xED:
        return 4
    if 0xE1 <= b <= 0xEF:
        return 2
    if b == 0xF0:
        return 6
    if b == 0xF4:
        return 7
    if 0xF1 <= b <= 0xF3:
        return 5
    return None


def _utf8_step(state: int, data: bytes) -> tuple[bool, int]:
    """Feed `data` to the UTF-8 automaton from `state`: (the stream stays valid, the state after)."""
    for b in data:
        if state:
            low, high, after = _UTF8_STATES[state]
            if not low <= b <= high:
                return False, 0
            state = after
        else:
            lead = _utf8_lead(b)
            if lead is None:
                return False, 0
            state = lead
    return True, state


def _keep(logits: Any, allowed: Any) -> Any:
    """Mask logits to the allowed tokens, except in a row where that would leave nothing to sample."""
    import torch

    masked = logits.masked_fill(~allowed, float("-inf"))
    alive = torch.isfinite(masked).any(dim=-1, keepdim=True)
    return torch.where(alive, masked, logits)


def _top_p(probs: Any, top_p: float) -> Any:
    """Keep the smallest set of most likely tokens whose mass reaches top_p (the first one always)."""
    import torch

    sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
    return torch.zeros_like(probs).scatter_(-1, order, sorted_probs)


class LocalChatModel:
    """A Hugging Face causal LM with its chat template, sampled one request at a time."""

    def __init__(
        self,
        model_dir: Path | str,
        served_name: str | None = None,
        device: str | None = None,
        threads: int | None = None,
    ):
        import torch
        import xgrammar as xgr
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = Path(model_dir)
        self.served_name = served_name or self.model_dir.name
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{self.model_dir}: not a Hugging Face model directory (no config.json)")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        if not self.tokenizer.chat_template:
            raise ValueError(f"{self.model_dir}: the tokenizer has no chat template")
        dtype: Any = torch.float32 if self.device == "cpu" else "auto"
        model: Any = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=dtype)
        self.model: Any = model.to(torch.device(self.device)).eval()
        self.context_length = int(
            getattr(self.model.config, "max_position_embeddings", None) or self.tokenizer.model_max_length
        )
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self.eos_ids = sorted(eos_ids)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.eos_ids)
        self.compiler = xgr.GrammarCompiler(info, max_threads=1)
        # xgrammar 0.2.8 lets a JSON string with minLength/maxLength hold raw control characters, which no
        # strict JSON parser accepts (mlc-ai/xgrammar#800). Under a JSON grammar these tokens are never
        # needed (the grammar asks for no whitespace between tokens), so they are masked out.
        vocab = list(info.decoded_vocab[: self.vocab_size])
        self.json_tokens = torch.tensor([all(b >= 0x20 for b in tok) for tok in vocab], device=self.device)
        # Byte-level vocabularies can spell invalid UTF-8 (a lead byte, then no continuation). Such a reply
        # decodes to U+FFFD and, inside a length-bounded JSON string, breaks the bound xgrammar counted. So a
        # token is allowed only where it keeps the byte stream valid UTF-8: tables per state of a UTF-8 automaton.
        steps = [[_utf8_step(state, tok) for tok in vocab] for state in range(UTF8_STATE_COUNT)]
        self.utf8_ok = torch.tensor([[ok for ok, _ in row] for row in steps], device=self.device)
        self.utf8_next = torch.tensor([[after for _, after in row] for row in steps], device=self.device)
        # Small models decode faster on one thread: per-op thread hand-offs cost more than the maths, and far
        # more on a busy machine. The setting is per thread (OpenMP), so it touches only the sampling thread.
        small = sum(p.numel() for p in self.model.parameters()) < 50_000_000
        self.threads = threads or (1 if small and self.device == "cpu" else torch.get_num_threads())
        self._lock = threading.Lock()

    # -- requests -> prompt and grammar ------------------------------------------------------------------------

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        from jinja2 import TemplateError

        plain = [
            {"role": "system" if m.role == "developer" else m.role, "content": message_text(m, i)}
            for i, m in enumerate(messages)
        ]
        try:
            ids = self.tokenizer.apply_chat_template(plain, add_generation_prompt=True, tokenize=True, return_dict=False)
        except TemplateError as e:
            raise BadRequest(f"the chat template refused these messages: {e}", "messages") from None
        return list(ids)

    def grammar(self, req: ChatCompletionRequest) -> tuple[Any, bool]:
        """The compiled xgrammar grammar a request asks for (or None), and whether it describes JSON."""
        so, rf = req.structured_outputs, req.response_format
        asked = []
        if rf is not None and rf.type != "text":
            asked.append("response_format")
        if so is not None:
            asked += [k for k in ("choice", "json_", "regex", "grammar") if getattr(so, k) is not None]
        if len(asked) > 1:
            raise BadRequest(f"ask for one kind of structured output, not {len(asked)}: {asked}", "structured_outputs")
        if not asked:
            return None, False
        try:
            if rf is not None and rf.type == "json_object":
                return self.compiler.compile_builtin_json_grammar(), True
            if rf is not None and rf.type == "json_schema":
                if rf.json_schema is None or not rf.json_schema.schema_:
                    raise BadRequest("response_format json_schema needs json_schema.schema", "response_format")
                return self.compiler.compile_json_schema(json.dumps(rf.json_schema.schema_), any_whitespace=False), True
            assert so is not None
            if so.choice is not None:
                ebnf = "root ::= " + " | ".join(json.dumps(c, ensure_ascii=False) for c in so.choice)
                return self.compiler.compile_grammar(ebnf), False
            if so.json_ is not None:
                schema = so.json_ if isinstance(so.json_, str) else json.dumps(so.json_)
                return self.compiler.compile_json_schema(schema, any_whitespace=False), True
            if so.regex is not None:
                return self.compiler.compile_regex(so.regex), False
            return self.compiler.compile_grammar(so.grammar or ""), False
        except BadRequest:
            raise
        except Exception as e:  # noqa: BLE001 - xgrammar reports bad schemas, regexes, grammars as various errors
            raise BadRequest(f"invalid structured output request: {e}", "structured_outputs") from None

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    # -- sampling ----------------------------------------------------------------------------------------------

    def sample(
        self,
        prompt: list[int],
        *,
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
        stop: list[str],
        grammar: Any,
        seed: int,
        json_mode: bool = False,
    ) -> list[Completion]:
        """n replies to one prompt; temperature 0 is greedy (n identical replies)."""
        import torch
        import xgrammar as xgr

        if temperature == 0 and n > 1:
            return self.sample(prompt, n=1, temperature=0, top_p=1, max_tokens=max_tokens, stop=stop,
                               grammar=grammar, seed=seed, json_mode=json_mode) * n
        gen = torch.Generator(device=self.device).manual_seed(seed)
        matchers = [xgr.GrammarMatcher(grammar) for _ in range(n)] if grammar is not None else None
        bitmask = xgr.allocate_token_bitmask(n, self.vocab_size)
        tokens: list[list[int]] = [[] for _ in range(n)]
        texts = [""] * n  # decoded so far; kept up to date only while stop strings are watched
        finish: list[str | None] = [None] * n
        cut: list[str | None] = [None] * n  # the text up to a stop string, when one ended the reply
        longest_stop = max((len(s) for s in stop), default=0)
        inputs = torch.tensor([prompt] * n, device=self.device)
        owed = torch.zeros(n, dtype=torch.long, device=self.device)  # each reply's UTF-8 automaton state
        past = None
        # the KV cache is `cache` in recent transformers (`past_key_values` there is a deprecated alias that warns)
        cache_name = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        with torch.inference_mode():
            for _ in range(max_tokens):
                out = self.model(input_ids=inputs, use_cache=True, **{cache_name: past})
                past = getattr(out, cache_name)
                logits = out.logits[:, -1, : self.vocab_size].float()
                if matchers:
                    xgr.reset_token_bitmask(bitmask)
                    for i, m in enumerate(matchers):
                        if finish[i] is None:
                            m.fill_next_token_bitmask(bitmask, i)
                    xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device))
                    if json_mode:
                        logits = _keep(logits, self.json_tokens.expand_as(logits))
                logits = _keep(logits, self.utf8_ok[owed])
                if temperature == 0:
                    nxt = logits.argmax(dim=-1)
                else:
                    probs = torch.softmax(logits / temperature, dim=-1)
                    if top_p < 1.0:
                        probs = _top_p(probs, top_p)
                    nxt = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
                owed = self.utf8_next[owed, nxt]
                for i, tok in enumerate(nxt.tolist()):
                    if finish[i] is not None:
                        continue
                    tokens[i].append(tok)
                    if matchers and not matchers[i].accept_token(tok):
                        raise RuntimeError(f"the grammar refused token {tok} that its own mask allowed")
                    if tok in self.eos_ids:
                        finish[i] = "stop"
                    elif stop:
                        seen = len(texts[i])
                        texts[i] = self.decode(tokens[i])
                        hits = [p for s in stop if (p := texts[i].find(s, max(0, seen - longest_stop))) >= 0]
                        if hits:
                            finish[i], cut[i] = "stop", texts[i][: min(hits)]
                if all(f is not None for f in finish):
                    break
                finished = torch.tensor([f is not None for f in finish], device=nxt.device)
                inputs = nxt.masked_fill(finished, self.pad_id).unsqueeze(-1)
        eos = set(self.eos_ids)
        replies = []
        for i in range(n):
            text = cut[i]
            if text is None:
                text = self.decode([t for t in tokens[i] if t not in eos])
            replies.append(Completion(text, "stop" if finish[i] == "stop" else "length", len(tokens[i])))
        return replies

    def complete(self, req: ChatCompletionRequest, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
        """Answer one chat completion request with the OpenAI response body."""
        if req.stream:
            raise BadRequest("streaming is not supported by the embedded backend", "stream")
        if req.logprobs:
            raise BadRequest("logprobs are not supported by the embedded backend", "logprobs")
        prompt = self.prompt_ids(req.messages)
        room = self.context_length - len(prompt)
        asked = req.max_completion_tokens or req.max_tokens
        if room < 1 or (asked is not None and asked > room):
            raise BadRequest(
                f"This model's maximum context length is {self.context_length} tokens. However, you requested "
                f"{len(prompt) + (asked or 1)} tokens ({len(prompt)} in the messages, {asked or 1} in the completion).",
                "max_tokens" if room >= 1 else "messages",
            )
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        temperature = 1.0 if req.temperature is None else req.temperature
        seed = secrets.randbits(63) if req.seed is None else req.seed % (1 << 63)
        with self._lock, _torch_threads(self.threads):
            grammar, json_mode = self.grammar(req)
            choices = self.sample(
                prompt,
                n=req.n,
                temperature=temperature,
                top_p=1.0 if req.top_p is None else req.top_p,
                max_tokens=asked or min(room, default_max_tokens),
                stop=stop,
                grammar=grammar,
                seed=seed,
                json_mode=json_mode,
            )
        completion_tokens = sum(c.tokens for c in choices)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.served_name,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": c.text},
                    "finish_reason": c.finish_reason,
                    "logprobs": None,
                }
                for i, c in enumerate(choices)
            ],
            "usage": {
                "prompt_tokens": len(prompt),
                "completion_tokens": completion_tokens,
                "total_tokens": len(prompt) + completion_tokens,
            },
        }


# ---------------------------------------------------------------------------------------------------------------
# The app.


def _error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error") -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status_code=status)


def create_app(
    model_dir: Path | str,
    *,
    served_model_name: str | None = None,
    device: str | None = None,
    threads: int | None = None,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
) -> FastAPI:
    """An OpenAI-compatible app serving the model in `model_dir` (loaded now, not at first request).

    Any requested `model` name is answered by this one model; replies name it `served_model_name`
    (default: the directory's name). Without `max_tokens` a reply may use the rest of the context,
    at most `default_max_tokens`.
    """
    engine = LocalChatModel(model_dir, served_name=served_model_name, device=device, threads=threads)
    created = int(time.time())
    app = FastAPI(title="jinstruct embedded backend")
    app.state.engine = engine

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        where = ".".join(loc) or None
        return _error(400, f"{where + ': ' if where else ''}{first.get('msg', 'invalid request')}", where)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(exc.status_code, str(exc.detail), None, kind)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": engine.served_name, "object": "model", "created": created, "owned_by": "jinstruct",
                "max_model_len": engine.context_length}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest) -> Any:
        # Errors become OpenAI-style bodies here, not in an app-wide handler: Starlette re-raises unhandled
        # exceptions, which httpx.ASGITransport would hand to the in-process client as a Python exception.
        try:
            return await anyio.to_thread.run_sync(engine.complete, req, default_max_tokens)
        except BadRequest as e:
            return _error(400, str(e), e.param)
        except Exception as e:  # noqa: BLE001 - any other failure is this request's 500, not the server's
            return _error(500, f"internal error: {type(e).__name__}: {e}", None, "internal_server_error")

    return app
