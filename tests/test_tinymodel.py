"""The tiny model builder: deterministic, cached, loadable, and it speaks (broken) Japanese."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from pathlib import Path

import pytest
import torch
from jinstruct.llm import tinymodel
from jinstruct.io import read_json, DataError, write_jsonl
from jinstruct.llm.tinymodel import TinyModelSpec, build_tiny_model, parse_corpus
from transformers import AutoModelForCausalLM, AutoTokenizer

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
# Same architecture, a few optimiser steps: enough to test the procedure without paying for the full build.
QUICK = TinyModelSpec(train_steps=4, batch_size=2, block_size=32)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    return build_tiny_model()


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tinymodel, "SPEC", QUICK)


def test_corpus_is_many_japanese_conversations() -> None:
    convs = parse_corpus()
    assert len(convs) >= 200
    assert all(c[-1]["role"] == "assistant" and any(m["role"] == "user" for m in c) for c in convs)
    assert any(len(c) >= 4 for c in convs), "some multi-turn dialogue"
    assert any(c[0]["role"] == "system" for c in convs)
    text = "".join(m["content"] for c in convs for m in c)
    assert len(JAPANESE.findall(text)) / len(text) > 0.8


def test_corpus_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "c.txt"
    bad.write_text("U: こんにちは\nA: はい\n\nU: 質問\nX: だめ\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.txt, line 5"):
        parse_corpus(bad)
    bad.write_text("U: こんにちは\nA: はい\n\nA: 答えだけ\nU: 質問で終わる\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 4.*end with an assistant turn"):
        parse_corpus(bad)


def test_two_builds_are_bit_identical_and_cached(tmp_path: Path, quick: None) -> None:
    a = build_tiny_model(tmp_path / "a")
    b = build_tiny_model(tmp_path / "b")
    assert a.name == b.name and re.fullmatch(r"tiny-ja-base-[0-9a-f]{12}", a.name)
    for f in ("model.safetensors", "tokenizer.json", "config.json"):
        assert sha(a / f) == sha(b / f), f
    stamp = (a / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(tmp_path / "a") == a
    assert (a / "model.safetensors").stat().st_mtime_ns == stamp, "second call must not rebuild"
    other = build_tiny_model(tmp_path / "a", variant="other")
    assert other.name.startswith("tiny-ja-other-")
    assert sha(other / "model.safetensors") != sha(a / "model.safetensors")
    assert sha(other / "tokenizer.json") == sha(a / "tokenizer.json"), "same text, same tokenizer"
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if not p.name.endswith(".lock")) == sorted([a.name, other.name])


def test_concurrent_builders_build_once(tmp_path: Path, quick: None) -> None:
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(build_tiny_model(tmp_path))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 3
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [results[0].name]
    assert not [p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith(".")], "no temp dirs left"


def test_new_seed_file_changes_the_key_and_feeds_the_tokenizer(
    tmp_path: Path, quick: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    monkeypatch.setattr(tinymodel, "extra_text_dirs", lambda: (seeds,))
    before = build_tiny_model(tmp_path / "models")
    record = {"id": "t1", "instruction": "好きな果物を答えてください。", "instances": [{"input": "", "output": "りんごです。"}]}
    write_jsonl(seeds / "s.jsonl", [record])
    after = build_tiny_model(tmp_path / "models")
    assert before != after, "a new data file must give a new cache key"
    texts, _ = tinymodel._read_inputs(tinymodel.corpus_path(), tinymodel._extra_files())
    assert {"好きな果物を答えてください。", "りんごです。"} <= set(texts)
    info_before, info_after = read_json(before / "build_info.json"), read_json(after / "build_info.json")
    assert info_before["conversations"] == info_after["conversations"], "pre-training uses the corpus only"
    (seeds / "bad.jsonl").write_text('{"instruction": "x"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2"):
        build_tiny_model(tmp_path / "models")


def test_bad_variant_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="variant"):
        build_tiny_model(tmp_path, variant="../x")


def test_json_renderings_are_valid_json_in_the_pipeline_shapes() -> None:
    convs = tinymodel.json_conversations(parse_corpus(), seed=0)
    assert len(convs) >= 150
    replies = [json.loads(c[-1]["content"]) for c in convs]
    lists = [r for r in replies if isinstance(r, list)]
    assert lists and all(set(x) == {"instruction", "input", "output"} for r in lists for x in r)
    assert {1, 2, 3} == {len(r) for r in lists}
    assert any(isinstance(r, dict) and 1 <= r.get("score", 0) <= 10 for r in replies)
    assert any(isinstance(r, dict) and r.get("winner") in ("A", "B", "tie") for r in replies)
    assert convs == tinymodel.json_conversations(parse_corpus(), seed=0)


@pytest.mark.slow
def test_real_model_loads_renders_and_generates_japanese(tiny_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    cfg = model.config
    assert cfg.model_type == "llama" and cfg.head_dim >= 32 and cfg.tie_word_embeddings
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert len(tok) == cfg.vocab_size <= 4096
    info = read_json(Path(tiny_dir) / "build_info.json")
    assert info["loss_last"] < info["loss_first"] - 3, "pre-training must have learnt something"

    msgs = [{"role": "system", "content": "簡潔に。"}, {"role": "user", "content": "日本の首都は?"}]
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|system|>\n簡潔に。<|end|>\n<|user|>\n日本の首都は?<|end|>\n<|assistant|>\n"
    full = tok.apply_chat_template(
        [*msgs, {"role": "assistant", "content": "東京です。"}], return_dict=True, return_assistant_tokens_mask=True
    )
    masked = [i for i, m in zip(full["input_ids"], full["assistant_masks"]) if m]
    assert tok.decode(masked) == "東京です。<|end|>", "assistant content and its stop token are trained"

    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=40, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert len(JAPANESE.findall(text)) >= 5, text


@pytest.mark.slow
def test_real_model_mostly_closes_its_json_under_a_schema(tiny_dir: Path) -> None:
    from jinstruct.llm.backend import ChatCompletionRequest, create_app

    engine = create_app(tiny_dir).state.engine
    item = {"type": "object", "required": ["instruction", "input", "output"],
            "properties": {k: {"type": "string"} for k in ("instruction", "input", "output")}}
    schema = {"type": "array", "items": item, "minItems": 1}
    finished = 0
    for seed in range(8):
        req = ChatCompletionRequest.model_validate({
            "messages": [{"role": "user", "content": "新しい指示を二つ考えて、JSONで出力してください。"}],
            "temperature": 0.7, "seed": seed, "max_tokens": 512,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        })
        choice = engine.complete(req)["choices"][0]
        if choice["finish_reason"] == "stop":
            finished += 1
            assert all(set(x) == {"instruction", "input", "output"} for x in json.loads(choice["message"]["content"]))
    assert finished >= 4, f"only {finished}/8 unbounded JSON replies closed within 512 tokens"
