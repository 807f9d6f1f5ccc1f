"""Machine translation of seed tasks: protected spans masked and restored, replies checked, failures kept out."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jinstruct.formats.seed_task import SeedTask
from jinstruct.seeds.translate import (
    DEFAULT_PROMPT,
    load_prompt,
    mask_spans,
    mask_task,
    restore_spans,
    translate_seed_tasks,
    translation_requests,
)


@dataclass
class FakeResult:
    """The attributes of the client's ChatResult that translation reads."""

    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str | None] = field(default_factory=lambda: ["stop"])
    error: str | None = None
    parsed_obj: Any = None

    @property
    def text(self) -> str:
        return self.texts[0]

    @property
    def parsed(self) -> Any:
        return self.parsed_obj


def reply(obj: Any, finish: str = "stop") -> FakeResult:
    return FakeResult(texts=[json.dumps(obj, ensure_ascii=False)], finish_reasons=[finish], parsed_obj=obj)


class FakeClient:
    """Answers each request with `answer(masked task payload, request)`; records what it was asked."""

    def __init__(self, answer: Callable[[dict[str, Any], Any], FakeResult], prompt: str | None = None):
        self.answer = answer
        self.prompt = prompt
        self.requests: list[Any] = []
        self.descs: list[str] = []

    def chat_many(self, requests: Sequence[Any], desc: str = "") -> list[FakeResult]:
        self.requests += list(requests)
        self.descs.append(desc)
        return [self.answer(sent_payload(r, self.prompt), r) for r in requests]


def sent_payload(request: Any, prompt: str | None = None) -> dict[str, Any]:
    content = request.messages[-1]["content"]
    prompt = load_prompt() if prompt is None else prompt
    assert content.startswith(prompt + "\n\n")
    return json.loads(content[len(prompt) + 2 :])


def prefix_translator(payload: dict[str, Any], _request: Any) -> FakeResult:
    """'Translates' by prefixing every non-empty field with 訳: and keeping the markers: the happy path."""

    def tr(s: str) -> str:
        return "訳:" + s if s else s

    return reply(
        {
            "instruction": tr(payload["instruction"]),
            "instances": [{"input": tr(i["input"]), "output": tr(i["output"])} for i in payload["instances"]],
        }
    )


def task(i: int = 0, instruction: str = "Say hello.", instances: list[dict[str, str]] | None = None) -> SeedTask:
    return SeedTask(
        id=f"seed_task_{i}",
        name=f"task_{i}",
        instruction=instruction,
        instances=instances or [{"input": "", "output": "Hello there, my friend."}],  # type: ignore[list-item]
        is_classification=False,
    )


EMAIL = task(
    1,
    "Write a short email to {name} about the meeting at <URL> on June 20, 2023.",
    [
        {
            "input": "Use `send_mail()` and see https://example.com/docs?id=7.\n```python\nprint(1 + 2)\n```",
            "output": "Hi {name}, the meeting is at 10:30 in room 4. Reply to team@example.org.",
        }
    ],
)


def test_mask_spans_replaces_each_protected_kind() -> None:
    masked, spans = mask_spans(EMAIL.instances[0].input + " " + EMAIL.instances[0].output)
    assert spans == [
        "`send_mail()`",
        "https://example.com/docs?id=7",
        "```python\nprint(1 + 2)\n```",
        "{name}",
        "10:30",
        "4",
        "team@example.org",
    ]
    assert masked == "Use ⟦0⟧ and see ⟦1⟧.\n⟦2⟧ Hi ⟦3⟧, the meeting is at ⟦4⟧ in room ⟦5⟧. Reply to ⟦6⟧."
    masked, spans = mask_spans("Price: 1,000 yen (or 3.5 dollars); 1e6 and mp3 <URL> {3,12,7}", start=10)
    assert spans == ["1,000", "3.5", "1", "<URL>", "{3,12,7}"]
    assert masked.startswith("Price: ⟦10⟧ yen (or ⟦11⟧ dollars); ⟦12⟧e6 and mp3 ⟦13⟧ ⟦14⟧")


