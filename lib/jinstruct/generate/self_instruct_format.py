"""The self-instruct task list: how demonstrations are written into the prompt and how replies are read back.

A task is written as a numbered block, blocks separated by `###` lines (the Alpaca bootstrap format, in Japanese):

    ###
    4. 指示: 次の文を敬語に書き換えてください。
    4. 入力:
    明日は休みます。
    4. 出力:
    明日はお休みをいただきます。

stanford_alpaca's own prompt (`prompt: alpaca` in the recipe's config) shows the same blocks with English labels
(`4. Instruction:`, `4. Input:`, `4. Output:`, `<noinput>`) and ends with the completion cue `###` /
`<k+1>. Instruction:`; `format_tasks_alpaca` writes that, and the reply is read after the cue is put back.

Replies are read leniently: full-width digits and punctuation (`４．指示：`), headers without numbers, English
labels (`Instruction:`), markdown emphasis around headers, chatter before the list or after a separator, and the
no-input markers (`<入力なし>`, `<noinput>`, ...) which become an empty input. An item that is incomplete is rejected
with its reason, and when the reply was cut off (finish_reason "length") the last item is dropped, complete or not,
as Alpaca does. Structured mode replies (`{"tasks": [...]}`, see `TASKS_SCHEMA`) go through the same checks.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

NO_INPUT = "<入力なし>"
SEPARATOR = "###"

# Written-out markers a model uses for "this task has no input", compared after NFKC, lower case, no spaces.
_NO_INPUT_MARKERS = frozenset(
    {"<入力なし>", "<noinput>", "<nullinput>", "<none>", "<なし>", "入力なし", "(入力なし)", "[入力なし]",
     "「入力なし」", "なし", "(なし)", "noinput", "none", "n/a", "-", "ー", "―"}
)

_LABELS = {"指示": "instruction", "instruction": "instruction", "入力": "input", "input": "input",
           "出力": "output", "output": "output"}
_ORDER = {"instruction": 0, "input": 1, "output": 2}

# A header at the start of a line: optional markdown (#, *), an optional number in ASCII or full-width digits with
# its punctuation, the label (possibly in **bold**), and a colon (ASCII or full-width). The content follows it.
_HEADER = re.compile(
    r"^[ \t\u3000]*(?:[#＃*＊][ \t\u3000#＃*＊]*)?"
    r"(?:(?P<num>[0-9０-９]{1,4})[ \t\u3000]*[.．。、,，)）:：]?[ \t\u3000]*)?"
    r"(?:\*\*|＊＊)?(?P<label>指示|入力|出力|instruction|input|output)(?:\*\*|＊＊)?"
    r"[ \t\u3000]*[:：](?:\*\*|＊＊)?[ \t\u3000]*",
    re.IGNORECASE | re.MULTILINE,
)
_SEPARATOR_LINE = re.compile(r"^[ \t\u3000]*[#＃]{3,}[ \t\u3000]*$", re.MULTILINE)
_SPACES = re.compile(r"\s+")


def tasks_schema(max_tasks: int | None = None, max_chars: int | None = None) -> dict[str, Any]:
    """The structured-output mode's reply, `{"tasks": [{"instruction", "input", "output"}, ...]}`, in the strict
    form OpenAI, vLLM and the embedded backend accept. `max_tasks` bounds the list to 1..max_tasks items and
    `max_chars` adds `maxLength` to every string: only for weak local models (the tiny config's), which otherwise
    ramble to max_tokens; OpenAI's strict mode rejects `maxLength`."""
    string: dict[str, Any] = {"type": "string"} if max_chars is None else {"type": "string", "maxLength": max_chars}
    tasks: dict[str, Any] = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"instruction": string, "input": string, "output": string},
            "required": ["instruction", "input", "output"],
            "additionalProperties": False,
        },
    }
    if max_tasks is not None:
        tasks["minItems"], tasks["maxItems"] = 1, max_tasks
    return {"type": "object", "properties": {"tasks": tasks}, "required": ["tasks"], "additionalProperties": False}


TASKS_SCHEMA = tasks_schema()


@dataclass(frozen=True)
class Task:
    """One parsed task; `number` is the list number the model gave it (None when it wrote none)."""

    instruction: str
    input: str
    output: str
    number: int | None = None


@dataclass(frozen=True)
class Rejected:
    """An item of a reply that did not become a task, and why ("truncated", "no instruction", "no output", ...)."""

    reason: str
    text: str


@dataclass
class ParseResult:
    tasks: list[Task] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def is_no_input(text: str) -> bool:
    """True for an empty input or a written-out no-input marker."""
    key = _SPACES.sub("", unicodedata.normalize("NFKC", text)).lower()
    return key == "" or key in _NO_INPUT_MARKERS


def format_task(number: int, instruction: str, input: str, output: str) -> str:
    """One demonstration as the prompt shows it (an empty input is written as `<入力なし>`), without separators."""
    shown_input = input.strip() or NO_INPUT
    return (f"{number}. 指示: {instruction.strip()}\n"
            f"{number}. 入力:\n{shown_input}\n"
            f"{number}. 出力:\n{output.strip()}")


