"""Where human-written instructions come from: the first user turn of each conversation of a chat dataset.

A source is a JSON Lines file (the shipped `data/human_instructions/instructions.jsonl`, or any file with an id
and a user-turn field), or a Hugging Face dataset read with `datasets` in streaming mode, so a million
conversations pass in bounded memory. LMSYS-Chat-1M (`lmsys/lmsys-chat-1m`, gated) is read as

    SourceSpec(dataset="lmsys/lmsys-chat-1m", conversation_field="conversation", language_field="language")

with the access token taken from the `HF_TOKEN` environment variable, never from a config. A conversation field
holds a list of `{role, content}` turns (OpenAI's and LMSYS's shape); its first `user` turn is the instruction.
Each row becomes `{conversation_id, language, instruction}` (`language`: the source's own label, or None).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from jinstruct.generate.checkpoint import stream_jsonl
from jinstruct.io import DataError
from jinstruct.paths import resolve_path

SHIPPED = "data/human_instructions/instructions.jsonl"


class SourceSpec(BaseModel):
    """The conversations to take instructions from: a JSON Lines `path`, or a Hugging Face `dataset`."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = SHIPPED  # a JSON Lines file (relative paths from the project root)
    dataset: str | None = None  # a Hugging Face dataset (e.g. lmsys/lmsys-chat-1m), or a builder such as "json"
    data_files: str | list[str] | None = None  # with a builder ("json", "parquet"): the local files
    revision: str | None = None  # pin the dataset's revision (a commit sha) for a reproducible run
    split: str = "train"
    id_field: str = "conversation_id"
    text_field: str = "instruction"  # a field holding the user turn itself
    conversation_field: str | None = None  # or a list of {role, content} turns: the first user turn is taken
    language_field: str | None = "language"  # the source's own language label, kept (None: none)
    limit: int | None = None  # the first N conversations

    @model_validator(mode="after")
    def _one_source(self) -> SourceSpec:
        if self.dataset is not None:
            self.path = None  # a dataset replaces the default file
        if self.path is None and self.dataset is None:
            raise ValueError("give a JSON Lines path or a Hugging Face dataset")
        return self

    def describe(self) -> str:
        where = self.dataset or self.path
        return f"{where}" + (f" (first {self.limit:,})" if self.limit else "")


def first_user_turn(turns: Any, where: str) -> str:
    """The content of the first `user` turn of a conversation (a list of {role, content}); "" when it has none."""
    if not isinstance(turns, list):
        raise ValueError(f"{where}: expected a list of {{role, content}} turns, got {type(turns).__name__}")
    for turn in turns:
        if isinstance(turn, Mapping) and turn.get("role") in ("user", "human"):
            content = turn.get("content")
            return content if isinstance(content, str) else ""
    return ""


def _row(spec: SourceSpec, obj: Mapping[str, Any], n: int, source: str) -> dict[str, Any]:
    def missing(field: str) -> DataError:
        return DataError(source, n if spec.path else None, field, f"missing{'' if spec.path else f' in row {n}'}")

    if spec.id_field not in obj:
        raise missing(spec.id_field)
    if spec.conversation_field is not None:
        if spec.conversation_field not in obj:
            raise missing(spec.conversation_field)
        try:
            text = first_user_turn(obj[spec.conversation_field], spec.conversation_field)
        except ValueError as e:
            raise DataError(source, n if spec.path else None, spec.conversation_field, str(e)) from None
    else:
        if spec.text_field not in obj:
            raise missing(spec.text_field)
        text = obj[spec.text_field]
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise DataError(source, n if spec.path else None, spec.text_field,
                            f"expected a string, got {type(text).__name__}")
    language = obj.get(spec.language_field) if spec.language_field else None
    return {"conversation_id": str(obj[spec.id_field]), "language": language if isinstance(language, str) else None,
            "instruction": text}


def iter_source(spec: SourceSpec, skip: int = 0) -> Iterator[dict[str, Any]]:
    """The rows of the source in order (after the first `skip`, up to `limit`), streamed."""
    limit = spec.limit
    if spec.path is not None:
        path = resolve_path(spec.path)
        rows: Iterator[tuple[int, Mapping[str, Any]]] = stream_jsonl(path)
        source = str(path)
    else:
        from datasets import load_dataset

        assert spec.dataset is not None
        ds = load_dataset(spec.dataset, data_files=spec.data_files, split=spec.split, revision=spec.revision,
                          streaming=True, token=os.environ.get("HF_TOKEN") or None)
        rows = ((n, obj) for n, obj in enumerate(ds, start=1))
        source = spec.dataset
    for k, (n, obj) in enumerate(rows):
        if limit is not None and k >= limit:
            return
        if k < skip:
            continue
        yield _row(spec, obj, n, source)
