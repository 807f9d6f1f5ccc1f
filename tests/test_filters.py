"""Heuristic filters for generated Japanese instructions: one test per filter, each with cases it must pass."""

from __future__ import annotations

from typing import Any

import pytest
from jinstruct.filter.heuristics import (
    REASONS,
    FilterParams,
    Filters,
    check_record,
    japanese_share,
    prompt_phrases,
    split,
    unsupported_word,
)
from pydantic import ValidationError

PARAMS = FilterParams()
GOOD_OUTPUT = "東京です。日本の政治と経済の中心であり、人口も最も多い都市です。"


def rec(instruction: str = "日本の首都について説明してください。", input: str = "", output: str = GOOD_OUTPUT,
        **extra: Any) -> dict[str, Any]:
    return {"id": "x", "instruction": instruction, "input": input, "output": output, **extra}


def reason(record: dict[str, Any], params: FilterParams = PARAMS) -> str | None:
    rejection = check_record(record, params)
    return None if rejection is None else rejection.reason


def test_a_good_record_passes() -> None:
    assert check_record(rec(), PARAMS) is None
    assert check_record(rec("次の文章を三行で要約してください。", input="昔々、ある村に…", output="村の話。"), PARAMS) is None


def test_empty_instruction_or_output() -> None:
    assert reason(rec(instruction="  ")) == "empty_instruction"
    assert reason(rec(output="")) == "empty_output"
    assert reason(rec(output=None)) == "empty_output"  # type: ignore[arg-type]


def test_lengths_in_characters_are_configurable() -> None:
    assert reason(rec(instruction="説明して")) == "instruction_too_short"
    assert reason(rec(instruction="説明して"), FilterParams(min_instruction_chars=4)) is None
    assert reason(rec(instruction="日本の首都について" * 50 + "説明してください。")) == "instruction_too_long"
    assert reason(rec(output="あ" * 2001)) == "output_too_long"
    assert reason(rec(output="はい"), FilterParams(min_output_chars=3)) == "output_too_short"
    detail = check_record(rec(instruction="説明して"), PARAMS).detail  # type: ignore[union-attr]
    assert "4 < 5" in detail


def test_full_width_text_is_counted_after_nfkc() -> None:
    assert reason(rec(instruction="ＡＢＣＤを説明して")) is None  # 9 characters either way


@pytest.mark.parametrize("instruction", ["、日本の首都はどこですか？", "「日本」の首都はどこですか？", "!日本の首都はどこですか",
                                         "？日本の首都はどこですか"])
def test_starts_with_punctuation(instruction: str) -> None:
    assert reason(rec(instruction=instruction)) == "starts_with_punctuation"


@pytest.mark.parametrize("instruction", ["1. 日本の首都はどこですか？", "１．日本の首都はどこですか？", "・日本の首都はどこですか？",
                                         "(2)日本の首都はどこですか？", "①日本の首都はどこですか？", "- 日本の首都はどこですか？",
                                         "三、日本の首都はどこですか？"])
def test_starts_with_a_list_marker(instruction: str) -> None:
    assert reason(rec(instruction=instruction)) == "starts_with_list_marker"


def test_a_leading_number_that_is_no_marker_passes() -> None:
    assert reason(rec(instruction="5つの県の県庁所在地を答えてください。")) is None
    assert reason(rec(instruction="2024年の出来事を三つ挙げてください。")) is None


@pytest.mark.parametrize("instruction,word", [
    ("この画像に写っているものを説明してください。", "画像"),
    ("下の図を見て答えてください。", "図"),
    ("猫の絵を描いてください。", "絵"),
    ("売上の推移をグラフにしてください。", "グラフ"),
    ("添付のファイルを要約してください。", "添付"),
    ("駅から学校までの地図を作ってください。", "地図"),
    ("次の音声を文字に起こしてください。", "音声"),
    ("料理の動画を作成してください。", "動画"),
    ("この写真の場所はどこですか？", "写真"),
    ("会社のロゴを描いて", "描い"),
    ("次のURLを開いて内容を教えて", "url"),
    ("Describe the image below in Japanese.", "image"),
    ("次の英語の指示に従って: draw a cat", "draw"),
])
def test_tasks_a_text_model_cannot_do(instruction: str, word: str) -> None:
    rejection = check_record(rec(instruction=instruction), FilterParams(min_japanese_share=0.0))
    assert rejection is not None and rejection.reason == "unsupported_task"
    assert unsupported_word(instruction, PARAMS) == word


@pytest.mark.parametrize("instruction", [
    "図書館で本を借りる方法を説明してください。",
    "彼の発言の意図を説明してください。",
    "地図記号の意味を三つ教えてください。",
    "絵文字を使って短い文を作ってください。",
    "日本の有名な写真家を三人挙げてください。",
    "音声学とは何か説明してください。",
    "動画配信サービスの長所と短所を挙げてください。",
    "問題の解決を図る方法を提案してください。",
    "合図を決めるときの注意点を教えてください。",
    "mapping という英単語の意味を説明してください。",
])
def test_no_false_positives_on_compounds(instruction: str) -> None:
    assert unsupported_word(instruction, PARAMS) is None
    assert reason(rec(instruction=instruction)) is None


