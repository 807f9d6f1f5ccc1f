"""The one LLM client of every stage: any OpenAI-compatible endpoint (or the embedded offline backend),
with a persistent cache, concurrency and rate limits, retries, cost accounting with a budget, the
OpenAI Batch API and validated structured outputs.

    from jinstruct.llm import ChatRequest, EndpointSettings, open_client
    client = open_client(EndpointSettings(base_url="https://api.openai.com/v1", model="gpt-4o-mini"), run_dir, "judge")
    results = client.chat_many([ChatRequest.user("日本の首都は?", max_tokens=64)])
"""

from jinstruct.llm.batch import BatchPending
from jinstruct.llm.cache import ResponseCache, default_cache_path
from jinstruct.llm.client import LLMClient, open_client
from jinstruct.llm.ledger import BudgetExceeded, Estimate, LedgerRecord, estimate_prompt_tokens
from jinstruct.llm.request import ChatRequest, ChatResult, ReplyError, Usage
from jinstruct.llm.settings import EndpointSettings, MissingAPIKey, ModelPrice, resolve_api_key
from jinstruct.llm.structured import schema_for, validate_reply

__all__ = [
    "BatchPending",
    "BudgetExceeded",
    "ChatRequest",
    "ChatResult",
    "EndpointSettings",
    "Estimate",
    "LLMClient",
    "LedgerRecord",
    "MissingAPIKey",
    "ModelPrice",
    "ReplyError",
    "ResponseCache",
    "Usage",
    "default_cache_path",
    "estimate_prompt_tokens",
    "open_client",
    "resolve_api_key",
    "schema_for",
    "validate_reply",
]
