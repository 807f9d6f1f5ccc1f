"""Greedy ROUGE-L dedup: exactly the naive pairwise loop's kept list, scores and neighbours."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinstruct.filter.dedup import Deduper, dedup, register_cli
from jinstruct.io import DataError
from jinstruct.filter.rouge import RougeTokenizer, rouge_l, tokenize
from rouge_score import rouge_scorer

BASES = [
    "日本の首都について説明してください。",
    "次の文章を三行で要約してください。",
    "健康的な生活を送るための五つのヒントを教えてください。",
    "以下の文が肯定的か否定的かを判定してください。",
    "俳句を一つ作ってください。季語は桜です。",
    "Pythonでリストを逆順にする方法を説明してください。",
    "与えられた二つの文の関係を、含意・矛盾・中立のいずれかで答えてください。",
    "富士山の高さは何メートルですか？",
    "新入社員向けに、メールの書き方の基本をまとめてください。",
    "地球温暖化の原因と対策を小学生にも分かるように説明してください。",
    "あなたが探偵だとしたら、この事件をどう推理しますか？",
    "江戸時代の文化の特徴を三つ挙げてください。",
]
EDITS = "あいうえおかきくけこのをには日本語文章。、"


def near_duplicates(n: int, seed: int) -> list[str]:
    """Japanese instructions rich in near duplicates: bases, edits of earlier texts, and splices of two."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        r = rng.random()
        if not out or r < 0.25:
            text = rng.choice(BASES)
        elif r < 0.4:
            a, b = rng.choice(out), rng.choice(out)
            text = a[: len(a) // 2] + b[len(b) // 2 :]
        else:
            chars = list(rng.choice(out))
            for _ in range(rng.randint(1, 5)):
                i = rng.randrange(len(chars) + 1)
                op = rng.random()
                if op < 0.4 and i < len(chars):
                    chars[i] = rng.choice(EDITS)
                elif op < 0.7 and i < len(chars):
                    del chars[i]
                else:
                    chars.insert(i, rng.choice(EDITS))
            text = "".join(chars)
        out.append(text)
    return out


def naive(texts: list[str], seeds: list[str], threshold: float, tokens: str):
    """The reference: score every candidate against every kept text, in order."""
    pool = [tokenize(s, tokens) for s in seeds]  # type: ignore[arg-type]
    decisions = []
    for text in texts:
        toks = tokenize(text, tokens)  # type: ignore[arg-type]
        scores = [rouge_l(toks, p) for p in pool]
        best = max(scores, default=0.0)
        decisions.append((best <= threshold, best, scores))
        if best <= threshold:
            pool.append(toks)
    return decisions


def check_against_naive(texts: list[str], seeds: list[str], threshold: float, tokens: str, k: int, floor: float):
    deduper = Deduper(threshold=threshold, tokens=tokens, k=k, floor=floor)  # type: ignore[arg-type]
    deduper.seed(seeds)
    got = deduper.add_many(texts)
    want = naive(texts, seeds, threshold, tokens)
    assert [d.kept for d in got] == [w[0] for w in want]
    pool_size = len(seeds)
    for d, (kept, best, scores) in zip(got, want):
        assert d.best_score == (best if best >= floor else 0.0)
        ranked = sorted(((i, s) for i, s in enumerate(scores) if s >= floor and s > 0),
                        key=lambda p: (-p[1], p[0]))
        assert d.neighbours == ranked[:k]
        assert d.index == (pool_size if kept else None)
        pool_size += kept
    assert len(deduper) == pool_size
    return got


@pytest.mark.parametrize("tokens", ["char", "word"])
def test_same_as_naive_pairwise_on_near_duplicates(tokens: str) -> None:
    texts = near_duplicates(400, seed=1)
    got = check_against_naive(texts, BASES[:5], 0.7, tokens, k=5, floor=0.5)
    kept = sum(d.kept for d in got)
    assert 20 < kept < 380  # the data really has near duplicates, and really has distinct texts


def test_same_as_naive_across_index_rebuilds_and_thresholds() -> None:
    """A pool of more than 512 texts crosses the sizes (64, 512) at which the index re-chooses its frequent tokens."""
    texts = near_duplicates(1000, seed=2)
    got = check_against_naive(texts, [], 0.95, "char", k=3, floor=0.6)
    assert sum(d.kept for d in got) > 512
    check_against_naive(texts[:300], [], 0.5, "char", k=10, floor=0.2)


def test_same_as_rouge_score_itself() -> None:
    """The kept list of the naive loop written with rouge_score's own scorer (char tokens)."""
    texts = near_duplicates(120, seed=3)
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=RougeTokenizer("char"))  # type: ignore[arg-type]
    kept: list[str] = list(BASES[:3])
    want = []
    for text in texts:
        ok = all(scorer.score(text, k)["rougeL"].fmeasure <= 0.7 for k in kept)
        want.append(ok)
        if ok:
            kept.append(text)
    assert dedup(texts, against=BASES[:3]) == want


