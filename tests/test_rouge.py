"""ROUGE-L over Japanese tokens: equal to rouge_score's F-measure to the last bit."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinstruct.filter.rouge import (
    RougeTokenizer,
    fmeasure,
    fmeasure_array,
    lcs_length,
    min_lcs,
    min_lcs_row,
    normalize,
    rouge_l,
    rouge_l_text,
    tokenize,
)
from rouge_score import rouge_scorer

SENTENCES = [
    "日本の首都はどこですか？",
    "次の文章を三行で要約してください。",
    "健康的な生活を送るための5つのヒントを教えてください。",
    "以下の文が肯定的か否定的かを判定してください。",
    "俳句を一つ作ってください。季語は「桜」です。",
    "ＰＹＴＨＯＮでリストを逆順にする方法を説明してください。",
    "ｶﾀｶﾅの半角文字を全角に直してください。",
    "This sentence is in English, with ASCII words.",
    "与えられた二つの文の関係を、含意・矛盾・中立のいずれかで答えてください。",
]

# A small alphabet makes long common subsequences (and ties at the threshold) likely.
SMALL_ALPHABET = "あいうえおかきくのをにはてしす日本語。、Ａa1 "


def reference(tokens: str) -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=RougeTokenizer(tokens))  # type: ignore[arg-type]


def test_char_tokens_are_nfkc_lowercase_characters_without_whitespace() -> None:
    assert tokenize("ＡＢＣ １２３　ｶﾀｶﾅ\n") == list("abc123カタカナ")
    assert tokenize("日本 語") == ["日", "本", "語"]
    assert tokenize("") == []
    assert normalize("ＰＹＴＨＯＮ") == "python"


def test_word_tokens_come_from_the_morphological_analyzer() -> None:
    words = tokenize("健康的な生活を送るための5つのヒントを教えてください。", "word")
    assert "健康" in words and "生活" in words and "ヒント" in words and "を" in words
    assert "".join(words) == "健康的な生活を送るための5つのヒントを教えてください。"
    assert tokenize("日本語 の  文", "word") == ["日本", "語", "の", "文"]


def test_unknown_token_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="tokens"):
        tokenize("あ", "bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tokens"):
        RougeTokenizer("bytes")  # type: ignore[arg-type]


def test_rouge_scores_default_tokenizer_sees_nothing_in_japanese() -> None:
    """Why this module exists: rouge_score's own tokenizer drops every non-ASCII character."""
    default = rouge_scorer.RougeScorer(["rougeL"])
    assert default.score("日本の首都はどこですか", "日本の首都はどこですか")["rougeL"].fmeasure == 0.0
    assert rouge_l_text("日本の首都はどこですか", "日本の首都はどこですか") == 1.0


@pytest.mark.parametrize("tokens", ["char", "word"])
def test_equal_to_rouge_score_on_sentences(tokens: str) -> None:
    scorer = reference(tokens)
    for a in SENTENCES:
        for b in SENTENCES:
            want = scorer.score(a, b)["rougeL"].fmeasure
            assert rouge_l_text(a, b, tokens) == want  # type: ignore[arg-type]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(SMALL_ALPHABET, max_size=40), st.text(SMALL_ALPHABET, max_size=40))
def test_equal_to_rouge_score_on_random_pairs(a: str, b: str) -> None:
    want = reference("char").score(a, b)["rougeL"].fmeasure
    assert rouge_l_text(a, b) == want


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SENTENCES), st.lists(st.tuples(st.integers(0, 60), st.sampled_from("のをにはが日本語、。")),
                                              max_size=6))
def test_equal_to_rouge_score_on_edited_sentences_word_tokens(sentence: str, edits: list[tuple[int, str]]) -> None:
    edited = list(sentence)
    for pos, ch in edits:
        edited.insert(pos % (len(edited) + 1), ch)
    b = "".join(edited)
    assert rouge_l_text(sentence, b, "word") == reference("word").score(sentence, b)["rougeL"].fmeasure


def test_equal_to_rouge_score_at_exact_thresholds() -> None:
    """Pairs built to have F = 0.7 in exact arithmetic (lcs = 0.35 * (m + n)): the float result is rouge_score's."""
    rng = random.Random(0)
    checked = 0
    for m in range(1, 41):
        for n in range(1, 41):
            lcs = 0.35 * (m + n)
            if lcs != int(lcs) or lcs > min(m, n):
                continue
            lcs = int(lcs)
            common = "".join(rng.choice("日本語") for _ in range(lcs))
            a = common + "あ" * (m - lcs)
            b = "い" * (n - lcs) + common
            want = reference("char").score(a, b)["rougeL"].fmeasure
            assert rouge_l_text(a, b) == want
            assert (want > 0.7) == (lcs >= min_lcs(m, n, 0.7))
            checked += 1
    assert checked > 20


def test_rouge_l_is_symmetric_to_the_bit() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        a = "".join(rng.choice(SMALL_ALPHABET) for _ in range(rng.randint(0, 30)))
        b = "".join(rng.choice(SMALL_ALPHABET) for _ in range(rng.randint(0, 30)))
        assert rouge_l(tokenize(a), tokenize(b)) == rouge_l(tokenize(b), tokenize(a))


def test_lcs_length_on_strings_and_lists() -> None:
    assert lcs_length("あいうえお", "あうお") == 3
    assert lcs_length(["日本", "の", "首都"], ["日本", "首都"]) == 2
    assert lcs_length("", "あ") == 0


def test_fmeasure_array_has_the_same_bits_as_fmeasure() -> None:
    m, n = np.meshgrid(np.arange(0, 90), np.arange(0, 90), indexing="ij")
    for lcs in range(0, 90, 7):
        ok = lcs <= np.minimum(m, n)
        got = fmeasure_array(np.full(m[ok].shape, lcs), m[ok], n[ok])
        want = [fmeasure(lcs, int(a), int(b)) for a, b in zip(m[ok], n[ok])]
        assert got.tolist() == want


@pytest.mark.parametrize("threshold", [0.7, 0.5, 0.0, 1.0, 1 / 3, 0.66, 0.9])
@pytest.mark.parametrize("strict", [True, False])
def test_min_lcs_matches_a_full_scan(threshold: float, strict: bool) -> None:
    """For every m, n up to 160, the smallest qualifying LCS, and every larger LCS qualifies too."""
    size = 160
    lcs = np.arange(size + 1)[:, None, None]
    m = np.arange(size + 1)[None, :, None]
    n = np.arange(size + 1)[None, None, :]
    f = fmeasure_array(lcs, m, n)
    ok = (f > threshold) if strict else (f >= threshold)
    ok &= lcs <= np.minimum(m, n)
    never = np.minimum(m, n)[0] + 1
    first = np.where(ok.any(axis=0), ok.argmax(axis=0), never)
    # upward closed: from the first qualifying lcs up to min(m, n), all qualify
    feasible = lcs <= np.minimum(m, n)
    assert ((lcs >= first[None]) & feasible == ok).all()
    for mm in range(size + 1):
        assert min_lcs_row(mm, size, threshold, strict)[: size + 1].tolist() == first[mm].tolist()
    assert min_lcs(10, 10, threshold, strict) == first[10, 10]