PIECES = list("ab 1,./:{}<>`\n⟦⟧@xyz-_h") + ["https://", "```", "⟦1⟧", "⟦ ２ ⟧", "{name}", "<URL>", "3.14"]


@given(st.lists(st.sampled_from(PIECES)).map("".join) | st.text())
def test_restore_undoes_mask_for_any_text(text: str) -> None:
    masked, spans = mask_spans(text)
    restored, seen = restore_spans(masked, dict(enumerate(spans)))
    assert restored == text
    assert seen == {k: 1 for k in range(len(spans))}


def test_restore_accepts_loose_markers_and_counts() -> None:
    text, seen = restore_spans("A⟦ 1 ⟧ B⟦０⟧ C⟦1⟧ D⟦9⟧", {0: "{x}", 1: "42"})
    assert text == "A42 B{x} C42 D⟦9⟧"
    assert seen == {1: 2, 0: 1, 9: 1}


def test_requests_carry_prompt_masked_task_and_schema() -> None:
    reqs = translation_requests([EMAIL, task(2)])
    assert [r.tag for r in reqs] == ["seed_task_1", "seed_task_2"]
    r = reqs[0]
    payload = sent_payload(r)
    assert payload == mask_task(EMAIL).payload()
    assert "{name}" not in json.dumps(payload) and "⟦0⟧" in payload["instruction"]
    assert r.temperature == 0.0
    schema = r.json_schema
    assert schema["required"] == ["instruction", "instances"]
    assert schema["properties"]["instances"]["minItems"] == schema["properties"]["instances"]["maxItems"] == 1
    assert r.max_tokens == 256 + len(r.messages[0]["content"]) - len(load_prompt()) - 2
    assert "maxLength" not in json.dumps(schema)  # OpenAI strict mode rejects it: only on request
    capped = translation_requests([EMAIL], max_tokens=99, model="gpt-x", max_field_chars=40)[0]
    assert (capped.max_tokens, capped.model) == (99, "gpt-x")
    props = capped.json_schema["properties"]
    assert props["instruction"]["maxLength"] == 40
    assert props["instances"]["items"]["properties"]["output"] == {"type": "string", "maxLength": 40}


def test_translation_restores_protected_spans() -> None:
    def japanese(payload: dict[str, Any], _r: Any) -> FakeResult:
        ins = payload["instruction"]  # "Write a short email to ⟦0⟧ about the meeting at ⟦1⟧ on June ⟦2⟧, ⟦3⟧."
        assert ins == "Write a short email to ⟦0⟧ about the meeting at ⟦1⟧ on June ⟦2⟧, ⟦3⟧."
        return reply(
            {
                # markers moved (Japanese word order) and one written with full-width digits
                "instruction": "⟦３⟧年6月⟦2⟧日の⟦1⟧での会議について、⟦0⟧さんに短いメールを書いてください。",
                "instances": [
                    {
                        "input": "⟦4⟧を使い、⟦5⟧を参照してください。\n⟦6⟧",
                        "output": "⟦7⟧さん、会議は⟦8⟧に⟦9⟧号室です。返信は⟦10⟧へ。",
                    }
                ],
            }
        )

    client = FakeClient(japanese)
    out = translate_seed_tasks([EMAIL], client, desc="seeds")
    assert out.reports[0].status == "ok" and out.reports[0].problems == []
    (t,) = out.tasks
    assert t.instruction == "2023年6月20日の<URL>での会議について、{name}さんに短いメールを書いてください。"
    assert t.instances[0].input == (
        "`send_mail()`を使い、https://example.com/docs?id=7を参照してください。\n```python\nprint(1 + 2)\n```"
    )
    assert t.instances[0].output == "{name}さん、会議は10:30に4号室です。返信はteam@example.orgへ。"
    assert (t.id, t.name, t.is_classification) == (EMAIL.id, EMAIL.name, EMAIL.is_classification)
    assert client.descs == ["seeds"]


