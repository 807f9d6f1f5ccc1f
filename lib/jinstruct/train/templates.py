"""Prompt templates a model is tuned with and answers in: its tokenizer's chat template, or an Alpaca-style
Japanese prompt.

- `alpaca_ja`: the Japanese Alpaca prompt of the self-instruct papers (`### 指示:` / `### 入力:` / `### 応答:`).
- `alpaca_ja_2309`: the layout arXiv 2309.03412 tunes with (alpaca-lora's, in Japanese): `### 指示:` / `### 入力:` /
  `### 返答:`. The section markers are the paper's; the header sentence above them is this project's own wording.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Template = Literal["chat", "alpaca_ja", "alpaca_ja_2309"]


@dataclass(frozen=True)
class InstructionTemplate:
    """An Alpaca-style prompt: a header (another when there is an input), then marked sections; the answer follows
    the response marker."""

    header: str
    header_input: str
    response: str  # the marker the answer follows, e.g. "### 応答:"

    def prompt(self, instruction: str, input: str = "") -> str:
        if input.strip():
            return f"{self.header_input}\n\n### 指示:\n{instruction}\n\n### 入力:\n{input}\n\n{self.response}\n"
        return f"{self.header}\n\n### 指示:\n{instruction}\n\n{self.response}\n"

    @property
    def stops(self) -> tuple[str, ...]:
        """Where a base model that runs on starts the next example."""
        return ("### 指示:", "### 入力:", self.response)


# The Japanese Alpaca prompt used by the seed papers (with and without an input).
ALPACA_JA_HEADER = "以下は、タスクを説明する指示です。要求を適切に満たす応答を書きなさい。"
ALPACA_JA_HEADER_INPUT = "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"
# arXiv 2309.03412's layout, under a header written for this project.
ALPACA_2309_HEADER = "以下はあるタスクについての指示です。指示に沿った返答を書いてください。"
ALPACA_2309_HEADER_INPUT = "以下はあるタスクについての指示と、その手がかりとなる入力です。指示に沿った返答を書いてください。"

INSTRUCTION_TEMPLATES: dict[str, InstructionTemplate] = {
    "alpaca_ja": InstructionTemplate(ALPACA_JA_HEADER, ALPACA_JA_HEADER_INPUT, "### 応答:"),
    "alpaca_ja_2309": InstructionTemplate(ALPACA_2309_HEADER, ALPACA_2309_HEADER_INPUT, "### 返答:"),
}
ALPACA_STOPS = INSTRUCTION_TEMPLATES["alpaca_ja"].stops  # a base model that runs on starts the next example


def alpaca_ja_prompt(instruction: str, input: str = "") -> str:
    """The seed papers' prompt: header, `### 指示:`, optional `### 入力:`, then `### 応答:` awaiting the answer."""
    return INSTRUCTION_TEMPLATES["alpaca_ja"].prompt(instruction, input)


def instruction_prompt(template: str, instruction: str, input: str = "") -> str:
    """The prompt of an Alpaca-style `template` (not `chat`) awaiting the answer."""
    return _instruction_template(template).prompt(instruction, input)


def stops(template: str) -> tuple[str, ...]:
    """The strings that end an answer in `template`: none for chat (its end-of-turn token stops it)."""
    return () if template == "chat" else _instruction_template(template).stops


def _instruction_template(template: str) -> InstructionTemplate:
    if template not in INSTRUCTION_TEMPLATES:
        names = ", ".join(["chat", *INSTRUCTION_TEMPLATES])
        raise ValueError(f"template must be one of {names}, got {template!r}")
    return INSTRUCTION_TEMPLATES[template]


def render(tokenizer: Any, template: Template, messages: Sequence[dict[str, str]]) -> str:
    """The prompt text of a conversation that awaits the assistant's next answer.

    chat: the tokenizer's chat template. Alpaca-style templates: the prompt for the first instruction; a later turn
    continues the same text with the earlier answer, then `### 指示:` and the response marker again.
    """
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template; answer with template='alpaca_ja' for a base model")
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    spec = _instruction_template(template)
    if any(m["role"] == "system" for m in messages):
        raise ValueError(f"the {template} template has no system message")
    roles = [m["role"] for m in messages]
    if roles[-1] != "user" or roles != ["user", "assistant"] * (len(roles) // 2) + ["user"]:
        raise ValueError(f"expected alternating user and assistant messages ending with the user's, got {roles}")
    text = spec.prompt(messages[0]["content"])
    for answer, question in zip(messages[1::2], messages[2::2]):
        text += f"{answer['content']}\n\n### 指示:\n{question['content']}\n\n{spec.response}\n"
    return text
