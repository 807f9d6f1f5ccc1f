"""The shipped seed data: 175 Japanese seed tasks, the English seed sample and the English Alpaca sample.

Diversity is measured as self-instruct's filter does, on characters: ROUGE-L F between two instructions
(after NFKC) is 2*lcs/(len(a)+len(b)), which is the F of P=lcs/len(a) and R=lcs/len(b).
"""

import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from rapidfuzz.distance import LCSseq
from rapidfuzz.process import cdist

from jinstruct.paths import data_dir
from jinstruct.formats.seed_task import load_seed_tasks

JA_SEEDS = data_dir() / "seeds" / "ja_seed_tasks.jsonl"
EN_SEEDS = data_dir() / "seeds" / "en_seed_sample.jsonl"
EN_ALPACA = data_dir() / "alpaca" / "en_alpaca_sample.jsonl"

SEED_KEYS = ["id", "name", "instruction", "instances", "is_classification"]
NAME = re.compile(r"[a-z][a-z0-9_]*")
# hiragana, katakana (full and half width), the long-vowel mark, CJK ideographs and 々〆
JAPANESE_LETTER = re.compile(r"[\u3041-\u3096\u309d\u309e\u30a1-\u30fa\u30fc-\u30fe\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f々〆]")
PLACEHOLDER = re.compile(r"\{[A-Za-z_]+\}|<[A-Z]+>")


def read_lines(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines, f"{path} is empty"
    assert all(line.strip() for line in lines), f"{path} has a blank line"
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) for r in records)
    return records


def japanese_share(text: str) -> float:
    """Share of the letters in `text` (Unicode category L*) that are Japanese script."""
    letters = [c for c in text if unicodedata.category(c).startswith("L")]
    return sum(bool(JAPANESE_LETTER.fullmatch(c)) for c in letters) / len(letters)


def char_rouge_l_matrix(texts: list[str]) -> np.ndarray:
    """Pairwise character ROUGE-L F after NFKC; the diagonal is set to 0."""
    norm = [unicodedata.normalize("NFKC", t) for t in texts]
    lcs = cdist(norm, norm, scorer=LCSseq.similarity, dtype=np.int32, workers=1)
    lengths = np.array([len(t) for t in norm], dtype=np.float64)
    f = 2.0 * lcs / (lengths[:, None] + lengths[None, :])
    np.fill_diagonal(f, 0.0)
    return f


def is_empty_input(task: dict) -> bool:
    return all(inst["input"] == "" for inst in task["instances"])


def check_seed_format(tasks: list[dict]) -> None:
    for n, t in enumerate(tasks):
        where = f"line {n + 1}"
        assert list(t) == SEED_KEYS, where
        assert t["id"] == f"seed_task_{n}", where
        assert NAME.fullmatch(t["name"]), where
        assert isinstance(t["instruction"], str) and t["instruction"] == t["instruction"].strip() != "", where
        assert type(t["is_classification"]) is bool, where
        assert isinstance(t["instances"], list) and t["instances"], where
        for inst in t["instances"]:
            assert list(inst) == ["input", "output"], where
            assert isinstance(inst["input"], str) and isinstance(inst["output"], str), where
            assert inst["input"] == inst["input"].strip(), where
            assert inst["output"] == inst["output"].strip() != "", where
        # an instance list is either all empty inputs or all real inputs
        assert len({inst["input"] == "" for inst in t["instances"]}) == 1, where
    assert len({t["name"] for t in tasks}) == len(tasks), "duplicate names"
    assert len({t["instruction"] for t in tasks}) == len(tasks), "duplicate instructions"


def check_classification_labels(tasks: list[dict]) -> None:
    for t in tasks:
        if not t["is_classification"]:
            continue
        for inst in t["instances"]:
            label = inst["output"]
            assert "\n" not in label and len(label) <= 12, t["name"]
            assert label in t["instruction"], f"{t['name']}: label {label!r} is not among those the instruction names"


@pytest.fixture(scope="module")
def ja() -> list[dict]:
    return read_lines(JA_SEEDS)


@pytest.fixture(scope="module")
def en() -> list[dict]:
    return read_lines(EN_SEEDS)


@pytest.fixture(scope="module")
def alpaca() -> list[dict]:
    return read_lines(EN_ALPACA)