@settings(max_examples=120, deadline=None)
@given(st.lists(st.text("あいうえのを日本。", min_size=0, max_size=12), max_size=40),
       st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]))
def test_same_as_naive_on_random_small_alphabet_lists(texts: list[str], threshold: float) -> None:
    check_against_naive(texts, [], threshold, "char", k=4, floor=min(threshold, 0.4))


def test_a_pair_exactly_at_the_threshold_is_kept() -> None:
    a = "日本語の文章を書く"  # 9 characters
    b = "日本語の文章を読む"  # 7 of 9 in common
    score = rouge_l(tokenize(a), tokenize(b))
    assert dedup([a, b], threshold=score) == [True, True]
    assert dedup([a, b], threshold=score - 1e-12) == [True, False]


def test_seeds_are_preloaded_and_not_deduplicated_among_themselves() -> None:
    deduper = Deduper()
    deduper.seed(["富士山の高さは何メートルですか？", "富士山の高さは何メートルですか？"])
    assert len(deduper) == 2 and deduper.n_seeds == 2
    decision = deduper.add("富士山の高さは何メートルですか")
    assert not decision.kept and decision.best_score > 0.9
    assert [i for i, _ in decision.neighbours] == [0, 1]
    assert deduper.add("日本で一番長い川は何ですか？").index == 2


def test_exact_duplicates_empty_texts_and_whitespace() -> None:
    assert dedup(["日本の首都は？", "日本の首都は？", "", "", " 日本の 首都は？"]) == [True, False, True, True, False]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="tokens"):
        Deduper(tokens="bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        Deduper(threshold=1.5)
    with pytest.raises(ValueError, match="k"):
        Deduper(k=-1)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def write_records(path: Path, texts: list[str], field: str = "instruction") -> None:
    path.write_text("".join(json.dumps({"id": f"r{i}", field: t}, ensure_ascii=False) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")


def test_cli_writes_kept_records_and_prints_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = near_duplicates(150, seed=4)
    write_records(tmp_path / "in.jsonl", texts)
    write_records(tmp_path / "seeds.jsonl", BASES)
    out = tmp_path / "out.jsonl"
    code = run_cli(["dedup", str(tmp_path / "in.jsonl"), "--field", "instruction", "--against",
                    str(tmp_path / "seeds.jsonl"), "--threshold", "0.7", "--tokens", "char", "--out", str(out)])
    assert code == 0
    keep = dedup(texts, against=BASES)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in lines] == [f"r{i}" for i, k in enumerate(keep) if k]
    printed = capsys.readouterr().out
    assert f"read {len(texts)}" in printed and f"kept {sum(keep)}" in printed
    assert f"removed {len(texts) - sum(keep)}" in printed


def test_cli_names_the_bad_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"instruction": "日本の首都は？"}\n{"instruction": 3}\n', encoding="utf-8")
    with pytest.raises(DataError) as err:
        run_cli(["dedup", str(path), "--out", str(tmp_path / "out.jsonl")])
    assert err.value.line == 2 and err.value.field == "instruction"
    assert not (tmp_path / "out.jsonl").exists()