def format_tasks(tasks: list[tuple[str, str, str]], start: int = 1) -> str:
    """Demonstrations numbered from `start`, each preceded by a `###` line, with a closing `###`."""
    blocks = [f"{SEPARATOR}\n{format_task(start + i, *t)}" for i, t in enumerate(tasks)]
    return "\n".join(blocks) + f"\n{SEPARATOR}\n"


ALPACA_NO_INPUT = "<noinput>"


def format_task_alpaca(number: int, instruction: str, input: str, output: str) -> str:
    """One demonstration as stanford_alpaca's bootstrap writes it: English labels, the instruction on one line
    without a trailing colon, an empty input as `<noinput>`."""
    shown = _SPACES.sub(" ", instruction).strip().rstrip(":")
    return (f"{number}. Instruction: {shown}\n"
            f"{number}. Input:\n{input if input.strip() else ALPACA_NO_INPUT}\n"
            f"{number}. Output:\n{output}")


def format_tasks_alpaca(tasks: list[tuple[str, str, str]]) -> str:
    """The demonstrations of an Alpaca-format prompt, each after a `###` line, then the completion cue: a closing
    `###` and `<k+1>. Instruction:`, which the model goes on from."""
    blocks = "".join(f"{SEPARATOR}\n{format_task_alpaca(i + 1, *t)}\n" for i, t in enumerate(tasks))
    return blocks + f"{SEPARATOR}\n{alpaca_cue(len(tasks) + 1)}"


def alpaca_cue(number: int) -> str:
    """The completion cue of an Alpaca-format prompt; the reply continues it, so it is put back before parsing."""
    return f"{number}. Instruction:"


def _clean_field(text: str) -> str:
    """The text of one field up to a separator line (anything after it is chatter), stripped."""
    m = _SEPARATOR_LINE.search(text)
    if m is not None:
        text = text[: m.start()]
    return text.strip().removeprefix("**").removesuffix("**").strip()


def _finish(raw: dict[str, Any]) -> Task | Rejected:
    """A task from its fields, or the reason it is not one."""
    text = raw["text"]
    instruction = _SPACES.sub(" ", raw.get("instruction") or "").strip()
    if not instruction:
        return Rejected("no instruction", text)
    if "output" not in raw:
        return Rejected("no output", text)
    output = raw["output"].strip()
    if not output:
        return Rejected("empty output", text)
    input_ = (raw.get("input") or "").strip()
    if is_no_input(input_):
        input_ = ""
    return Task(instruction=instruction, input=input_, output=output, number=raw.get("number"))


def parse_reply(text: str, finish_reason: str | None = None) -> ParseResult:
    """The tasks of a numbered-list reply, in order; the rejected items with their reasons.

    A header whose field comes at or before the current item's last field (e.g. a second `出力:`) starts a new item,
    so a missing `指示:` header makes one rejected item instead of gluing two tasks together. When `finish_reason`
    is "length" the last item is dropped as "truncated".
    """
    headers = list(_HEADER.finditer(text))
    items: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    last_order = -1
    for i, m in enumerate(headers):
        kind = _LABELS[m.group("label").lower()]
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        if current is None or _ORDER[kind] <= last_order:
            current = {"start": m.start()}
            items.append(current)
        current[kind] = _clean_field(text[m.end():end])
        current["end"] = end
        if m.group("num") and current.get("number") is None:
            current["number"] = int(m.group("num"))  # int() reads full-width digits too
        last_order = _ORDER[kind]
    result = ParseResult()
    for j, raw in enumerate(items):
        raw["text"] = text[raw["start"]: raw["end"]].strip()
        if j == len(items) - 1 and finish_reason == "length":
            result.rejected.append(Rejected("truncated", raw["text"]))
            continue
        parsed = _finish(raw)
        (result.tasks if isinstance(parsed, Task) else result.rejected).append(parsed)  # type: ignore[arg-type]
    return result


def parse_json_reply(reply: str | dict[str, Any], finish_reason: str | None = None) -> ParseResult:
    """The tasks of a structured-mode reply (`{"tasks": [...]}`, text or already parsed).

    A reply cut off at max_tokens is not valid JSON; it yields one rejected "truncated" item (or "not json").
    """
    if isinstance(reply, str):
        try:
            obj = json.loads(reply)
        except json.JSONDecodeError:
            reason = "truncated" if finish_reason == "length" else "not json"
            return ParseResult(rejected=[Rejected(reason, reply)])
    else:
        obj = reply
    items = obj.get("tasks") if isinstance(obj, dict) else None
    if not isinstance(items, list):
        return ParseResult(rejected=[Rejected("no task list", json.dumps(obj, ensure_ascii=False))])
    result = ParseResult()
    for item in items:
        shown = json.dumps(item, ensure_ascii=False)
        if not isinstance(item, dict) or not all(isinstance(item.get(k, ""), str) for k in _ORDER):
            result.rejected.append(Rejected("not a task", shown))
            continue
        raw = {k: item[k] for k in _ORDER if k in item} | {"text": shown}
        parsed = _finish(raw)
        (result.tasks if isinstance(parsed, Task) else result.rejected).append(parsed)  # type: ignore[arg-type]
    return result
