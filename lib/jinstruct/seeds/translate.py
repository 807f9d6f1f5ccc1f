"""Machine translation of seed tasks through the LLM client, with what must not change protected.

Each task becomes one chat request: the prompt in `prompts/translate_seed_ja.txt` (plain text a user may edit)
followed by the task as JSON, asking for a reply in a JSON schema of the same shape (instruction plus exactly as
many instances). Before sending, every protected span (code blocks and inline code, URLs, e-mail addresses,
placeholders such as `{name}`, `<URL>` or `NAME_1`, and numbers) is replaced by a numbered marker `⟦k⟧`; after the reply,
the markers are put back and checked: each must come back exactly once, in its own field.

The outcome of each task is one of
- "ok": translated, every check passed;
- "flagged": translated and kept, with problems for the post-editor (a lost or repeated span, an output left
  empty, no Japanese at all in a field, an input where the English has none);
- "failed": kept out (the call failed, the reply was cut off or is not the task's shape). Nothing is put in
  its place: the report says why, and a later run with a better endpoint or prompt fills the gap.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jinstruct.llm import ChatRequest
from jinstruct import paths
from jinstruct.formats.seed_task import SeedTask, task_fields, with_fields

DEFAULT_PROMPT = paths.prompt_path("translate_seed_ja.txt")

# Alternatives are tried in this order at each position, so a URL's digits stay inside the URL.
_PROTECTED = re.compile(
    "|".join(
        [
            r"```[\s\S]*?```",  # fenced code block
            r"`[^`\n]+`",  # inline code
            r"https?://[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]」』。、]",  # URL, less trailing punctuation
            r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",  # e-mail address
            r"\{[^{}\n]{1,40}\}",  # {name}, {1,2,3}
            r"<[A-Za-z_][\w .:/-]{0,40}>",  # <URL>, <name>
            r"\bNAME_\d+\b",  # LMSYS-Chat-1M's anonymised names (NAME_1, NAME_2, ...)
            r"(?<![A-Za-z\d])\d+(?:[.,:/]\d+)*",  # 42, 3.14, 1,000, 1/2, 05/12/2021, 10:30
            r"[⟦⟧]",  # the marker brackets themselves, so text that has them survives
        ]
    )
)
_MARKER = re.compile(r"⟦\s*([0-9０-９]+)\s*⟧")
_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")
_WORD = re.compile(r"[A-Za-z]{2,}")

Status = Literal["ok", "flagged", "failed"]


def marker(k: int) -> str:
    return f"⟦{k}⟧"


def mask_spans(text: str, start: int = 0) -> tuple[str, list[str]]:
    """`text` with each protected span replaced by ⟦start⟧, ⟦start+1⟧, ...; and the spans, in order."""
    spans: list[str] = []

    def sub(m: re.Match[str]) -> str:
        spans.append(m.group(0))
        return marker(start + len(spans) - 1)

    return _PROTECTED.sub(sub, text), spans


def restore_spans(text: str, spans: Mapping[int, str]) -> tuple[str, Counter[int]]:
    """Put the spans back for every marker in `text` that `spans` knows; count how often each marker appeared.

    Markers are matched loosely (spaces inside, full-width digits), as models sometimes write them so.
    Unknown markers stay in the text and are counted too.
    """
    seen: Counter[int] = Counter()

    def sub(m: re.Match[str]) -> str:
        k = int(unicodedata.normalize("NFKC", m.group(1)))
        seen[k] += 1
        return spans.get(k, m.group(0))

    return _MARKER.sub(sub, text), seen


@dataclass(frozen=True)
class MaskedTask:
    """A task as sent: masked text per field, which markers each field holds, and what they stand for."""

    task: SeedTask
    fields: dict[str, str]
    owners: dict[int, str]  # marker number -> field it came from
    spans: dict[int, str]  # marker number -> original text

    def payload(self) -> dict[str, Any]:
        n = len(self.task.instances)
        return {
            "instruction": self.fields["instruction"],
            "instances": [
                {"input": self.fields[f"instances.{i}.input"], "output": self.fields[f"instances.{i}.output"]}
                for i in range(n)
            ],
        }


def mask_task(task: SeedTask) -> MaskedTask:
    fields: dict[str, str] = {}
    owners: dict[int, str] = {}
    spans: dict[int, str] = {}
    for name, text in task_fields(task):
        masked, found = mask_spans(text, start=len(spans))
        for k, span in enumerate(found, start=len(spans)):
            spans[k], owners[k] = span, name
        fields[name] = masked
    return MaskedTask(task, fields, owners, spans)


def translation_schema(n_instances: int, max_chars: int | None = None) -> dict[str, Any]:
    """JSON schema of a translated task with exactly `n_instances` instances (OpenAI strict mode compatible).

    `max_chars` adds `maxLength` to every string: only for weak local models (see `translation_requests`).
    """
    string: dict[str, Any] = {"type": "string"} if max_chars is None else {"type": "string", "maxLength": max_chars}
    instance = {
        "type": "object",
        "properties": {"input": string, "output": string},
        "required": ["input", "output"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "instruction": string,
            "instances": {"type": "array", "items": instance, "minItems": n_instances, "maxItems": n_instances},
        },
        "required": ["instruction", "instances"],
        "additionalProperties": False,
    }


def load_prompt(path: str | os.PathLike[str] = DEFAULT_PROMPT) -> str:
    text = Path(path).read_text(encoding="utf-8").strip()
    if not text:
        raise ValueError(f"{path}: the translation prompt is empty")
    return text


def translation_requests(
    tasks: Sequence[SeedTask],
    *,
    prompt_path: str | os.PathLike[str] = DEFAULT_PROMPT,
    model: str | None = None,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    max_field_chars: int | None = None,
) -> list[ChatRequest]:
    """One request per task: the prompt, then the masked task as JSON; the reply constrained by its schema.

    `max_tokens=None` gives each request 256 tokens plus one per character of the masked JSON: about twice
    what a Japanese translation of it takes, so a reply that runs on is cut off and reported, not paid for long.
    `max_field_chars` caps every translated field through the schema's `maxLength`, so that a weak local model
    (the tiny config's) closes its strings instead of rambling to max_tokens. Leave it None for real models:
    OpenAI's strict mode rejects the keyword, and xgrammar then allows no newline or escape in the strings.
    """
    prompt = load_prompt(prompt_path)
    out = []
    for task in tasks:
        payload = json.dumps(mask_task(task).payload(), ensure_ascii=False, indent=2)
        out.append(
            ChatRequest(
                messages=[{"role": "user", "content": f"{prompt}\n\n{payload}"}],
                model=model,
                temperature=temperature,
                max_tokens=max_tokens or 256 + len(payload),
                json_schema=translation_schema(len(task.instances), max_field_chars),
                tag=task.id,
            )
        )
    return out


class TranslationReport(BaseModel):
    """What happened to one task: ok, flagged (kept, with problems) or failed (kept out)."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    status: Status
    problems: list[str] = Field(default_factory=list)
    reply: str | None = None  # the start of the reply of a task that failed on it, to see what went wrong


@dataclass(frozen=True)
class Translation:
    tasks: list[SeedTask]  # translated tasks, ok and flagged, in input order
    reports: list[TranslationReport]  # one per input task, in input order

    @property
    def failed(self) -> list[TranslationReport]:
        return [r for r in self.reports if r.status == "failed"]

    @property
    def flagged(self) -> list[TranslationReport]:
        return [r for r in self.reports if r.status == "flagged"]

    def problems(self) -> dict[str, list[str]]:
        """task id -> its problems, for tasks that have any (the post-editing sheet's notes)."""
        return {r.task_id: r.problems for r in self.reports if r.problems}

    def table(self) -> pd.DataFrame:
        """One row per task: id, status, problems joined."""
        return pd.DataFrame(
            [{"task_id": r.task_id, "status": r.status, "problems": "; ".join(r.problems)} for r in self.reports],
            columns=["task_id", "status", "problems"],
        )


class _ReplyInstance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str
    output: str


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instruction: str
    instances: list[_ReplyInstance]


def _reply_text(result: Any) -> str:
    return result.texts[0] if result.texts else ""


def _field_problems(name: str, source: str, restored: str, masked: MaskedTask, seen: Counter[int]) -> list[str]:
    problems = []
    for k, owner in masked.owners.items():
        if owner == name and seen[k] == 0:
            problems.append(f"{name}: lost {masked.spans[k]!r}")
        elif owner == name and seen[k] > 1:
            problems.append(f"{name}: {masked.spans[k]!r} appears {seen[k]} times")
    for k in sorted(seen):
        if k not in masked.spans:
            problems.append(f"{name}: unknown marker {marker(k)} left in")
        elif masked.owners[k] != name:
            problems.append(f"{name}: holds {masked.spans[k]!r}, which belongs to {masked.owners[k]}")
    if source.strip() and not restored.strip():
        problems.append(f"{name}: empty, but the English is not")
    if not source.strip() and restored.strip():
        problems.append(f"{name}: the English is empty, the translation is not")
    words_left = _WORD.findall(_MARKER.sub(" ", masked.fields[name]))
    if len(words_left) >= 3 and restored.strip() and not _JAPANESE.search(restored):
        problems.append(f"{name}: no Japanese in the translation (left untranslated?)")
    return problems


def read_translation(task: SeedTask, result: Any) -> tuple[SeedTask | None, TranslationReport]:
    """The translated task (None when it failed) and its report, from the client's result for `task`."""

    def failed(why: str, reply: str | None = None) -> tuple[None, TranslationReport]:
        shown = reply[:500] if reply is not None else None
        return None, TranslationReport(task_id=task.id, status="failed", problems=[why], reply=shown)

    if result.error is not None:
        return failed(f"request failed: {result.error}")
    text = _reply_text(result)
    if "length" in (result.finish_reasons or []):
        return failed("reply cut off at max_tokens", text)
    try:
        # `parsed` is None from an endpoint that ignored the schema: the text may still be the JSON.
        obj = result.parsed if result.parsed is not None else json.loads(text)
        reply = _Reply.model_validate(obj)
    except json.JSONDecodeError as e:
        return failed(f"reply is not JSON ({e.msg})", text)
    except ValidationError as e:
        first = e.errors()[0]
        return failed(f"reply is not a task: {'.'.join(map(str, first['loc'])) or 'reply'}: {first['msg']}", text)
    if len(reply.instances) != len(task.instances):
        return failed(f"reply has {len(reply.instances)} instances, the task {len(task.instances)}", text)

    masked = mask_task(task)
    got = {"instruction": reply.instruction}
    for i, inst in enumerate(reply.instances):
        got[f"instances.{i}.input"], got[f"instances.{i}.output"] = inst.input, inst.output
    restored: dict[str, str] = {}
    problems: list[str] = []
    for name, source in task_fields(task):
        restored[name], seen = restore_spans(got[name], masked.spans)
        problems += _field_problems(name, source, restored[name], masked, seen)
    if not restored["instruction"].strip():
        return failed("the translated instruction is empty", text)
    translated = with_fields(task, restored)
    status: Status = "flagged" if problems else "ok"
    return translated, TranslationReport(task_id=task.id, status=status, problems=problems)


class ChatClient(Protocol):
    def chat_many(self, requests: Sequence[ChatRequest], desc: str = "") -> Sequence[Any]: ...


def translate_seed_tasks(
    tasks: Sequence[SeedTask],
    client: ChatClient,
    *,
    prompt_path: str | os.PathLike[str] = DEFAULT_PROMPT,
    model: str | None = None,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    max_field_chars: int | None = None,
    desc: str = "translating seed tasks",
) -> Translation:
    """Translate every task through `client` (one request each); failed ones are reported and left out.

    The keyword arguments are those of `translation_requests`.
    """
    requests = translation_requests(
        tasks,
        prompt_path=prompt_path,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        max_field_chars=max_field_chars,
    )
    results = client.chat_many(requests, desc=desc)
    if len(results) != len(tasks):
        raise RuntimeError(f"the client answered {len(results)} of {len(tasks)} requests")
    translated: list[SeedTask] = []
    reports: list[TranslationReport] = []
    for task, result in zip(tasks, results, strict=True):
        out, report = read_translation(task, result)
        reports.append(report)
        if out is not None:
            translated.append(out)
    return Translation(translated, reports)
