"""Where the client sends requests and how hard it may push: one `EndpointSettings` per stage.

The API key is never a setting: `api_key_env` names the environment variable (or `.env` entry) that holds it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jinstruct import paths

EMBEDDED = "embedded"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class MissingAPIKey(RuntimeError):
    """A remote endpoint needs a key and the named environment variable is not set."""


class ModelPrice(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class EndpointSettings(BaseModel):
    """One OpenAI-compatible endpoint and the client's limits for it (the YAML `llm` block of a stage)."""

    # Never echo a rejected value: someone may paste a key into the wrong field.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    base_url: str = EMBEDDED  # "embedded" (in-process offline backend) or an OpenAI-compatible http(s) URL
    replicas: list[str] = Field(default_factory=list)  # more base URLs serving the same model (vLLM replicas):
    # requests are spread over base_url and these, each to the one with the fewest requests in flight
    model: str = ""  # the name sent (and part of every cache key); embedded: defaults to the model folder's name
    api_key_env: str | None = "OPENAI_API_KEY"  # NAME of the env var (or .env entry) with the key; null: no key
    embedded_model: Path | None = None  # the local Hugging Face model folder the embedded backend serves

    concurrency: int = Field(default=8, ge=1)  # requests in flight at once
    requests_per_minute: float | None = Field(default=None, gt=0)  # client-side pacing (None: none)
    tokens_per_minute: float | None = Field(default=None, gt=0)  # counts estimated prompt + max_tokens x n
    timeout_s: float = Field(default=120.0, gt=0)  # per call, the whole call
    max_retries: int = Field(default=6, ge=0)  # on 408/409/429/5xx, timeouts, connection errors, malformed bodies
    backoff_base_s: float = Field(default=1.0, gt=0)  # retry k waits base * 2**k (jittered) unless Retry-After says
    backoff_max_s: float = Field(default=60.0, gt=0)
    structured_retries: int = Field(default=2, ge=0)  # fresh draws after an invalid structured reply

    default_max_tokens: int | None = Field(default=None, ge=1)  # for requests without max_tokens
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"  # OpenAI's newer models: the latter
    extra_body: dict[str, Any] = Field(default_factory=dict)  # more request fields (e.g. vLLM's top_k); in the key

    pricing: dict[str, ModelPrice] = Field(default_factory=dict)  # model -> USD per million input/output tokens
    budget_usd: float | None = Field(default=None, ge=0)  # the stage stops before a call could pass it

    http_backend: Literal["auto", "openai", "aiohttp"] = "auto"  # auto: aiohttp when installed, else openai's client

    # self-hosted (vLLM): what `estimate` turns into GPU-hours; generated tokens per second of one replica, at the
    # concurrency used, and the GPUs one replica takes (tensor x pipeline parallel)
    tokens_per_s: float | None = Field(default=None, gt=0)
    gpus_per_replica: int = Field(default=1, ge=1)

    use_batch_api: bool = False  # send through the OpenAI Batch API (needs a run folder)
    batch_discount: float = Field(default=0.5, gt=0, le=1)  # the fraction of the price a batch pays
    batch_poll_s: float = Field(default=30.0, gt=0)
    batch_wait_s: float | None = Field(default=None, gt=0)  # give up waiting (BatchPending; re-run collects); None: wait

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError("must be the NAME of an environment variable (e.g. OPENAI_API_KEY), never the key itself")
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v != EMBEDDED and urlparse(v).scheme not in ("http", "https"):
            raise ValueError(f"must be '{EMBEDDED}' or an http(s) URL")
        return v

    @field_validator("replicas")
    @classmethod
    def _replica_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if urlparse(url).scheme not in ("http", "https"):
                raise ValueError("every replica must be an http(s) URL")
        return v

    @model_validator(mode="after")
    def _embedded_needs_model(self) -> EndpointSettings:
        if self.base_url == EMBEDDED and self.embedded_model is None:
            raise ValueError("the embedded backend needs embedded_model (a local Hugging Face model folder)")
        if self.base_url != EMBEDDED and not self.model:
            raise ValueError(f"model is required for {self.base_url}")
        if self.replicas and (self.base_url == EMBEDDED or self.use_batch_api):
            raise ValueError("replicas are for several servers of one model: not with the embedded backend or the "
                             "Batch API")
        return self

    @property
    def base_urls(self) -> list[str]:
        """Every URL requests go to: base_url, then the replicas."""
        return [self.base_url, *self.replicas]

    @property
    def is_embedded(self) -> bool:
        return self.base_url == EMBEDDED

    def model_name(self) -> str:
        """The model name sent to the endpoint (and part of every cache key)."""
        if self.model or self.embedded_model is None:
            return self.model
        return Path(self.embedded_model).name


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _from_dotenv(name: str) -> str | None:
    from dotenv import dotenv_values, find_dotenv

    try:
        project_env = str(paths.project_root() / ".env")
    except paths.ProjectRootNotFound:
        project_env = ""
    for path in (find_dotenv(usecwd=True), project_env):
        if path and Path(path).is_file():
            value = dotenv_values(path).get(name)
            if value:
                return value
    return None


def resolve_api_key(settings: EndpointSettings) -> str:
    """The key for `settings.base_url`: from the environment variable named by api_key_env, else `.env`.

    Local servers (loopback hosts, the embedded backend) or `api_key_env: null` get a placeholder, as vLLM expects.
    A remote endpoint without its key is a MissingAPIKey error naming the variable (never a value).
    """
    if settings.is_embedded or settings.api_key_env is None:
        return "EMPTY"
    name = settings.api_key_env
    value = os.environ.get(name) or _from_dotenv(name)
    if value:
        return value
    if _is_loopback(settings.base_url):
        return "EMPTY"
    raise MissingAPIKey(
        f"no API key for {settings.base_url}: set the environment variable {name} "
        f"(or a line {name}=... in .env); keys never go in config files"
    )