def test_char_rouge_l_matches_rouge_score():
    from rouge_score import rouge_scorer

    class Chars:
        def tokenize(self, text: str) -> list[str]:
            return list(text)

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=Chars())
    texts = ["次の文章を要約してください。", "以下の文章を三行で要約しなさい。", "abcd", "abed", "ＡＢＣ123"]
    f = char_rouge_l_matrix(texts)
    norm = [unicodedata.normalize("NFKC", t) for t in texts]
    for i in range(len(texts)):
        for j in range(len(texts)):
            if i != j:
                assert f[i, j] == pytest.approx(scorer.score(norm[i], norm[j])["rougeL"].fmeasure)
    assert f[2, 3] == pytest.approx(0.75)  # lcs "abd" = 3 of 4 and 4


def test_japanese_seeds_format_and_loader(ja):
    assert len(ja) == 175
    check_seed_format(ja)
    loaded = load_seed_tasks(JA_SEEDS)
    assert [t.id for t in loaded] == [t["id"] for t in ja]


def test_japanese_seeds_proportions(ja):
    n_cls = sum(t["is_classification"] for t in ja)
    n_empty = sum(is_empty_input(t) for t in ja)
    assert 20 <= n_cls <= 30
    assert 40 <= n_empty <= 60
    assert len(ja) - n_empty >= 100  # the rest carry an input
    # classification tasks classify something: they carry an input
    assert not any(t["is_classification"] and is_empty_input(t) for t in ja)


def test_japanese_instructions_are_japanese(ja):
    shares = [japanese_share(t["instruction"]) for t in ja]
    assert min(shares) >= 0.5
    assert float(np.mean(shares)) >= 0.9


def test_japanese_classification_outputs_are_short_labels(ja):
    check_classification_labels(ja)
    labels = {inst["output"] for t in ja if t["is_classification"] for inst in t["instances"]}
    assert len(labels) >= 15  # many label sets, not one


def test_japanese_instructions_are_diverse(ja):
    f = char_rouge_l_matrix([t["instruction"] for t in ja])
    assert f.shape == (175, 175)
    assert float(f.max()) <= 0.7
    assert float(np.mean(f[np.triu_indices(175, k=1)])) < 0.3


def test_english_seed_sample(en):
    assert len(en) == 12
    check_seed_format(en)
    assert [t.id for t in load_seed_tasks(EN_SEEDS)] == [t["id"] for t in en]
    assert sum(t["is_classification"] for t in en) == 3
    assert sum(is_empty_input(t) for t in en) == 4
    check_classification_labels(en)
    assert not any(JAPANESE_LETTER.search(t["instruction"]) for t in en)
    assert float(char_rouge_l_matrix([t["instruction"] for t in en]).max()) <= 0.7

    text = [t["instruction"] + "\n" + "\n".join(i["input"] + "\n" + i["output"] for i in t["instances"]) for t in en]
    assert any("```python" in s for s in text)  # code for the translator to keep
    assert any(re.search(r"\d", i["input"]) and not t["is_classification"] for t in en for i in t["instances"])
    with_placeholders = 0
    for t in en:
        for inst in t["instances"]:
            given = set(PLACEHOLDER.findall(t["instruction"] + inst["input"]))
            if given:
                with_placeholders += 1
                assert given <= set(PLACEHOLDER.findall(inst["output"])), t["name"]
    assert with_placeholders >= 2
    assert {"{name}", "<URL>"} <= {p for s in text for p in PLACEHOLDER.findall(s)}


def test_english_alpaca_sample(alpaca):
    assert len(alpaca) == 40
    for n, r in enumerate(alpaca):
        assert list(r) == ["instruction", "input", "output"], f"line {n + 1}"
        assert all(isinstance(v, str) for v in r.values()), f"line {n + 1}"
        assert r["instruction"] == r["instruction"].strip() != "", f"line {n + 1}"
        assert r["output"] == r["output"].strip() != "", f"line {n + 1}"
        assert r["input"] == r["input"].strip(), f"line {n + 1}"
        assert not JAPANESE_LETTER.search(r["instruction"] + r["output"]), f"line {n + 1}"
    assert len({r["instruction"] for r in alpaca}) == 40
    with_input = sum(r["input"] != "" for r in alpaca)
    assert 12 <= with_input <= 20  # about 40%
    assert float(char_rouge_l_matrix([r["instruction"] for r in alpaca]).max()) <= 0.7
