"""Notebook 04's worked example: one training example as the trainer sees it, with the tokens the loss is on.

The example is read as training reads it (`load_examples`: a prompt and a completion) and tokenized as TRL's
SFTTrainer tokenizes a prompt-completion example: the prompt alone (with the chat template's generation prompt),
then prompt and completion together; the completion starts where the two stop agreeing, and with
`completion_only_loss` the loss falls on the completion's tokens alone (the assistant's answer and the end-of-turn
token), nothing before. Tokens past `max_seq_length` are cut off and carry no loss either. The test compares this
with the trainer's own tokenized dataset.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinstruct.show import Html, Part, Shown
from jinstruct.train.qlora import TrainParams, load_examples, load_tokenizer


@dataclass(repr=False)
class LossTokens(Shown):
    """One training example's tokens, each with whether the loss is computed on it."""

    index: int
    template: str
    ids: list[list[int]]  # the token ids, grouped into pieces that read as text (see `pieces`)
    tokens: list[str]  # each piece as text
    loss: list[bool]  # per token id: the loss is computed on it
    max_length: int

    @property
    def title(self) -> str:
        n = len(self.loss)
        cut = f", cut to {self.max_length}" if n > self.max_length else ""
        return (f"Training example {self.index} with the {self.template} template: {n} tokens{cut}, "
                f"the loss on {sum(self.loss)} of them")

    def parts(self) -> list[Part]:
        spans, plain = [], []
        first = 0
        for ids, tok in zip(self.ids, self.tokens):
            on = any(self.loss[first:first + len(ids)])
            style = "background:#ffe08a" if on else "color:#57606a"
            if first >= self.max_length:
                style = "color:#b0b0b0;text-decoration:line-through"
            first += len(ids)
            spans.append(f'<span style="{style};border-right:1px solid #d0d7de">{html.escape(tok)}</span>')
            plain.append(f"[{tok}]" if on else tok)
        markup = f'<pre style="white-space:pre-wrap">{"".join(spans)}</pre>'
        legend = ("Grey: the prompt, rendered with the template (no loss). Highlighted: the tokens the loss is "
                  "computed on. A thin line separates tokens.")
        return [("The example as the model is trained on it", Html(markup, "".join(plain))), ("", legend)]


def loss_tokens(params: TrainParams, train_file: Path, index: int = 0) -> LossTokens:
    """Record `index` of `train_file`, tokenized with `params`' base model tokenizer and template."""
    examples = load_examples(Path(train_file), params.template)
    if not 0 <= index < len(examples):
        raise IndexError(f"{train_file}: no example {index} (it has {len(examples)})")
    example = examples[index]
    tok = load_tokenizer(params.base_model, params.template == "chat", params.trust_remote_code)
    if params.template == "chat":
        prompt_ids = tok.apply_chat_template(example["prompt"], tokenize=True, add_generation_prompt=True,
                                             return_dict=True)["input_ids"]
        full_ids = tok.apply_chat_template(example["prompt"] + example["completion"], tokenize=True,
                                           return_dict=True)["input_ids"]
    else:  # a plain-text prompt and completion; the trainer appends the end-of-sequence token to the completion
        completion = example["completion"]
        if not completion.endswith(tok.eos_token):
            completion += tok.eos_token
        prompt_ids = tok(example["prompt"])["input_ids"]
        full_ids = tok(example["prompt"] + completion)["input_ids"]
    common = 0
    while common < min(len(prompt_ids), len(full_ids)) and prompt_ids[common] == full_ids[common]:
        common += 1
    loss = [common <= i < params.max_seq_length for i in range(len(full_ids))]
    groups = pieces(tok, full_ids)
    return LossTokens(index, params.template, groups, [tok.decode(g) for g in groups], loss, params.max_seq_length)


def pieces(tokenizer: Any, ids: list[int], longest: int = 4) -> list[list[int]]:
    """The ids cut into pieces that each decode to whole characters: a byte-level tokenizer may split one Japanese
    character over two or three tokens, and each alone decodes to U+FFFD. Up to `longest` tokens join a piece."""
    out: list[list[int]] = []
    i = 0
    while i < len(ids):
        j = i + 1
        while "\ufffd" in tokenizer.decode(ids[i:j]) and j < min(len(ids), i + longest):
            j += 1
        if "\ufffd" in tokenizer.decode(ids[i:j]):
            j = i + 1  # not a split character after all: the token alone
        out.append(list(ids[i:j]))
        i = j
    return out