def test_the_word_lists_are_configurable() -> None:
    params = FilterParams(unsupported_ja=["俳句"], unsupported_en=[], allowed_compounds=[])
    assert reason(rec(instruction="俳句を一つ作ってください。"), params) == "unsupported_task"
    assert reason(rec(instruction="下の図を見て答えてください。"), params) is None
    assert reason(rec(instruction="地図記号の意味を教えて"), FilterParams(allowed_compounds=[])) == "unsupported_task"


def test_too_little_japanese() -> None:
    assert japanese_share("日本語") == 1.0
    assert japanese_share("abcあ") == 0.25
    assert japanese_share("123!?") == 0.0
    assert reason(rec(instruction="Explain the capital of Japan.")) == "too_little_japanese"
    assert reason(rec(instruction="Pythonのlist comprehensionを説明して")) == "too_little_japanese"  # 9 of 30 letters
    assert reason(rec(instruction="Pythonのリスト内包表記を説明して")) is None
    assert reason(rec(output="The capital is Tokyo.")) is None  # outputs are not checked by default
    assert reason(rec(output="The capital is Tokyo."), FilterParams(min_japanese_share_output=0.3)) == \
        "too_little_japanese"


def test_input_equal_to_output() -> None:
    assert reason(rec(input="東京 は 日本の首都です。", output="東京は日本の首都です。")) == "input_equals_output"
    assert reason(rec(input="東京は日本の首都です。", output="東京は日本の首都です。"),
                  FilterParams(reject_input_equals_output=False)) is None
    assert reason(rec(input="", output="東京")) is None


def test_cut_off_output() -> None:
    assert reason(rec(finish_reason="length")) == "cut_off_output"
    assert reason(rec(truncated=True)) == "cut_off_output"
    assert reason(rec(output="日本の首都は東京で、政治と経済の中心です。人口も多く、交通網も発達していて、")) == "cut_off_output"
    assert reason(rec(output="東京と大阪の")) is None  # short answers are not judged by their last character
    assert reason(rec(output="東京です。" * 8)) is None
    assert reason(rec(finish_reason="stop")) is None
    assert reason(rec(finish_reason="length"), FilterParams(reject_cut_off=False)) is None


def test_copied_from_the_prompt_template() -> None:
    assert reason(rec(instruction="指示: 日本の首都はどこですか？")) == "copied_from_prompt"
    assert reason(rec(instruction="指示ごとに違う動詞を使い、同じ言い回しの繰り返しを避けてください。")) == "copied_from_prompt"
    assert reason(rec(instruction="<入力なし>について説明して")) == "copied_from_prompt"
    phrases = prompt_phrases("あなたには{total}個のタスクを作ってもらいます。\n1. 指示は日本語で書いてください。\n{demos}")
    assert phrases == ["個のタスクを作ってもらいます。", "指示は日本語で書いてください。"]
    params = FilterParams(template_phrases=phrases)
    assert reason(rec(instruction="指示は日本語で書いてください。"), params) == "copied_from_prompt"
    assert reason(rec(instruction="指示: 日本の首都はどこですか？"), params) is None


def test_exact_duplicates_after_normalization() -> None:
    filters = Filters()
    assert filters.check(rec(id="a")) is None
    dup = filters.check(rec(id="b", instruction=" 日本の首都について 説明してください。"))
    assert dup is not None and dup.reason == "exact_duplicate" and "a" in dup.detail
    assert filters.check(rec(id="c", input="大阪")) is None  # same instruction, other input
    assert filters.check(rec(id="d", instruction="日本の首都について説明してください。", input="大阪")) is not None
    assert Filters(FilterParams(reject_exact_duplicates=False)).check(rec()) is None


def test_a_filter_object_is_a_generation_task_filter() -> None:
    filters = Filters()
    assert filters({"instruction": "この画像を説明して", "input": "", "output": "猫です。"}) == "unsupported_task"
    assert filters({"instruction": "日本の首都はどこですか？", "input": "", "output": "東京です。"}) is None


def test_split_keeps_order_and_reasons() -> None:
    records = [rec(id="1"), rec(id="2", instruction="、何か教えてください"), rec(id="3", instruction="江戸時代について教えて"),
               rec(id="4")]
    passed, rejected = split(records)
    assert [r["id"] for r in passed] == ["1", "3"]
    assert [(r["id"], x.reason) for r, x in rejected] == [("2", "starts_with_punctuation"), ("4", "exact_duplicate")]
    assert {x.reason for _, x in rejected} <= set(REASONS)


def test_params_are_validated() -> None:
    with pytest.raises(ValidationError):
        FilterParams(min_japanese_share=1.5)
    with pytest.raises(ValidationError):
        FilterParams(rouge_tokens="bytes")
    with pytest.raises(ValidationError):
        FilterParams(no_such_setting=1)  # type: ignore[call-arg]
