"""Reading self-instruct replies: numbered lists in their many shapes, structured JSON, truncation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinstruct.generate.self_instruct_format import (
    NO_INPUT,
    TASKS_SCHEMA,
    Task,
    format_task,
    format_tasks,
    is_no_input,
    parse_json_reply,
    parse_reply,
    tasks_schema,
)

CLEAN = """###
4. 指示: 次の文を敬語に書き換えてください。
4. 入力:
明日は休みます。
4. 出力:
明日はお休みをいただきます。
###
5. 指示: 日本でいちばん高い山は何ですか？
5. 入力:
<入力なし>
5. 出力:
富士山です。標高は3776メートルです。
###
6. 指示: 次の数を大きい順に並べてください。
6. 入力:
3, 10, 7
6. 出力:
10, 7, 3
###
"""


def triples(result):
    return [(t.number, t.instruction, t.input, t.output) for t in result.tasks]


def test_clean_list_parses_in_order_with_numbers():
    result = parse_reply(CLEAN, "stop")
    assert triples(result) == [
        (4, "次の文を敬語に書き換えてください。", "明日は休みます。", "明日はお休みをいただきます。"),
        (5, "日本でいちばん高い山は何ですか？", "", "富士山です。標高は3776メートルです。"),
        (6, "次の数を大きい順に並べてください。", "3, 10, 7", "10, 7, 3"),
    ]
    assert result.rejected == []


def test_full_width_digits_and_punctuation():
    text = "４．指示：俳句を一つ作ってください。\n４．入力：\n＜入力なし＞\n４．出力：\n古池や\n蛙飛び込む\n水の音\n###\n" \
           "１２）指示：「猫」を使って文を作って。\n１２）入力：\n<入力なし>\n１２）出力：\n猫が縁側で眠っている。"
    result = parse_reply(text)
    assert triples(result) == [
        (4, "俳句を一つ作ってください。", "", "古池や\n蛙飛び込む\n水の音"),
        (12, "「猫」を使って文を作って。", "", "猫が縁側で眠っている。"),
    ]


def test_content_keeps_its_full_width_characters():
    text = "4. 指示: ＡＢＣを１２３に置き換えて！\n4. 入力:\nＡＢＣ\n4. 出力:\n１２３"
    (task,) = parse_reply(text).tasks
    assert (task.instruction, task.input, task.output) == ("ＡＢＣを１２３に置き換えて！", "ＡＢＣ", "１２３")


def test_missing_numbers_and_english_labels():
    text = "指示: 次の単語の反対語を答えてください。\n入力: 高い\n出力: 低い\n###\n" \
           "Instruction: 季節を一つ挙げて。\nInput:\n<noinput>\nOutput:\n春"
    result = parse_reply(text)
    assert triples(result) == [(None, "次の単語の反対語を答えてください。", "高い", "低い"), (None, "季節を一つ挙げて。", "", "春")]


def test_chatter_before_the_list_and_after_a_separator_is_dropped():
    text = "はい、続きを書きます。以下をご覧ください。\n\n" + CLEAN + "以上です。ほかにも必要ならお知らせください。\n"
    result = parse_reply(text)
    assert [t.number for t in result.tasks] == [4, 5, 6]
    assert result.tasks[-1].output == "10, 7, 3"
    assert result.rejected == []


def test_markdown_emphasis_around_headers():
    text = "**4. 指示:** 次の文の主語を答えてください。\n**4. 入力:**\n空が青い。\n**4. 出力:**\n空"
    assert triples(parse_reply(text)) == [(4, "次の文の主語を答えてください。", "空が青い。", "空")]


@pytest.mark.parametrize("marker", ["<入力なし>", "＜入力なし＞", "<noinput>", "<NoInput>", "入力なし", "(入力なし)", "なし", " ", ""])
def test_no_input_markers_become_empty(marker):
    assert is_no_input(marker)
    text = f"4. 指示: 挨拶をしてください。\n4. 入力:\n{marker}\n4. 出力:\nこんにちは。"
    assert parse_reply(text).tasks[0].input == ""


def test_real_inputs_are_not_markers():
    assert not is_no_input("なしの実")
    assert not is_no_input("入力なしでも動くプログラム")


def test_truncated_reply_drops_its_last_item_even_when_it_looks_complete():
    cut = parse_reply(CLEAN, "length")
    assert [t.number for t in cut.tasks] == [4, 5]
    assert [r.reason for r in cut.rejected] == ["truncated"]
    assert cut.rejected[0].text.startswith("6. 指示")
    mid = parse_reply(CLEAN[: CLEAN.index("6. 出力") + 3], "length")
    assert [t.number for t in mid.tasks] == [4, 5] and mid.rejected[0].reason == "truncated"
    assert [t.number for t in parse_reply(CLEAN, "stop").tasks] == [4, 5, 6]


def test_missing_instruction_header_is_one_rejected_item_not_two_glued_tasks():
    text = "4. 指示: 一つ目\n4. 入力:\n<入力なし>\n4. 出力:\nA\n###\n5. 入力:\n<入力なし>\n5. 出力:\nB\n###\n" \
           "6. 指示: 三つ目\n6. 出力:\nC"
    result = parse_reply(text)
    assert triples(result) == [(4, "一つ目", "", "A"), (6, "三つ目", "", "C")]
    assert [r.reason for r in result.rejected] == ["no instruction"]
    assert "5. 入力" in result.rejected[0].text


def test_items_without_output_or_with_empty_fields_are_rejected():
    text = "4. 指示: 出力がない\n4. 入力:\nx\n###\n5. 指示:\n5. 出力:\nY\n###\n6. 指示: 出力が空\n6. 出力:\n\n###\n"
    result = parse_reply(text)
    assert result.tasks == []
    assert [r.reason for r in result.rejected] == ["no output", "no instruction", "empty output"]


def test_instruction_whitespace_is_collapsed_outputs_keep_lines():
    text = "4. 指示: 二行に\n  わたる指示\n4. 入力:\n<入力なし>\n4. 出力:\n一行目\n\n三行目\n"
    (task,) = parse_reply(text).tasks
    assert task.instruction == "二行に わたる指示" and task.output == "一行目\n\n三行目"


def test_no_list_at_all():
    assert parse_reply("申し訳ありませんが、その依頼にはお応えできません。").tasks == []
    assert parse_reply("").rejected == []


def test_format_task_writes_the_no_input_marker():
    assert format_task(2, "挨拶して", "", "こんにちは") == "2. 指示: 挨拶して\n2. 入力:\n<入力なし>\n2. 出力:\nこんにちは"
    assert NO_INPUT in format_tasks([("a", "", "b")])
    shown = format_tasks([("a", "", "b"), ("c", "d", "e")], start=1)
    assert shown.startswith("###\n1. 指示: a") and shown.endswith("###\n") and "2. 入力:\nd" in shown


_text = st.text(alphabet=st.sampled_from(list("あいうえおかきくけこ日本語文章問題答えを作るABC123、。「」！？ ")), min_size=1,
                max_size=30).map(str.strip).filter(bool)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_text, st.one_of(st.just(""), _text), _text), min_size=1, max_size=6))
def test_formatted_tasks_parse_back(tasks):
    result = parse_reply(format_tasks(tasks, start=4), "stop")
    assert [(t.instruction, t.input, t.output) for t in result.tasks] == [
        (" ".join(i.split()), inp, out) for i, inp, out in tasks
    ]
    assert [t.number for t in result.tasks] == list(range(4, 4 + len(tasks)))


def test_json_reply_as_text_and_as_object():
    obj = {"tasks": [{"instruction": "春の季語を挙げて", "input": "<入力なし>", "output": "桜"},
                     {"instruction": " ", "input": "", "output": "x"},
                     {"instruction": "足し算", "input": "1+1", "output": ""}]}
    for reply in (obj, json.dumps(obj, ensure_ascii=False)):
        result = parse_json_reply(reply)
        assert result.tasks == [Task("春の季語を挙げて", "", "桜")]
        assert [r.reason for r in result.rejected] == ["no instruction", "empty output"]


def test_json_reply_cut_off_or_not_json():
    assert [r.reason for r in parse_json_reply('{"tasks": [{"instruction": "途中', "length").rejected] == ["truncated"]
    assert [r.reason for r in parse_json_reply("はい、どうぞ").rejected] == ["not json"]
    assert [r.reason for r in parse_json_reply({"items": []}).rejected] == ["no task list"]
    assert [r.reason for r in parse_json_reply({"tasks": ["文字列だけ"]}).rejected] == ["not a task"]


def test_tasks_schema_is_strict_and_validates_a_reply():
    import jsonschema

    jsonschema.validate({"tasks": [{"instruction": "a", "input": "", "output": "b"}]}, TASKS_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tasks": [{"instruction": "a", "output": "b"}]}, TASKS_SCHEMA)
    item = TASKS_SCHEMA["properties"]["tasks"]["items"]
    assert item["additionalProperties"] is False and set(item["required"]) == {"instruction", "input", "output"}
    assert "maxItems" not in TASKS_SCHEMA["properties"]["tasks"] and "maxLength" not in item["properties"]["output"]


def test_bounded_tasks_schema_for_weak_models():
    import jsonschema

    schema = tasks_schema(max_tasks=2, max_chars=5)
    jsonschema.validate({"tasks": [{"instruction": "短い指示", "input": "", "output": "はい"}]}, schema)
    for bad in ({"tasks": []}, {"tasks": [{"instruction": "a", "input": "", "output": "b"}] * 3},
                {"tasks": [{"instruction": "とても長い指示です", "input": "", "output": "b"}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
