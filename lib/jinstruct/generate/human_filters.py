"""The filters of human-written instructions, each decision recorded with its reason (arXiv 2503.23714's fields).

Checked in this order; a row is dropped for the first reason that applies, and flagged for the others it can be:

1. `empty`: nothing left after Unicode NFKC normalisation and stripping (`empty_user_instruction`).
2. `duplicate`: the same NFKC-normalised, stripped text as an earlier row; the first row is kept and the others
   record its id (`duplicate_user_instruction`, the published set's `duplicate_user_instruction_ja` on the source).
3. `too_long`: more than `max_chars` characters.
4. `language`: a language outside `languages`, identified by py3langid (a maintained fork of langid.py whose model
   ships inside the wheel, so it runs offline) with a normalised probability of at least
   `min_language_confidence`; a low-confidence guess (a formula, a short phrase) is not a reason to drop a row.
5. `template`: near-duplicates of the same template. Each remaining instruction is reduced to its *skeleton*
   (NFKC, `NAME_n` placeholders, quoted spans and runs of capitalised words mid-sentence replaced by slots,
   digits by 0, lowercased; Latin words and single CJK characters as tokens), its skeleton's 3-token shingles are
   hashed into a MinHash, and datasketch's MinHash LSH finds the pairs whose estimated Jaccard similarity is above
   `template_similarity`. Connected pairs form clusters; a cluster of at least `template_min_size` rows is a
   template (`is_template_instruction`), named by its most characteristic words (in most of its rows, rare
   elsewhere: document frequency in the cluster times inverse document frequency over all rows).
   All its rows are dropped (`drop_templates`), as the published set excludes them.

`NAME_1`-style placeholders (LMSYS-Chat-1M's anonymisation) are kept and flagged (`has_placeholder`).

The sources file is read three times as a stream (decisions and MinHashes; the words of template rows; writing),
so memory holds per-row decisions and one MinHash signature per candidate row, not the texts.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

REASONS = ("empty", "duplicate", "too_long", "language", "template")
PLACEHOLDER = re.compile(r"\bNAME_\d+\b")
_QUOTED = re.compile(r"「[^」]*」|『[^』]*』|\"[^\"\n]*\"|“[^”\n]*”")
_NAMES = re.compile(r"(?<=[^.!?\s]\s)(?:[A-Z][\w&'.-]*[\s,]*)+")  # capitalised words after a word inside a sentence
_TOKEN = re.compile(r"〈[a-z]〉|[a-z]+|\d+|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")
_NAME_WORD = re.compile(r"[a-z]{3,}|[\u30a0-\u30ff]{2,}|[\u3400-\u4dbf\u4e00-\u9fff]{2,}")


class FilterSettings(BaseModel):
    """The filters' settings (`generate.human_instructions.filters`)."""

    model_config = ConfigDict(extra="forbid")

    max_chars: int = Field(default=3000, ge=1)  # longer instructions are dropped (too_long)
    languages: list[str] = Field(default_factory=lambda: ["en", "ja"])  # ISO 639-1 codes kept
    min_language_confidence: float = Field(default=0.5, ge=0, le=1)  # drop another language only at least this sure
    template_similarity: float = Field(default=0.6, gt=0, lt=1)  # MinHash LSH Jaccard threshold over skeletons
    template_min_size: int = Field(default=5, ge=2)  # a cluster this large is a template
    template_name_words: int = Field(default=3, ge=1)
    num_perm: int = Field(default=64, ge=16)
    shingle: int = Field(default=3, ge=1)
    drop_templates: bool = True


def normalize(text: str) -> str:
    """NFKC and stripped: what "the same instruction" means for emptiness and exact duplicates."""
    return unicodedata.normalize("NFKC", text).strip()


def has_placeholder(text: str) -> bool:
    return PLACEHOLDER.search(text) is not None


def skeleton(text: str) -> list[str]:
    """The tokens of an instruction's template: what stays when the slot fillers are taken out."""
    s = unicodedata.normalize("NFKC", text)
    s = PLACEHOLDER.sub(" 〈p〉 ", s)
    s = _QUOTED.sub(" 〈q〉 ", s)
    s = _NAMES.sub(" 〈n〉 ", s)
    return ["0" if t.isdigit() else t for t in _TOKEN.findall(s.lower())]


def shingles(tokens: Sequence[str], k: int) -> set[str]:
    return {" ".join(tokens[i: i + k]) for i in range(max(1, len(tokens) - k + 1))} if tokens else set()


def name_words(text: str) -> set[str]:
    """The words a template's name is made of: Latin words of 3+ letters, katakana and kanji runs of 2+."""
    return set(_NAME_WORD.findall(unicodedata.normalize("NFKC", text).lower()))


class LanguageID:
    """py3langid with normalised probabilities, loaded once."""

    @cached_property
    def _identifier(self) -> Any:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def __call__(self, text: str) -> tuple[str, float]:
        lang, p = self._identifier.classify(text)
        return str(lang), float(p)