def test_structure_is_kept_for_every_instance() -> None:
    many = task(
        3,
        "Classify the sentiment.",
        [{"input": "I love it.", "output": "positive"}, {"input": "Awful, 2 stars.", "output": "negative"}],
    )
    out = translate_seed_tasks([many, task(4)], FakeClient(prefix_translator))
    assert [r.status for r in out.reports] == ["ok", "ok"]
    assert out.tasks[0].instances[1].input == "訳:Awful, 2 stars."
    assert out.tasks[1].instances[0].input == ""  # empty input stays empty
    assert out.table().to_dict("records") == [
        {"task_id": "seed_task_3", "status": "ok", "problems": ""},
        {"task_id": "seed_task_4", "status": "ok", "problems": ""},
    ]


def test_a_reply_that_drops_a_placeholder_is_flagged_and_kept() -> None:
    def drops_name(payload: dict[str, Any], r: Any) -> FakeResult:
        good = prefix_translator(payload, r).parsed_obj
        good["instruction"] = "会議について⟦1⟧のメールを、June ⟦2⟧, ⟦3⟧に書いてください。"  # ⟦0⟧ = {name} dropped
        return reply(good)

    out = translate_seed_tasks([EMAIL], FakeClient(drops_name))
    (report,) = out.reports
    assert report.status == "flagged"
    assert report.problems == ["instruction: lost '{name}'"]
    assert out.tasks[0].instruction == "会議について<URL>のメールを、June 20, 2023に書いてください。"
    assert out.flagged == [report] and out.failed == []
    assert out.problems() == {"seed_task_1": ["instruction: lost '{name}'"]}


def test_repeated_moved_and_unknown_markers_are_flagged() -> None:
    def scrambled(payload: dict[str, Any], r: Any) -> FakeResult:
        good = prefix_translator(payload, r).parsed_obj
        good["instances"][0]["output"] = "⟦7⟧ ⟦7⟧ ⟦8⟧ ⟦9⟧ ⟦10⟧ ⟦0⟧ ⟦42⟧ さん"
        return reply(good)

    out = translate_seed_tasks([EMAIL], FakeClient(scrambled))
    assert out.reports[0].problems == [
        "instances.0.output: '{name}' appears 2 times",
        "instances.0.output: holds '{name}', which belongs to instruction",
        "instances.0.output: unknown marker ⟦42⟧ left in",
    ]
    assert out.tasks[0].instances[0].output == "{name} {name} 10:30 4 team@example.org {name} ⟦42⟧ さん"


def test_emptied_added_and_untranslated_fields_are_flagged() -> None:
    def sloppy(payload: dict[str, Any], _r: Any) -> FakeResult:
        return reply(
            {
                "instruction": "挨拶してください。",
                "instances": [{"input": "余計な入力", "output": "Hello there, my friend."}],
            }
        )

    out = translate_seed_tasks([task(5)], FakeClient(sloppy))
    assert out.reports[0].problems == [
        "instances.0.input: the English is empty, the translation is not",
        "instances.0.output: no Japanese in the translation (left untranslated?)",
    ]

    def empty_output(payload: dict[str, Any], _r: Any) -> FakeResult:
        return reply({"instruction": "挨拶してください。", "instances": [{"input": "", "output": ""}]})

    out = translate_seed_tasks([task(6)], FakeClient(empty_output))
    assert out.reports[0].status == "flagged"
    assert out.reports[0].problems == ["instances.0.output: empty, but the English is not"]


