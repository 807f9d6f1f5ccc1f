"""The filtering stage: filters then ROUGE-L dedup, the run's files, the dataset card, statistics and figures."""

from __future__ import annotations

import json
import warnings
import re
from pathlib import Path
from typing import Any

import pytest
from datasets import load_dataset
from jinstruct.filter.stats import (
    length_summary,
    lengths,
    nearest_seed_scores,
    plot_lengths,
    plot_predicate_objects,
    plot_rejections,
    plot_rouge_histogram,
    predicate_object,
    predicate_objects,
    rejection_table,
    top_predicate_objects,
)
from jinstruct.filter.stage import (
    FilterResult,
    filter_records,
    load_records,
    training_record,
    user_message,
    write_outputs,
)
from jinstruct.filter.heuristics import FilterParams
from jinstruct.io import DataError
from jinstruct.filter.rouge import rouge_l, tokenize
from jinstruct.train.qlora import load_examples
from matplotlib.figure import Figure

SEEDS = [
    {"id": "seed_task_0", "name": "capital", "instruction": "日本の首都はどこですか？",
     "instances": [{"input": "", "output": "東京です。"}], "is_classification": False},
    {"id": "seed_task_1", "name": "summary", "instruction": "次の文章を三行で要約してください。",
     "instances": [{"input": "…", "output": "…"}], "is_classification": False},
]


def rec(i: int, instruction: str, input: str = "", output: str = "はい、そのとおりです。", **extra: Any) -> dict[str, Any]:
    return {"id": f"si-{i:06d}", "instruction": instruction, "input": input, "output": output,
            "recipe": "self_instruct", "source": ["seed_task_0"], "model": "tiny", **extra}


RECORDS = [
    rec(1, "健康的な生活を送るための五つのヒントを教えてください。", output="1. 早寝早起き 2. 野菜を食べる 3. 歩く"),
    rec(2, "日本の首都はどこですか", output="東京です。"),  # ROUGE-L with seed_task_0 > 0.7
    rec(3, "この画像に写っている動物を答えてください。", output="猫です。"),  # unsupported
    rec(4, "次の文を英語に翻訳してください。", input="私は学生です。", output="I am a student."),
    rec(5, "健康的な生活を送るための五つのヒントを教えて下さい。", output="よく寝ること。"),  # ROUGE-L with si-000001
    rec(6, "次の文を英語に翻訳してください。", input="私は学生です。", output="I'm a student."),  # exact duplicate
    rec(7, "俳句を一つ作ってください。", output="古池や蛙飛び込む水の音"),
    rec(8, "、句読点から始まる指示です。", output="はい。"),
    rec(9, "江戸時代の文化の特徴を三つ挙げてください。", output="浮世絵、歌舞伎、俳諧が栄えました。"),
]


@pytest.fixture
def result() -> FilterResult:
    return filter_records(RECORDS, SEEDS, FilterParams())


def test_filters_then_rouge_dedup_against_seeds_and_kept(result: FilterResult) -> None:
    assert [r["id"] for r in result.kept] == ["si-000001", "si-000004", "si-000007", "si-000009"]
    reasons = {r["id"]: r["reject_reason"] for r in result.rejected}
    assert reasons == {"si-000002": "rouge_duplicate", "si-000003": "unsupported_task",
                       "si-000005": "rouge_duplicate", "si-000006": "exact_duplicate",
                       "si-000008": "starts_with_punctuation"}
    details = {r["id"]: r["reject_detail"] for r in result.rejected}
    assert "seed_task_0" in details["si-000002"] and "si-000001" in details["si-000005"]
    assert result.reasons == {"unsupported_task": 1, "exact_duplicate": 1, "starts_with_punctuation": 1,
                              "rouge_duplicate": 2}
    assert (result.n_input, result.n_seeds, result.n_kept) == (9, 2, 4)
    # every rejected record keeps all its fields
    assert all(r["recipe"] == "self_instruct" and r["source"] == ["seed_task_0"] for r in result.rejected)


def test_records_rejected_by_a_heuristic_never_enter_the_rouge_pool() -> None:
    records = [rec(1, "この画像を説明してください。"), rec(2, "この文章を説明してください。")]
    result = filter_records(records, [], FilterParams())
    assert [r["id"] for r in result.kept] == ["si-000002"]  # si-000001 would have been its ROUGE-L duplicate


def test_rouge_settings_come_from_the_params() -> None:
    off = filter_records(RECORDS, SEEDS, FilterParams(rouge_dedup=False))
    assert "rouge_duplicate" not in off.reasons and off.n_kept == 6
    strict = filter_records(RECORDS, SEEDS, FilterParams(rouge_threshold=0.3, rouge_tokens="word"))
    assert strict.n_kept < 4


