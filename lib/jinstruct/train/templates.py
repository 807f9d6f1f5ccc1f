"""Prompt templates a model is tuned with and answers in: its tokenizer's chat template, or the Japanese Alpaca
prompt of the seed papers (`### 指示:` / `### 入力:` / `### 応答:`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

Template = Literal["chat", "alpaca_ja"]

# The Japanese Alpaca prompt used by the seed papers (with and without an input).
ALPACA_JA_HEADER = "以下は、タスクを説明する指示です。要求を適切に満たす応答を書きなさい。"
ALPACA_JA_HEADER_INPUT = "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"
ALPACA_STOPS = ("### 指示:", "### 入力:", "### 応答:")  # a base model that runs on starts the next example


def alpaca_ja_prompt(instruction: str, input: str = "") -> str:
    """The seed papers' prompt: header, `### 指示:`, optional `### 入力:`, then `### 応答:` awaiting the answer."""
    if input.strip():
        return f"{ALPACA_JA_HEADER_INPUT}\n\n### 指示:\n{instruction}\n\n### 入力:\n{input}\n\n### 応答:\n"
    return f"{ALPACA_JA_HEADER}\n\n### 指示:\n{instruction}\n\n### 応答:\n"


def render(tokenizer: Any, template: Template, messages: Sequence[dict[str, str]]) -> str:
    """The prompt text of a conversation that awaits the assistant's next answer.

    chat: the tokenizer's chat template. alpaca_ja: the seed papers' prompt for the first instruction; a
    later turn continues the same text with the earlier answer, then `### 指示:` and `### 応答:` again.
    """
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template; answer with template='alpaca_ja' for a base model")
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    if template != "alpaca_ja":
        raise ValueError(f"template must be 'chat' or 'alpaca_ja', got {template!r}")
    if any(m["role"] == "system" for m in messages):
        raise ValueError("the alpaca_ja template has no system message")
    roles = [m["role"] for m in messages]
    if roles[-1] != "user" or roles != ["user", "assistant"] * (len(roles) // 2) + ["user"]:
        raise ValueError(f"expected alternating user and assistant messages ending with the user's, got {roles}")
    text = alpaca_ja_prompt(messages[0]["content"])
    for answer, question in zip(messages[1::2], messages[2::2]):
        text += f"{answer['content']}\n\n### 指示:\n{question['content']}\n\n### 応答:\n"
    return text