@pytest.mark.parametrize(
    ("result", "why"),
    [
        (FakeResult(error="HTTP 500 after 6 retries"), "request failed: HTTP 500 after 6 retries"),
        (
            reply({"instruction": "途中", "instances": [{"input": "", "output": "…"}]}, finish="length"),
            "reply cut off at max_tokens",
        ),
        (FakeResult(texts=["ごめんなさい、翻訳できません"]), "reply is not JSON"),
        (reply({"instruction": "訳", "instances": []}), "reply has 0 instances, the task 1"),
        (reply({"instruction": "訳"}), "reply is not a task: instances: Field required"),
        (
            reply({"instruction": "訳", "instances": [{"input": "", "output": "x", "note": "?"}]}),
            "reply is not a task: instances.0.note",
        ),
        (
            reply({"instruction": "  ", "instances": [{"input": "", "output": "こんにちは"}]}),
            "the translated instruction is empty",
        ),
    ],
)
def test_failed_translations_are_reported_and_kept_out(result: FakeResult, why: str) -> None:
    tasks = [task(7), task(8)]
    client = FakeClient(lambda p, r: result if r.tag == "seed_task_7" else prefix_translator(p, r))
    out = translate_seed_tasks(tasks, client)
    assert [t.id for t in out.tasks] == ["seed_task_8"]
    assert [(r.task_id, r.status) for r in out.reports] == [("seed_task_7", "failed"), ("seed_task_8", "ok")]
    assert out.reports[0].problems[0].startswith(why)
    assert out.reports[0].reply == (result.texts[0] if result.texts else None)


def test_reply_text_is_read_when_the_endpoint_gave_no_parsed_object() -> None:
    def text_only(payload: dict[str, Any], r: Any) -> FakeResult:
        good = prefix_translator(payload, r)
        return FakeResult(texts=good.texts)

    out = translate_seed_tasks([task(9)], FakeClient(text_only))
    assert out.tasks[0].instances[0].output == "訳:Hello there, my friend."


def test_text_with_marker_brackets_survives() -> None:
    odd = task(10, "Explain the notation ⟦x⟧ and ⟦1⟧ in 2 lines.")
    out = translate_seed_tasks([odd], FakeClient(prefix_translator))
    assert out.reports[0].status == "ok"
    assert out.tasks[0].instruction == "訳:Explain the notation ⟦x⟧ and ⟦1⟧ in 2 lines."


def test_an_edited_prompt_file_is_used(tmp_path: Path) -> None:
    prompt = tmp_path / "my_prompt.txt"
    prompt.write_text("Translate into Japanese, politely.\n", encoding="utf-8")
    client = FakeClient(prefix_translator, prompt="Translate into Japanese, politely.")
    out = translate_seed_tasks([task(11)], client, prompt_path=prompt)
    assert out.reports[0].status == "ok"
    assert client.requests[0].messages[0]["content"].startswith("Translate into Japanese, politely.\n\n{")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="prompt is empty"):
        translate_seed_tasks([task(11)], client, prompt_path=empty)


def test_default_prompt_mentions_markers_and_structure() -> None:
    text = DEFAULT_PROMPT.read_text(encoding="utf-8")
    assert "⟦0⟧" in text and '"instances"' in text and "input" in text


def test_through_the_real_client_and_an_openai_compatible_app(tmp_path: Path) -> None:
    """The LLM client in-process against a small OpenAI-style app that translates by prefixing 訳:."""
    from fastapi import FastAPI

    from jinstruct.llm import EndpointSettings, LLMClient

    app = FastAPI()
    bodies: list[dict[str, Any]] = []

    @app.post("/v1/chat/completions")
    def complete(body: dict[str, Any]) -> dict[str, Any]:
        bodies.append(body)
        request = type("R", (), {"messages": body["messages"]})()
        text = prefix_translator(sent_payload(request), None).texts[0]
        return {
            "id": f"c{len(bodies)}",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }

    settings = EndpointSettings(base_url="http://fake.test/v1", model="fake-model", api_key_env=None)
    client = LLMClient(
        settings, tmp_path / "cache.sqlite3", stage="translate", run_dir=tmp_path / "run", progress=False, asgi_app=app
    )
    try:
        out = translate_seed_tasks([EMAIL, task(12)], client)
        again = translate_seed_tasks([EMAIL, task(12)], client)  # answered from the cache
    finally:
        client.close()
    assert [r.status for r in out.reports] == ["ok", "ok"]
    assert out.tasks[0].instruction == "訳:" + EMAIL.instruction
    assert out.tasks[0].instances[0].input == "訳:" + EMAIL.instances[0].input
    assert again.tasks == out.tasks and len(bodies) == 2
    sent = bodies[0]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"]["properties"]["instances"]["maxItems"] == 1
    assert bodies[0]["temperature"] == 0.0