def test_plain_string_seeds() -> None:
    result = filter_records(RECORDS[:2], ["日本の首都はどこですか？"], FilterParams())
    assert "seed-0" in result.rejected[0]["reject_detail"]


def test_bad_records_name_position_and_field(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        filter_records([rec(1, "日本の首都は？"), {"id": "x", "instruction": 5, "output": "a"}], [], source="gen.jsonl")
    assert (err.value.path, err.value.line, err.value.field) == ("gen.jsonl", 2, "instruction")
    path = tmp_path / "generated.jsonl"
    path.write_text(json.dumps(rec(1, "日本の首都は？"), ensure_ascii=False) + "\n" + '{"id": "y", "instruction": "a"}\n',
                    encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_records(path)
    assert (err.value.line, err.value.field) == (2, "output")


def test_training_record_joins_instruction_and_input() -> None:
    assert user_message("次の文を英語に翻訳してください。", "私は学生です。") == "次の文を英語に翻訳してください。\n\n私は学生です。"
    assert user_message("俳句を一つ作ってください。 ", "  ") == "俳句を一つ作ってください。"
    t = training_record(RECORDS[3])
    assert t["messages"] == [
        {"role": "user", "content": "次の文を英語に翻訳してください。\n\n私は学生です。"},
        {"role": "assistant", "content": "I am a student."},
    ]
    assert (t["id"], t["instruction"], t["input"]) == ("si-000004", "次の文を英語に翻訳してください。", "私は学生です。")


def test_write_outputs_files_load_as_datasets(result: FilterResult, tmp_path: Path) -> None:
    paths = write_outputs(result, tmp_path / "data")
    assert {p.name for p in paths.values()} == {"filtered.jsonl", "rejected.jsonl", "train.jsonl", "dataset_card.md"}
    filtered = load_dataset("json", data_files=str(paths["filtered"]), split="train")
    assert filtered["id"] == ["si-000001", "si-000004", "si-000007", "si-000009"]
    rejected = load_dataset("json", data_files=str(paths["rejected"]), split="train")
    assert sorted(rejected["reject_reason"]) == sorted(r["reject_reason"] for r in result.rejected)
    train = load_dataset("json", data_files=str(paths["train"]), split="train")
    assert len(train) == 4 and train[1]["messages"][0]["content"].endswith("私は学生です。")
    assert [m["role"] for m in train[0]["messages"]] == ["user", "assistant"]
    # the training stage reads it with both of its templates
    chat = load_examples(paths["train"], "chat")
    assert chat[0]["completion"] == [{"role": "assistant", "content": RECORDS[0]["output"]}]
    alpaca = load_examples(paths["train"], "alpaca_ja")
    assert "### 入力:\n私は学生です。" in alpaca[1]["prompt"]


def test_dataset_card_has_counts_reasons_and_lengths(result: FilterResult, tmp_path: Path) -> None:
    card = write_outputs(result, tmp_path)["card"].read_text(encoding="utf-8")
    card = re.sub(r" {2,}", " ", card)  # table cells are padded to align; compare their contents
    assert card.startswith("---\nlanguage:\n- ja\n")
    assert "4 instruction records kept of 9 (44.4% kept)" in card
    assert "| rouge_duplicate | 2 | 22.2% |" in card
    assert "| exact_duplicate | 1 | 11.1% |" in card
    assert "| kept | 4 | 44.4% |" in card
    assert "| instruction |" in card and "| output |" in card
    assert re.search(r"\| instruction \| 4 \| 0 \| \d+\.\d \|", card), "counts as integers, lengths to 0.1"
    assert "followed by a blank line and the input" in card
    assert '"rouge_threshold": 0.7' in card


def test_outputs_are_replaced_whole(result: FilterResult, tmp_path: Path) -> None:
    write_outputs(result, tmp_path)
    smaller = filter_records(RECORDS[:1], [], FilterParams())
    write_outputs(smaller, tmp_path)
    assert len((tmp_path / "filtered.jsonl").read_text(encoding="utf-8").splitlines()) == 1
    assert (tmp_path / "rejected.jsonl").read_text(encoding="utf-8") == ""
    assert not list(tmp_path.glob(".*.tmp"))


# --- statistics ---------------------------------------------------------------------------------------------------


def test_rejection_table(result: FilterResult) -> None:
    table = rejection_table(result)
    assert table["reason"].tolist() == ["starts_with_punctuation", "unsupported_task", "exact_duplicate",
                                        "rouge_duplicate", "kept"]  # the order they are checked in
    assert table["count"].tolist() == [1, 1, 1, 2, 4]
    assert table["share"].sum() == pytest.approx(1.0)


def test_lengths_and_summary() -> None:
    records = [rec(1, "ＡＢＣ", input="", output="あいう"), rec(2, "日本語です", input="入力", output="x" * 10)]
    df = lengths(records)
    assert df[["instruction", "input", "output"]].values.tolist() == [[3, 0, 3], [5, 2, 10]]
    summary = length_summary(records)
    assert summary.loc["instruction", "mean"] == 4.0 and summary.loc["output", "max"] == 10
    assert summary.loc["input", "empty"] == 1 and summary.loc["input", "records"] == 2


def test_nearest_seed_scores_are_exact() -> None:
    records = RECORDS[:5]
    df = nearest_seed_scores(records, SEEDS)
    for row, r in zip(df.itertuples(), records):
        scores = [rouge_l(tokenize(r["instruction"]), tokenize(s["instruction"])) for s in SEEDS]
        assert row.rouge_l == max(scores)
        assert row.nearest_seed_id == SEEDS[scores.index(max(scores))]["id"]
    assert df.loc[1, "nearest_seed_id"] == "seed_task_0" and df.loc[1, "rouge_l"] > 0.9
    word = nearest_seed_scores(records, [s["instruction"] for s in SEEDS], tokens="word")
    assert word.loc[1, "nearest_seed_id"] == "seed-0"


@pytest.mark.parametrize("instruction,pair", [
    ("次の文章を読んで、その内容を要約してください。", ("要約する", "内容")),
    ("健康的な生活を送るための5つのヒントを教えてください。", ("教える", "ヒント")),
    ("メールの書き方を簡単に教えて。", ("教える", "書き方")),
    ("俳句を一つ作ってください。季語は桜です。", ("作る", "俳句")),
    ("あなたは探偵です。この事件を推理してください。", ("推理する", "事件")),
    ("次の英文を自然な日本語に訳してください。", ("訳す", "英文")),
    ("以下の文が肯定的か否定的かを判定してください。", ("判定する", None)),
    ("日本の首都はどこですか？", (None, None)),
])
def test_predicate_and_object(instruction: str, pair: tuple[str | None, str | None]) -> None:
    assert predicate_object(instruction) == pair


def test_top_predicate_objects() -> None:
    texts = ["江戸時代の文化を説明してください。"] * 3 + ["光合成の仕組みを説明してください。"] * 2 + \
            ["地震について説明してください。", "俳句を作ってください。", "日本の首都は？"]
    pairs = predicate_objects(texts)
    assert pairs["predicate"].isna().sum() == 1
    top = top_predicate_objects(pairs, n_predicates=1, n_objects=1)
    assert top.values.tolist() == [["説明する", "文化", 3, 6]]
    top = top_predicate_objects(pairs)
    assert top[["predicate", "object", "count"]].values.tolist() == [
        ["説明する", "文化", 3], ["説明する", "仕組み", 2], ["作る", "俳句", 1]]


def test_figures_render_japanese_without_missing_glyphs(result: FilterResult, tmp_path: Path) -> None:
    pairs = predicate_objects([r["instruction"] for r in RECORDS])
    figures = [
        plot_rejections(rejection_table(result)),
        plot_lengths(lengths(RECORDS)),
        plot_rouge_histogram(nearest_seed_scores(RECORDS, SEEDS), threshold=0.7),
        plot_predicate_objects(top_predicate_objects(pairs)),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font" would be a warning
        for i, fig in enumerate(figures):
            assert isinstance(fig, Figure)
            fig.savefig(tmp_path / f"{i}.png")
    texts = [t.get_text() for t in figures[0].axes[0].get_yticklabels()]
    assert "採用" in texts and figures[0].axes[0].get_title() == "フィルタの結果 (理由別)"


def test_statistics_and_figures_of_an_empty_result() -> None:
    empty = filter_records([], [], FilterParams())
    assert rejection_table(empty).values.tolist() == [["kept", 0, 0.0]]
    assert length_summary([]).loc["output", "records"] == 0
    assert nearest_seed_scores([], SEEDS).empty
    assert top_predicate_objects(predicate_objects([])).empty
    for fig in (plot_rejections(rejection_table(empty)), plot_lengths(lengths([])),
                plot_predicate_objects(top_predicate_objects(predicate_objects(["日本の首都は？"])))):
        assert isinstance(fig, Figure)
