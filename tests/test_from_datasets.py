"""Recipe from_datasets: each task template on small rows, the shipped sources, streaming with caps and sampling,
exact duplicates, errors that name the file, line and field, and the licence and revision reaching the dataset card."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from jinstruct.filter.heuristics import FilterParams
from jinstruct.filter.stage import dataset_card, filter_records, source_table
from jinstruct.formats.records import InstructionRecord
from jinstruct.generate.from_datasets import (
    FromDatasets,
    Source,
    build,
    load_templates,
    shipped_sources,
)
from jinstruct.generate.recipes import RECIPES
from jinstruct.io import DataError, read_jsonl, sha256_file
from jinstruct.paths import data_dir
from jinstruct.run.schema import load_config
from jinstruct.paths import configs_dir

TEMPLATES = load_templates()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def one_row_every_phrasing(tmp_path: Path, template: str, row: dict, **source) -> list[dict]:
    """The row copied once per phrasing (different ids, same content), each built with every phrasing: the records
    of phrasing k, for k = 0..n-1, found by building with enough seeds."""
    path = write_jsonl(tmp_path / f"{template}.jsonl", [row])
    n = len(TEMPLATES[template].phrasings)
    found: dict[int, dict] = {}
    for seed in range(200):
        out = tmp_path / "out.jsonl"
        build([Source(name="s", template=template, path=str(path), license="CC0-1.0", **source)], TEMPLATES, out,
              seed=seed, progress=False)
        [rec] = read_jsonl(out)
        found.setdefault(rec["phrasing"], rec)
        if len(found) == n:
            break
    assert sorted(found) == list(range(n)), f"seeds 0-199 never chose some phrasing of {template}"
    return [found[k] for k in range(n)]


CASES = [
    ("extractive_qa", {"title": "桜島", "context": "桜島は鹿児島湾にある火山で、今も噴煙を上げている。", "question": "桜島はどこにあるか。",
                       "answer": "鹿児島湾"}, {}, "鹿児島湾", ["桜島は鹿児島湾にある火山"]),
    ("nli", {"premise": "男性が犬と散歩している。", "hypothesis": "男性は外にいる。", "label": "entailment"}, {}, "含意",
     ["男性が犬と散歩している。", "男性は外にいる。"]),
    ("nli", {"sentence1": "男性が眠っている。", "sentence2": "男性は走っている。", "label": 1},
     {"fields": {"premise": "sentence1", "hypothesis": "sentence2"},
      "label_names": ["entailment", "contradiction", "neutral"]}, "矛盾", ["男性が眠っている。"]),
    ("sentiment", {"text": "とても使いやすい。", "label": "positive"}, {}, "ポジティブ", ["とても使いやすい。"]),
    ("sentiment", {"sentence": "すぐ壊れた。", "label": 1},
     {"fields": {"text": "sentence"}, "label_names": ["positive", "negative"]}, "ネガティブ", ["すぐ壊れた。"]),
    ("multiple_choice", {"question": "雨の日に使うものは？", "choices": ["傘", "扇子", "鍋", "枕", "靴下"], "label": 0}, {},
     "傘", ["雨の日に使うものは？"]),
    ("multiple_choice", {"q": "朝に飲むものは？", "choice0": "砂", "choice1": "石", "choice2": "牛乳", "choice3": "紙",
                         "choice4": "釘", "label": 2},
     {"fields": {"question": "q", "choices": ["choice0", "choice1", "choice2", "choice3", "choice4"]}}, "牛乳",
     ["朝に飲むものは？"]),
    ("translation_en_ja", {"en": "Good morning.", "ja": "おはようございます。"}, {}, "おはようございます。", ["Good morning."]),
    ("translation_ja_en", {"en": "Good morning.", "ja": "おはようございます。"}, {}, "Good morning.", ["おはようございます。"]),
    ("summarization", {"text": "今日は雨が降った。明日は晴れるらしい。", "summary": "雨のち晴れの予報。"}, {}, "雨のち晴れの予報。",
     ["今日は雨が降った。"]),
    ("instruction", {"instruction": "日本の首都を答えてください。", "input": "", "output": "東京です。"}, {}, "東京です。",
     ["日本の首都を答えてください。"]),
]


@pytest.mark.parametrize("template, row, source, output, shown", CASES, ids=[c[0] for c in CASES])
def test_each_template_turns_a_row_into_records(tmp_path, template, row, source, output, shown):
    records = one_row_every_phrasing(tmp_path, template, row, **source)
    for k, rec in enumerate(records):
        InstructionRecord.model_validate(rec)
        assert rec["output"] == output
        assert rec["recipe"] == "from_datasets" and rec["template"] == template and rec["phrasing"] == k
        assert rec["license"] == "CC0-1.0" and rec["source"]["row"] == 0
        assert rec["instruction"] and rec["instruction"] == rec["instruction"].strip()
        for text in shown:  # the row's content is in the instruction or the input of every phrasing
            assert text in rec["instruction"] + rec["input"]
    if template != "instruction":  # the phrasings ask in different words
        assert len({r["instruction"] for r in records}) == len(records)


def test_definition_template_both_ways_and_optional_reading(tmp_path):
    records = one_row_every_phrasing(tmp_path, "definition", {"word": "傘", "reading": "かさ",
                                                               "definition": "雨を防ぐ道具。"})
    assert records[0]["input"] == "傘（かさ）" and records[0]["output"] == "雨を防ぐ道具。"
    assert records[2]["input"] == "雨を防ぐ道具。" and records[2]["output"] == "傘"  # the word from its definition
    no_reading = one_row_every_phrasing(tmp_path, "definition", {"word": "傘", "definition": "雨を防ぐ道具。"})
    assert no_reading[0]["input"] == "傘"


def test_the_shipped_sources_build_offline_deterministically(tmp_path):
    sources = shipped_sources()
    a = build(sources, TEMPLATES, tmp_path / "a.jsonl", seed=0, progress=False)
    build(sources, TEMPLATES, tmp_path / "b.jsonl", seed=0, progress=False)
    build(sources, TEMPLATES, tmp_path / "c.jsonl", seed=1, progress=False)
    rows = {p.stem: read_jsonl(p) for p in (tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl")}
    assert rows["a"] == rows["b"] and rows["a"] != rows["c"]
    assert [r["id"] for r in rows["a"]] == [r["id"] for r in rows["c"]]  # the seed picks phrasings, not rows
    assert a.records == len(rows["a"]) == 350 and a.rows == 350  # 60+60+40+40+40+40+30+40, no duplicates
    assert len({r["id"] for r in rows["a"]}) == 350
    for rec in rows["a"]:
        InstructionRecord.model_validate(rec)
    nli = next(r for r in rows["a"] if r["template"] == "nli")
    path = data_dir() / "datasets" / "nli_ja.jsonl"
    assert nli["source"] == {"dataset": "data/datasets/nli_ja.jsonl", "config": None, "split": None,
                             "revision": f"sha256:{sha256_file(path)}", "row": 0}
    phrasings = Counter((r["template"], r["phrasing"]) for r in rows["a"])
    assert all(phrasings[(t, k)] > 0 for t in {r["template"] for r in rows["a"]}
               for k in range(len(TEMPLATES[t].phrasings)))  # every phrasing of every template is used
    labels = Counter(r["output"] for r in rows["a"] if r["template"] == "nli")
    assert labels == {"含意": 20, "矛盾": 20, "中立": 20}
    table = a.table()
    assert table.loc["total", "records"] == 350 and table.loc["nli_ja", "license"] == "Apache-2.0"


def test_streaming_stops_at_the_cap_and_samples_by_hash(tmp_path):
    """A hub-style source (datasets streaming over a folder) reads only as many rows as the cap needs."""
    folder = tmp_path / "hub"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"sentence": f"レビュー{i}番", "label": i % 2} for i in range(5000)])
    src = Source(name="marc", template="sentiment", dataset=str(folder), revision="0" * 40, license="CC-BY-4.0",
                 fields={"text": "sentence"}, label_names=["positive", "negative"], limit=25)
    stats = build([src], TEMPLATES, tmp_path / "out.jsonl", progress=False)
    [s] = stats.sources
    assert (s.rows, s.records) == (25, 25)  # 25 of 5,000 rows read
    recs = read_jsonl(tmp_path / "out.jsonl")
    assert recs[3]["source"] == {"dataset": str(folder), "config": None, "split": "train", "revision": "0" * 40,
                                 "row": 3}
    assert [r["output"] for r in recs[:4]] == ["ポジティブ", "ネガティブ", "ポジティブ", "ネガティブ"]

    sampled = src.model_copy(update={"limit": None, "fraction": 0.2})
    one = build([sampled], TEMPLATES, tmp_path / "s1.jsonl", seed=3, progress=False).sources[0]
    two = build([sampled], TEMPLATES, tmp_path / "s2.jsonl", seed=3, progress=False).sources[0]
    assert one.rows == 5000 and 900 < one.records < 1100 and one.records + one.sampled_out == 5000
    assert read_jsonl(tmp_path / "s1.jsonl") == read_jsonl(tmp_path / "s2.jsonl")  # the same sample every time
    capped = build([sampled.model_copy(update={"limit": 10})], TEMPLATES, tmp_path / "s3.jsonl", seed=3,
                   progress=False)
    assert [r["id"] for r in read_jsonl(tmp_path / "s3.jsonl")] == [r["id"] for r in read_jsonl(tmp_path / "s1.jsonl")][:10]
    assert capped.sources[0].rows < 100


def test_exact_duplicates_are_dropped_across_sources(tmp_path):
    path = write_jsonl(tmp_path / "mt.jsonl", [{"en": "Hello.", "ja": "こんにちは。"}, {"en": "Hello.", "ja": "こんにちは。"},
                                                {"en": "Thanks.", "ja": "ありがとう。"}])
    first = Source(name="a", template="translation_en_ja", path=str(path), license="CC0-1.0")
    again = first.model_copy(update={"name": "b"})
    stats = build([first, again], load_templates(), tmp_path / "o.jsonl", seed=0, progress=False)
    by = {s.name: s for s in stats.sources}
    assert (by["a"].records, by["a"].duplicates, by["b"].records, by["b"].duplicates) == (2, 1, 0, 3)
    kept = read_jsonl(tmp_path / "o.jsonl")
    assert len({(r["instruction"], r["input"], r["output"]) for r in kept}) == len(kept)
    no_dedup = build([first, again], TEMPLATES, tmp_path / "n.jsonl", seed=0, dedup=False, progress=False)
    assert no_dedup.records == 6


def test_blank_rows_are_counted_not_written(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"text": "", "label": "positive"}, {"text": "良い", "label": "positive"},
                                               {"text": None, "label": "negative"}])
    stats = build([Source(name="s", template="sentiment", path=str(path), license="x")], TEMPLATES,
                  tmp_path / "o.jsonl", progress=False)
    assert (stats.sources[0].blank, stats.records) == (2, 1)


def test_csv_sources(tmp_path):
    path = tmp_path / "defs.csv"
    path.write_text("word,definition\n傘,雨を防ぐ道具。\n鍋,煮炊きに使う器。\n", encoding="utf-8")
    stats = build([Source(name="d", template="definition", path=str(path), license="CC-BY-SA-4.0")], TEMPLATES,
                  tmp_path / "o.jsonl", progress=False)
    assert stats.records == 2 and {r["source"]["row"] for r in read_jsonl(tmp_path / "o.jsonl")} == {0, 1}


def test_bad_rows_name_the_file_the_line_and_the_field(tmp_path):
    path = tmp_path / "nli.jsonl"
    path.write_text('{"premise": "a", "hypothesis": "b", "label": "entailment"}\n\n'
                    '{"premise": "a", "label": "neutral"}\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        build([Source(name="n", template="nli", path=str(path), license="x")], TEMPLATES, tmp_path / "o.jsonl",
              progress=False)
    assert (e.value.path, e.value.line, e.value.field) == (str(path), 3, "hypothesis")
    assert not (tmp_path / "o.jsonl").exists()  # nothing half-written
    path.write_text('{"premise": "a", "hypothesis": "b", "label": 2}\n', encoding="utf-8")
    with pytest.raises(DataError, match="label_names"):
        build([Source(name="n", template="nli", path=str(path), license="x")], TEMPLATES, tmp_path / "o.jsonl",
              progress=False)
    path.write_text('{"premise": "a", "hypothesis": "b", "label": "maybe"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="'maybe' is none of entailment, contradiction, neutral"):
        build([Source(name="n", template="nli", path=str(path), license="x")], TEMPLATES, tmp_path / "o.jsonl",
              progress=False)
    path.write_text('{"premise": "a", "hypothesis": "b", "label": "neutral"}\n{"premise": \n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        build([Source(name="n", template="nli", path=str(path), license="x")], TEMPLATES, tmp_path / "o.jsonl",
              progress=False)
    assert e.value.line == 2


def test_source_settings_are_checked():
    with pytest.raises(ValidationError, match="pin the dataset's revision"):
        Source(name="j", template="nli", dataset="shunk031/JGLUE", license="CC-BY-4.0")
    with pytest.raises(ValidationError, match="either dataset"):
        Source(name="j", template="nli", license="x")
    with pytest.raises(ValidationError, match="license"):
        Source(name="j", template="nli", path="a.jsonl")
    with pytest.raises(ValueError, match="no template 'qa'"):
        build([Source(name="j", template="qa", path="a.jsonl", license="x")], TEMPLATES, "/nonexistent/o.jsonl")
    with pytest.raises(ValueError, match="not slots of template 'nli'"):
        build([Source(name="j", template="nli", path="a.jsonl", license="x", fields={"sentence": "s"})], TEMPLATES,
              "/tmp/never-written/o.jsonl")


def test_extra_templates_file_adds_and_replaces(tmp_path):
    extra = tmp_path / "t.yaml"
    extra.write_text("nli:\n  slots: [premise, hypothesis, label]\n  labels: {entailment: はい, contradiction: いいえ,"
                     " neutral: 不明}\n  phrasings:\n    - {instruction: 判定せよ。, input: '{{ premise }}', output: "
                     "'{{ label }}'}\nyesno:\n  slots: [q, a]\n  phrasings:\n    - {instruction: '{{ q }}', output: "
                     "'{{ a }}'}\n", encoding="utf-8")
    templates = load_templates(extra)
    assert set(templates) == set(TEMPLATES) | {"yesno"}
    assert templates["nli"].labels["entailment"] == "はい"
    extra.write_text("nli:\n  slots: []\n  phrasings: []\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_templates(extra)
    assert e.value.field == "nli.slots"


def test_licence_and_revision_reach_the_dataset_card(tmp_path):
    folder = tmp_path / "hub"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"sentence1": f"文{i}です。", "sentence2": f"文{i}である。", "label": i % 3}
                                         for i in range(12)])
    local = write_jsonl(tmp_path / "mt.jsonl", [{"en": f"Sentence {i}.", "ja": f"文{i}。"} for i in range(5)])
    sources = [Source(name="jnli", template="nli", dataset=str(folder), revision="abc123", license="CC-BY-4.0",
                      fields={"premise": "sentence1", "hypothesis": "sentence2"},
                      label_names=["entailment", "contradiction", "neutral"]),
               Source(name="mt", template="translation_en_ja", path=str(local), license="CC-BY-SA-4.0")]
    build(sources, TEMPLATES, tmp_path / "g.jsonl", progress=False)
    result = filter_records(read_jsonl(tmp_path / "g.jsonl"), [], FilterParams())
    assert result.n_kept == 17  # template records skip ROUGE-L: same instruction wording, different inputs
    table = source_table(result.kept)
    assert table.to_dict("records") == [
        {"dataset": str(folder), "config": "", "split": "train", "revision": "abc123", "license": "CC-BY-4.0",
         "records": 12},
        {"dataset": str(local), "config": "", "split": "", "revision": f"sha256:{sha256_file(local)}",
         "license": "CC-BY-SA-4.0", "records": 5}]
    card = dataset_card(result)
    assert "## Sources" in card and "CC-BY-4.0 (12), CC-BY-SA-4.0 (5)" in card
    assert f"sha256:{sha256_file(local)}" in card and "abc123" in card


def test_rouge_l_still_filters_records_not_made_from_templates():
    recs = [{"id": f"r{i}", "instruction": "次の文章を読んで要点を三つにまとめてください。", "input": f"文章{i}",
             "output": "要点です。"} for i in range(3)]
    assert filter_records(recs, [], FilterParams()).n_kept == 1
    assert filter_records([{**r, "template": "summarization"} for r in recs], [], FilterParams()).n_kept == 3


def test_the_recipe_is_registered_and_switchable_from_any_config():
    assert RECIPES["from_datasets"] is FromDatasets
    cfg = load_config(configs_dir() / "tiny.yaml", {"generate.recipe": "from_datasets"})
    assert [s.name for s in cfg.generate.from_datasets.sources] == [s.name for s in shipped_sources()]
    assert "convert 8 dataset(s)" in FromDatasets.describe(cfg.generate.from_datasets)
    assert FromDatasets.estimate(cfg.generate.from_datasets, "local", None).requests == 0
    paper = load_config(configs_dir() / "paper_2309.yaml")
    assert paper.generate.recipe == "from_datasets"
    assert all(s.revision and len(s.revision) == 40 for s in paper.generate.from_datasets.sources if s.dataset)
