"""ROUGE-L for Japanese: character or word tokens, scored exactly as rouge_score scores them.

rouge_score's default tokenizer keeps only ASCII letters and digits, so on Japanese every pair scores 0. Here a
text is normalized (NFKC, lower case) and split into characters (the default) or into words by a morphological
analyzer (fugashi with unidic-lite); whitespace is dropped in both. The score is rouge_score's ROUGE-L F-measure
computed from the LCS length with the same float operations in the same order
(precision = lcs / len(prediction), recall = lcs / len(target), F = 2 * precision * recall / (precision + recall)),
so it is equal to the last bit and a pair at exactly the threshold falls on the same side. The LCS itself comes from
rapidfuzz's bit-parallel implementation.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Hashable, Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from rapidfuzz.distance import LCSseq

TokenKind = Literal["char", "word"]
TOKEN_KINDS: tuple[str, ...] = ("char", "word")


def normalize(text: str) -> str:
    """NFKC (full-width letters and digits become ASCII, half-width kana become full-width), then lower case."""
    return unicodedata.normalize("NFKC", text).lower()


@lru_cache(maxsize=1)
def tagger() -> Any:
    """The shared fugashi Tagger (unidic-lite), created on first use: char tokens need no dictionary."""
    import fugashi

    return fugashi.Tagger()


def tokenize(text: str, tokens: TokenKind = "char") -> list[str]:
    """The tokens ROUGE-L compares: characters or morphemes of the normalized text, without whitespace."""
    text = normalize(text)
    if tokens == "char":
        return [ch for ch in text if not ch.isspace()]
    if tokens == "word":
        return [w.surface for w in tagger()(text) if w.surface and not w.surface.isspace()]
    raise ValueError(f"tokens must be one of {TOKEN_KINDS}, got {tokens!r}")


class RougeTokenizer:
    """A tokenizer object for `rouge_score.rouge_scorer.RougeScorer(["rougeL"], tokenizer=...)`."""

    def __init__(self, tokens: TokenKind = "char"):
        if tokens not in TOKEN_KINDS:
            raise ValueError(f"tokens must be one of {TOKEN_KINDS}, got {tokens!r}")
        self.tokens = tokens

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, self.tokens)


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence of two token sequences (strings or lists)."""
    return int(LCSseq.similarity(a, b))


def fmeasure(lcs: int, target_len: int, prediction_len: int) -> float:
    """rouge_score's ROUGE-L F-measure from an LCS length, with its float arithmetic (symmetric in the lengths)."""
    if target_len == 0 or prediction_len == 0:
        return 0.0
    precision = lcs / prediction_len
    recall = lcs / target_len
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def rouge_l(a_tokens: Sequence[Hashable], b_tokens: Sequence[Hashable]) -> float:
    """ROUGE-L F-measure of two token sequences, equal to rouge_score's `_score_lcs(a, b).fmeasure`."""
    return fmeasure(lcs_length(a_tokens, b_tokens), len(a_tokens), len(b_tokens))


def rouge_l_text(a: str, b: str, tokens: TokenKind = "char") -> float:
    """ROUGE-L F-measure of two texts after `tokenize`."""
    return rouge_l(tokenize(a, tokens), tokenize(b, tokens))


def fmeasure_array(lcs: np.ndarray, target_len: int | np.ndarray, prediction_len: np.ndarray) -> np.ndarray:
    """`fmeasure` over arrays: the same IEEE double operations in the same order, so the same bits."""
    lcs = np.asarray(lcs, dtype=np.float64)
    m = np.asarray(target_len, dtype=np.float64)
    n = np.asarray(prediction_len, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = lcs / n
        recall = lcs / m
        total = precision + recall
        f = 2 * precision * recall / total
    return np.where((m > 0) & (n > 0) & (total > 0), f, 0.0)


def min_lcs(m: int, n: int, threshold: float, strict: bool = True) -> int:
    """The smallest LCS length at which two sequences of lengths m and n score `> threshold` (or `>=` when not
    strict); `min(m, n) + 1` when no LCS length does. Exact for rouge_score's float formula.

    Why a small window suffices: in exact arithmetic F = 2 * lcs / (m + n), which moves by 2 / (m + n) per unit of
    lcs, while the float formula is within a few units in the last place (5 roundings, relative error below 1e-15)
    of it. So only lcs values within a step or two of threshold * (m + n) / 2 can land on the other side of the
    threshold than their exact value does; below the window the float F is surely under, above it surely over.
    `tests/test_rouge.py` checks this against a full scan for all m, n up to 160.
    """
    return int(_min_lcs_row(m, n, float(threshold), strict)[n])


def min_lcs_row(m: int, max_n: int, threshold: float, strict: bool = True) -> np.ndarray:
    """`min_lcs(m, n, threshold, strict)` for n = 0..max_n, as an int32 array (cached per m)."""
    return _min_lcs_row(m, max(int(max_n), 0), float(threshold), strict)


@lru_cache(maxsize=4096)
def _min_lcs_row_cached(m: int, size: int, threshold: float, strict: bool) -> np.ndarray:
    n = np.arange(size + 1, dtype=np.int64)
    limit = np.minimum(m, n)
    centre = np.floor(threshold * (m + n) / 2).astype(np.int64)
    out = limit + 1  # "never": no LCS length reaches the threshold
    found = np.zeros(n.shape, dtype=bool)
    for step in range(-3, 5):
        lcs = centre + step
        f = fmeasure_array(np.clip(lcs, 0, None), m, n)
        ok = (f > threshold) if strict else (f >= threshold)
        ok &= (lcs >= 0) & (lcs <= limit) & ~found
        out = np.where(ok, lcs, out)
        found |= ok
    # Below the window every lcs is surely under the threshold (see min_lcs). An lcs of 0 (or an empty sequence)
    # scores 0.0, so with a threshold below 0 (or 0 and not strict) every pair qualifies from lcs 0 on.
    if (0.0 > threshold) if strict else (0.0 >= threshold):
        out = np.zeros_like(out)
    out = out.astype(np.int32)
    out.flags.writeable = False
    return out


def _min_lcs_row(m: int, n_needed: int, threshold: float, strict: bool) -> np.ndarray:
    size = 1 << max(8, math.ceil(math.log2(n_needed + 1)))  # cache rows of power-of-two sizes
    return _min_lcs_row_cached(m, size, threshold, strict)
