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

from jinstruct.paths import REPO_ROOT

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

    base_url: str = EMBEDDED
    model: str = ""
    api_key_env: str | None = "OPENAI_API_KEY"
    embedded_model: Path | None = None

    concurrency: int = Field(default=8, ge=1)
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=6, ge=0)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    structured_retries: int = Field(default=2, ge=0)

    default_max_tokens: int | None = Field(default=None, ge=1)
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    extra_body: dict[str, Any] = Field(default_factory=dict)

    pricing: dict[str, ModelPrice] = Field(default_factory=dict)
    budget_usd: float | None = Field(default=None, ge=0)

    http_backend: Literal["auto", "openai", "aiohttp"] = "auto"

    use_batch_api: bool = False
    batch_discount: float = Field(default=0.5, gt=0, le=1)
    batch_poll_s: float = Field(default=30.0, gt=0)
    batch_wait_s: float | None = Field(default=None, gt=0)

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

    @model_validator(mode="after")
    def _embedded_needs_model(self) -> EndpointSettings:
        if self.base_url == EMBEDDED and self.embedded_model is None:
            raise ValueError("the embedded backend needs embedded_model (a local Hugging Face model folder)")
        if self.base_url != EMBEDDED and not self.model:
            raise ValueError(f"model is required for {self.base_url}")
        return self

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

    for path in (find_dotenv(usecwd=True), str(REPO_ROOT / ".env")):
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
