"""Greedy ROUGE-L dedup with Alpaca's semantics, exact and fast enough for 52K Japanese instructions.

Semantics (Alpaca's `generate_instruction.py`): candidates are taken in order; one is kept iff its highest ROUGE-L
F-measure against everything kept so far (the seeds included, preloaded) is at most the threshold. Scores are
`jinstruct.filter.rouge`'s, equal to rouge_score's to the last bit, so the kept list is exactly the naive pairwise loop's.

Speed without approximation. A candidate of m tokens scores at least a level against a pool item of n tokens iff
their LCS reaches `min_lcs(m, n, level)`, and the LCS is at most the multiset overlap of their tokens. The overlap
with the whole pool comes from two numpy passes: each text is a set of elements (token, j-th occurrence of it);
the most frequent elements are bits (overlap = popcount of AND), the others an inverted index. Only the few items
whose overlap reaches the level get an exact LCS (rapidfuzz, bit-parallel), in decreasing order of their bound and
in growing chunks, stopped once the k-th best exact score beats every bound left (F increases with the LCS).
Every pool item that could score >= floor (floor <= threshold) is thereby considered: the keep/reject decision,
the best score when it is >= floor and the top-k neighbours at or above the floor are exact. Below the floor
nothing is scored (that would be all pairs): `best_score` is then 0.0 and the neighbour list is shorter.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from jinstruct.io import DataError, iter_jsonl, write_jsonl
from jinstruct.filter.rouge import (
    TOKEN_KINDS,
    TokenKind,
    fmeasure,
    fmeasure_array,
    min_lcs_row,
    normalize,
    tokenize,
)

DEFAULT_THRESHOLD = 0.7
_ELEMENT_STRIDE = 0x110000  # element of the j-th occurrence (from 0) of code c: c + j * stride, distinct for all
_REBUILD_AT = (64, 512, 4096)  # pool sizes at which the frequent elements are re-chosen


@dataclass(frozen=True)
class DedupDecision:
    """What `Deduper.add` decided for one candidate.

    kept: whether it joined the pool (best_score <= threshold).
    best_score: its highest ROUGE-L against the pool, exact when >= the Deduper's floor, else 0.0.
    neighbours: the top-k (pool index, ROUGE-L) pairs scoring above 0 and at least the floor, most similar first
        (ties: lower index).
    index: its position in the pool when kept, else None. Pool positions count the seeds first.
    """

    kept: bool
    best_score: float
    neighbours: list[tuple[int, float]] = field(default_factory=list)
    index: int | None = None


class _Growing:
    """A 1-d numpy array that grows by doubling."""

    def __init__(self, dtype: type):
        self.data = np.zeros(16, dtype=dtype)  # dtype object: strings, picked out by fancy indexing
        self.size = 0

    def append(self, value: object) -> None:
        if self.size == len(self.data):
            self.data = np.concatenate([self.data, np.zeros_like(self.data)])
        self.data[self.size] = value
        self.size += 1

    def view(self) -> np.ndarray:
        return self.data[: self.size]


class Deduper:
    """The pool of kept texts, growing one candidate at a time (`add`), with exact ROUGE-L decisions.

    threshold: a candidate is kept iff its best ROUGE-L against the pool is <= threshold (Alpaca: 0.7).
    tokens: "char" or "word" (see `jinstruct.filter.rouge.tokenize`).
    k: how many neighbours each decision reports.
    floor: neighbours and best_score are exact for scores >= floor (capped at the threshold); a lower floor finds
        neighbours for more of the kept texts and costs more time (see bench/rouge_dedup.py).
    dense_words: the most frequent token occurrences get one of `64 * dense_words` bits per pool item (speed only).
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        tokens: TokenKind = "char",
        k: int = 10,
        floor: float = 0.5,
        dense_words: int = 2,
    ):
        if tokens not in TOKEN_KINDS:
            raise ValueError(f"tokens must be one of {TOKEN_KINDS}, got {tokens!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if dense_words < 1:
            raise ValueError(f"dense_words must be >= 1, got {dense_words}")
        self.threshold = float(threshold)
        self.tokens: TokenKind = tokens
        self.k = k
        self.floor = min(float(floor), self.threshold)
        self.dense_words = dense_words
        self.texts: list[str] = []  # the pool, seeds first
        self.n_seeds = 0
        # Tokens become code points, numbered in order of first sight: equal tokens get equal codes (LCS is
        # unchanged) and whitespace (char tokens) is dropped.
        self._vocab: dict[str, int | None] = {}
        self._char_table: dict[int, str | None] = {}  # char -> code char, for str.translate
        self._n_codes = 0
        self._seqs = _Growing(object)  # each pool text as its string of codes (picked by fancy indexing)
        self._lens = _Growing(np.intp)  # intp: it indexes the min_lcs row
        self._max_len = 0
        self._bit_of: dict[int, int] = {}  # frequent element -> bit
        self._bits = [_Growing(np.uint64) for _ in range(dense_words)]  # one column per 64 bits
        self._postings: dict[int, _Growing] = {}  # other element -> pool items holding it
        self._doc_freq: Counter[int] = Counter()  # element -> number of pool items holding it

    def __len__(self) -> int:
        return len(self.texts)

    def seed(self, texts: Iterable[str]) -> None:
        """Preload texts into the pool unconditionally (Alpaca preloads the seed tasks)."""
        for text in texts:
            self._append(text, self._encode(text))
        self.n_seeds = len(self.texts)

    def add(self, text: str) -> DedupDecision:
        """Score `text` against the pool; keep it iff its best ROUGE-L is <= threshold."""
        seq = self._encode(text)
        scored = self._score(seq)  # sorted, best first
        best = scored[0][1] if scored else 0.0
        neighbours = scored[: self.k]
        if best > self.threshold:
            return DedupDecision(False, best, neighbours, None)
        self._append(text, seq)
        return DedupDecision(True, best, neighbours, len(self.texts) - 1)

    def add_many(self, texts: Iterable[str]) -> list[DedupDecision]:
        """`add` each text in order."""
        return [self.add(t) for t in texts]

    # --- encoding and indexing ------------------------------------------------------------------------------

    def _encode(self, text: str) -> str:
        if self.tokens == "char":
            text = normalize(text)
            for ch in set(text).difference(self._vocab):
                code = self._vocab[ch] = None if ch.isspace() else self._new_code()
                self._char_table[ord(ch)] = None if code is None else chr(code)
            return text.translate(self._char_table)
        codes = []
        for tok in tokenize(text, self.tokens):
            code = self._vocab.get(tok)
            if code is None:
                code = self._vocab[tok] = self._new_code()
            codes.append(code)
        return "".join(map(chr, codes))

    def _new_code(self) -> int:
        code = self._n_codes + (0x800 if self._n_codes >= 0xD800 else 0)  # skip the surrogates
        self._n_codes += 1
        return code

    @staticmethod
    def _elements(seq: str) -> list[int]:
        return [ord(tok) + j * _ELEMENT_STRIDE for tok, c in Counter(seq).items() for j in range(c)]

    def _append(self, text: str, seq: str) -> None:
        index = len(self.texts)
        self.texts.append(text)
        self._seqs.append(seq)
        self._lens.append(len(seq))
        self._max_len = max(self._max_len, len(seq))
        elements = self._elements(seq)
        self._doc_freq.update(elements)
        self._index_item(index, elements)
        if index + 1 in _REBUILD_AT:
            self._rebuild()

    def _index_item(self, index: int, elements: list[int]) -> None:
        words = [0] * self.dense_words
        bit_of, postings = self._bit_of, self._postings
        for e in elements:
            bit = bit_of.get(e)
            if bit is not None:
                words[bit >> 6] |= 1 << (bit & 63)
                continue
            post = postings.get(e)
            if post is None:
                post = postings[e] = _Growing(np.int32)
            post.append(index)
        for column, word in zip(self._bits, words):
            column.append(word)

    def _rebuild(self) -> None:
        """Give the bits to the pool's most frequent elements and re-index the pool."""
        frequent = [e for e, _ in self._doc_freq.most_common(64 * self.dense_words)]
        if set(frequent) == set(self._bit_of):
            return
        self._bit_of = {e: i for i, e in enumerate(frequent)}
        self._bits = [_Growing(np.uint64) for _ in range(self.dense_words)]
        self._postings = {}
        for index, seq in enumerate(self._seqs.view().tolist()):
            self._index_item(index, self._elements(seq))

    # --- scoring --------------------------------------------------------------------------------------------

    def _score(self, seq: str) -> list[tuple[int, float]]:
        """(pool index, ROUGE-L), best first, for the pool items scoring >= floor: all of them among the top
        max(k, 1), some of the rest."""
        m = len(seq)
        size = self._seqs.size
        if m == 0 or size == 0:
            return []
        lens = self._lens.data[:size]
        # the LCS each pool item needs to score >= floor; at least 1, for a score of 0 is no neighbour
        need = np.maximum(min_lcs_row(m, self._max_len, self.floor, strict=False), 1)[lens]
        # The multiset overlap with every pool item, an upper bound of the LCS.
        words = [0] * self.dense_words
        lists = []
        bit_of, postings = self._bit_of, self._postings
        for e in self._elements(seq):
            bit = bit_of.get(e)
            if bit is not None:
                words[bit >> 6] |= 1 << (bit & 63)
                continue
            post = postings.get(e)
            if post is not None:
                lists.append(post.data[: post.size])
        overlap = np.bincount(np.concatenate(lists), minlength=size) if lists else np.zeros(size, dtype=np.int64)
        for column, word in zip(self._bits, words):
            if word:
                overlap += np.bitwise_count(column.data[:size] & np.uint64(word))
        cand = np.flatnonzero(overlap >= need)
        if len(cand) == 0:
            return []
        # Exact LCS in decreasing order of the bound, in growing chunks, until the k-th best exact score beats the
        # bound of every item left (F is increasing in the LCS, so an item's F is at most its bound's F).
        bound_f = fmeasure_array(overlap[cand], m, lens[cand])
        order = np.argsort(-bound_f, kind="stable")
        cand, bound_f = cand[order], bound_f[order]
        want = max(self.k, 1)
        found: list[tuple[int, float]] = []
        start, step = 0, 2 * want + 6
        while start < len(cand):
            stop = min(len(cand), start + step)
            found = sorted(found + self._exact(seq, cand[start:stop], need), key=_best_first)
            start, step = stop, step * 2
            if start < len(cand) and len(found) >= want and found[want - 1][1] > bound_f[start]:
                break
        return found

    def _exact(self, seq: str, items: np.ndarray, need: np.ndarray) -> list[tuple[int, float]]:
        lcs = _lcs(seq, self._seqs.data[items])
        hit = lcs >= need[items]
        m, lens = len(seq), self._lens.data
        return [(i, fmeasure(l, m, int(lens[i]))) for i, l in zip(items[hit].tolist(), lcs[hit].tolist())]


def _best_first(pair: tuple[int, float]) -> tuple[float, int]:
    return (-pair[1], pair[0])


def _lcs(query: str, choices: np.ndarray) -> np.ndarray:
    return process.cdist([query], choices, scorer=LCSseq.similarity, dtype=np.int32)[0]


def dedup(
    texts: Sequence[str],
    against: Iterable[str] = (),
    threshold: float = DEFAULT_THRESHOLD,
    tokens: TokenKind = "char",
) -> list[bool]:
    """For each text in order, whether the greedy filter keeps it (the `against` texts, e.g. seeds, preloaded)."""
    deduper = Deduper(threshold=threshold, tokens=tokens, k=0, floor=threshold)
    deduper.seed(against)
    return [deduper.add(t).kept for t in texts]


# --- CLI -------------------------------------------------------------------------------------------------------


def _read_field(path: Path, field_name: str) -> tuple[list[dict], list[str]]:
    records, texts = [], []
    for line, obj in iter_jsonl(path):
        value = obj.get(field_name)
        if not isinstance(value, str):
            problem = "missing" if value is None else f"expected a string, got {type(value).__name__}"
            raise DataError(path, line, field_name, problem)
        records.append(obj)
        texts.append(value)
    return records, texts


def _run_cli(args: argparse.Namespace) -> int:
    records, texts = _read_field(Path(args.input), args.field)
    seeds: list[str] = []
    if args.against:
        _, seeds = _read_field(Path(args.against), args.against_field or args.field)
    keep = dedup(texts, against=seeds, threshold=args.threshold, tokens=args.tokens)
    write_jsonl(args.out, [r for r, k in zip(records, keep) if k])
    kept = sum(keep)
    print(f"read {len(texts)}, against {len(seeds)}, kept {kept}, removed {len(texts) - kept} -> {args.out}")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    """`python -m jinstruct dedup IN.jsonl --field instruction [--against SEEDS.jsonl] --out OUT.jsonl`."""
    p = sub.add_parser("dedup", help="greedy ROUGE-L dedup of a JSON Lines file (Alpaca's filter, exact)")
    p.add_argument("input", help="JSON Lines file of records")
    p.add_argument("--field", default="instruction", help="the text field to compare (default: instruction)")
    p.add_argument("--against", help="JSON Lines file preloaded into the pool (e.g. the seed tasks)")
    p.add_argument("--against-field", help="text field in --against (default: --field)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="keep iff best ROUGE-L <= this")
    p.add_argument("--tokens", choices=TOKEN_KINDS, default="char", help="character or word (fugashi) tokens")
    p.add_argument("--out", required=True, help="where to write the kept records")
    p.set_defaults(func=_run_cli)