@dataclass
class _Decision:
    reason: str | None = None
    duplicate_of: str | None = None
    language: str | None = None
    confidence: float | None = None
    cluster: int | None = None  # the row's template cluster root (set for template rows)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class FilterOutcome:
    """What the filters decided: rows read, dropped by reason, flagged, and the templates found (name -> rows)."""

    rows: int
    kept: int
    dropped: dict[str, int]
    placeholders_kept: int
    templates: dict[str, int]


class InstructionFilter:
    """The filters over a re-readable stream of source rows (`{conversation_id, language, instruction}`)."""

    def __init__(self, settings: FilterSettings, language_id: LanguageID | None = None):
        self.s = settings
        self.language_id = language_id or LanguageID()

    def decide(self, rows: Iterable[dict[str, Any]]) -> tuple[list[_Decision], dict[int, int]]:
        """Pass 1 and the clustering: each row's decision, and each template cluster's root -> its size."""
        from datasketch import MinHash, MinHashLSH

        s = self.s
        first: dict[bytes, str] = {}
        decisions: list[_Decision] = []
        lsh = MinHashLSH(threshold=s.template_similarity, num_perm=s.num_perm)
        hashes: dict[int, Any] = {}
        for i, row in enumerate(rows):
            text = normalize(row["instruction"])
            d = _Decision()
            digest = hashlib.sha1(text.encode("utf-8")).digest()
            if not text:
                d.reason = "empty"
            elif digest in first:
                d.reason, d.duplicate_of = "duplicate", first[digest]
            else:
                first[digest] = row["conversation_id"]
                if len(text) > s.max_chars:
                    d.reason = "too_long"
                else:
                    d.language, d.confidence = self.language_id(text)
                    if d.language not in s.languages and d.confidence >= s.min_language_confidence:
                        d.reason = "language"
            if d.reason is None:
                m = MinHash(num_perm=s.num_perm, seed=1)
                m.update_batch([g.encode("utf-8") for g in shingles(skeleton(text), s.shingle)])
                lsh.insert(i, m)
                hashes[i] = m
            decisions.append(d)
        groups = _UnionFind()
        for i, m in hashes.items():
            for j in lsh.query(m):
                groups.union(i, j)
        sizes = Counter(groups.find(i) for i in hashes)
        templates = {root: n for root, n in sizes.items() if n >= s.template_min_size}
        for i in hashes:
            root = groups.find(i)
            if root in templates:
                decisions[i].cluster = root
                if s.drop_templates:
                    decisions[i].reason = "template"
        return decisions, templates

    def names(self, rows: Iterable[dict[str, Any]], decisions: Sequence[_Decision],
              templates: dict[int, int]) -> dict[int, str]:
        """Pass 2: each template cluster's name, from its rows' words against all candidate rows' words."""
        in_cluster: dict[int, Counter[str]] = {root: Counter() for root in templates}
        df: Counter[str] = Counter()
        candidates = 0
        for row, d in zip(rows, decisions):
            if d.reason not in (None, "template"):
                continue
            words = name_words(row["instruction"])
            candidates += 1
            df.update(words)
            if d.cluster is not None:
                in_cluster[d.cluster].update(words)
        names: dict[int, str] = {}
        for root, counts in in_cluster.items():
            size = templates[root]
            ranked = sorted(counts, key=lambda w: (-counts[w] / size * math.log(candidates / df[w] + 1), w))
            names[root] = " ".join(ranked[: self.s.template_name_words]) or f"template {root}"
        return names

    def records(self, rows: Iterable[dict[str, Any]], decisions: Sequence[_Decision],
                names: dict[int, str]) -> Iterator[dict[str, Any]]:
        """Pass 3: every row with its flags and decision (`kept`, `drop_reason`)."""
        for row, d in zip(rows, decisions):
            yield {
                "conversation_id": row["conversation_id"],
                "instruction": row["instruction"],
                "language": row.get("language"),
                "language_detected": d.language,
                "language_confidence": None if d.confidence is None else round(d.confidence, 4),
                "empty_user_instruction": d.reason == "empty",
                "duplicate_user_instruction": d.duplicate_of,
                "is_template_instruction": names.get(d.cluster) if d.cluster is not None else None,
                "has_placeholder": has_placeholder(row["instruction"]),
                "kept": d.reason is None,
                "drop_reason": d.reason,
            }


def outcome(records: Iterable[dict[str, Any]]) -> FilterOutcome:
    """Counts over the filtered records (a finished `filtered.jsonl`)."""
    rows = kept = placeholders = 0
    dropped: Counter[str] = Counter()
    templates: Counter[str] = Counter()
    for r in records:
        rows += 1
        if r["kept"]:
            kept += 1
            placeholders += r["has_placeholder"]
        else:
            dropped[r["drop_reason"]] += 1
        if r["is_template_instruction"]:
            templates[r["is_template_instruction"]] += 1
    return FilterOutcome(rows, kept, {k: dropped[k] for k in REASONS}, placeholders, dict(templates))
