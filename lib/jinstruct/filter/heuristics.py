"""Heuristic filters for generated Japanese instructions, Alpaca's post-processing adapted to Japanese.

Each filter looks at one record ({"instruction", "input", "output", ...}) and returns a `Rejection` (a stable reason
code plus a human-readable detail) or None. `check_record` runs them in the order of `REASONS`, and `Filters` adds the
one filter that needs memory (exact duplicates after normalization). Every threshold and word list is a field of
`FilterParams`, with defaults that suit generated Japanese instructions.

Lengths are counted in characters of the NFKC-normalized, stripped text.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jinstruct.paths import prompt_path
from jinstruct.filter.rouge import normalize, tagger

REASONS = (
    "empty_instruction",
    "empty_output",
    "instruction_too_short",
    "instruction_too_long",
    "output_too_short",
    "output_too_long",
    "copied_from_prompt",
    "starts_with_punctuation",
    "starts_with_list_marker",
    "too_little_japanese",
    "unsupported_task",
    "input_equals_output",
    "cut_off_output",
    "exact_duplicate",
)
"""Reason codes of the heuristic filters, in the order they are checked (ROUGE-L dedup comes after them all)."""

# Tasks a text-only model cannot do: perceive or produce images, figures, files, maps, sound, video. Japanese words
# are matched as whole morphemes (fugashi), so 図 matches in 下の図を見て but not in 図書館 or 意図.
UNSUPPORTED_JA = [
    "画像", "図", "図表", "図面", "図解", "図示", "グラフ", "チャート", "フローチャート", "ファイル", "添付", "地図",
    "音声", "録音", "動画", "映像", "ビデオ", "写真", "絵", "イラスト", "スケッチ", "描画", "描く", "スクリーンショット",
    "ウェブサイト",
]
# Alpaca's list (image, graph, picture, file, map, draw, plot, go to, video, audio, music, flowchart,
# diagram) and a few more.
UNSUPPORTED_EN = [
    "image", "images", "graph", "graphs", "picture", "pictures", "photo", "photos", "file", "files", "map", "maps",
    "draw", "drawing", "plot", "go to", "video", "videos", "audio", "music", "flowchart", "diagram", "diagrams",
    "chart", "charts", "screenshot", "url",
]
# Compounds that contain such a word but ask for nothing a text model cannot do: removed before matching.
ALLOWED_COMPOUNDS = [
    "地図記号", "絵文字", "写真家", "音声学", "動画配信", "画像認識", "音声認識", "絵画", "絵本", "似顔絵", "図書",
]
# Lines of the generation prompt's format that a model may copy into an item.
PROMPT_MARKERS = ["指示:", "入力:", "出力:", "<入力なし>", "###", "タスクのリスト", "{demos}", "{next}", "{total}"]
LIST_MARKER = re.compile(r"^(\d{1,3}\s*[.)、:]|\(\d{1,3}\)|[a-z][.)]\s|[-*+•・●○■□◆◇▪▶→※]|[①-⑳]|[一二三四五六七八九十]+[、.)])")
SENTENCE_END = "。．.!！?？」』)）]】〉》…♪〜~ー"


def prompt_phrases(prompt_text: str, min_chars: int = 12) -> list[str]:
    """Sentences of a generation prompt (placeholders removed, normalized) long enough to be telling when an
    instruction contains one: the phrases the `copied_from_prompt` filter looks for."""
    text = re.sub(r"\{[a-z_]+\}", "\n", prompt_text)
    out: list[str] = []
    for line in text.splitlines():
        line = re.sub(r"^\s*\d+\.\s*", "", line)
        for sentence in re.split(r"(?<=[。！？!?])", line):
            sentence = normalize(sentence).strip()
            if len(sentence) >= min_chars and sentence not in out:
                out.append(sentence)
    return out


def _default_template_phrases() -> list[str]:
    path = prompt_path("self_instruct_ja.txt")
    phrases = prompt_phrases(path.read_text(encoding="utf-8")) if path.exists() else []
    return [normalize(m) for m in PROMPT_MARKERS] + phrases


class FilterParams(BaseModel):
    """Settings of the heuristic filters and of the ROUGE-L dedup that follows them (lengths in characters)."""

    model_config = ConfigDict(extra="forbid")

    min_instruction_chars: int = Field(5, ge=0)
    max_instruction_chars: int = Field(400, ge=1)
    min_output_chars: int = Field(1, ge=0)
    max_output_chars: int = Field(2000, ge=1)
    min_japanese_share: float = Field(0.5, ge=0, le=1, description="kana/kanji share of the instruction's letters")
    min_japanese_share_output: float = Field(0.0, ge=0, le=1, description="the same for the output (0: off)")
    unsupported_ja: list[str] = Field(default_factory=lambda: list(UNSUPPORTED_JA))
    unsupported_en: list[str] = Field(default_factory=lambda: list(UNSUPPORTED_EN))
    allowed_compounds: list[str] = Field(default_factory=lambda: list(ALLOWED_COMPOUNDS))
    template_phrases: list[str] = Field(default_factory=_default_template_phrases)
    reject_punctuation_start: bool = True
    reject_list_marker_start: bool = True
    reject_input_equals_output: bool = True
    reject_cut_off: bool = True
    cut_off_endings: str = Field("、,をにがはのとでてや(「『・:", description="last characters of a cut-off output")
    cut_off_min_chars: int = Field(30, ge=0, description="shorter outputs are never judged cut off by their ending")
    reject_exact_duplicates: bool = True
    rouge_dedup: bool = True
    rouge_threshold: float = Field(0.7, ge=0, le=1)
    rouge_tokens: str = Field("char", pattern="^(char|word)$")


@dataclass(frozen=True)
class Rejection:
    reason: str  # one of REASONS, or "rouge_duplicate" from the dedup stage
    detail: str


def _clean(text: Any) -> str:
    return normalize(text).strip() if isinstance(text, str) else ""


def japanese_share(text: str) -> float:
    """Share of hiragana, katakana and kanji among the letters (alphabetic characters) of `text`; 0 without letters."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    return sum(_is_japanese(ch) for ch in letters) / len(letters)


def _is_japanese(ch: str) -> bool:
    code = ord(ch)
    return (
        0x3040 <= code <= 0x30FF  # hiragana, katakana
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0x3400 <= code <= 0x4DBF  # extension A
        or 0xF900 <= code <= 0xFAFF  # compatibility ideographs
        or 0x20000 <= code <= 0x2FA1F  # extensions B and later
        or ch in "々〆ヵヶ"
    )


@lru_cache(maxsize=8)
def _english_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """Whole words (not inside a longer ASCII word: `map` is not in `mapping`)."""
    return re.compile(r"(?<![a-z])(" + "|".join(re.escape(w) for w in words) + r")(?![a-z])")


def unsupported_word(text: str, params: FilterParams) -> str | None:
    """The first word in `text` that asks for something a text model cannot do, or None."""
    text = normalize(text)
    for compound in params.allowed_compounds:
        text = text.replace(normalize(compound), "　")
    ja = {normalize(w) for w in params.unsupported_ja}
    for word in tagger()(text):
        lemma = word.feature.lemma or ""
        if word.surface in ja or (lemma and normalize(lemma.split("-")[0]) in ja):
            return word.surface
    if params.unsupported_en:
        found = _english_pattern(tuple(normalize(w) for w in params.unsupported_en)).search(text)
        if found:
            return found.group(1)
    return None


def check_record(record: Mapping[str, Any], params: FilterParams) -> Rejection | None:
    """The first heuristic that rejects `record` (in the order of REASONS, exact duplicates aside), or None."""
    instruction = _clean(record.get("instruction"))
    inp = _clean(record.get("input"))
    output = _clean(record.get("output"))
    if not instruction:
        return Rejection("empty_instruction", "the instruction is empty")
    if not output:
        return Rejection("empty_output", "the output is empty")
    if len(instruction) < params.min_instruction_chars:
        return Rejection("instruction_too_short", f"{len(instruction)} < {params.min_instruction_chars} characters")
    if len(instruction) > params.max_instruction_chars:
        return Rejection("instruction_too_long", f"{len(instruction)} > {params.max_instruction_chars} characters")
    if len(output) < params.min_output_chars:
        return Rejection("output_too_short", f"{len(output)} < {params.min_output_chars} characters")
    if len(output) > params.max_output_chars:
        return Rejection("output_too_long", f"{len(output)} > {params.max_output_chars} characters")
    for phrase in params.template_phrases:
        phrase = normalize(phrase).strip()
        if phrase and phrase in instruction:
            return Rejection("copied_from_prompt", f"contains the prompt's {phrase!r}")
    first = instruction[0]
    raw = str(record.get("instruction")).strip()
    marker = LIST_MARKER.match(raw) or LIST_MARKER.match(instruction)  # raw: NFKC turns ① into 1
    if params.reject_list_marker_start and marker:
        return Rejection("starts_with_list_marker", f"starts with {marker.group(0)!r}")
    if params.reject_punctuation_start and (first in string.punctuation or unicodedata.category(first)[0] in "PS"):
        return Rejection("starts_with_punctuation", f"starts with {first!r}")
    share = japanese_share(instruction)
    if share < params.min_japanese_share:
        return Rejection("too_little_japanese", f"instruction: {share:.0%} Japanese < {params.min_japanese_share:.0%}")
    if params.min_japanese_share_output > 0:
        share = japanese_share(output)
        if share < params.min_japanese_share_output:
            return Rejection("too_little_japanese",
                             f"output: {share:.0%} Japanese < {params.min_japanese_share_output:.0%}")
    word = unsupported_word(instruction, params)
    if word is not None:
        return Rejection("unsupported_task", f"needs more than text: {word!r}")
    if params.reject_input_equals_output and inp and re.sub(r"\s", "", inp) == re.sub(r"\s", "", output):
        return Rejection("input_equals_output", "the output repeats the input")
    if params.reject_cut_off:
        if record.get("finish_reason") == "length" or record.get("truncated") is True:
            return Rejection("cut_off_output", "the reply was cut off at the token limit")
        if len(output) >= params.cut_off_min_chars and output[-1] in params.cut_off_endings:
            return Rejection("cut_off_output", f"the output ends mid-sentence with {output[-1]!r}")
    return None


def duplicate_key(record: Mapping[str, Any]) -> tuple[str, str]:
    """What makes two records exact duplicates: instruction and input, normalized, whitespace removed."""
    return (re.sub(r"\s", "", _clean(record.get("instruction"))), re.sub(r"\s", "", _clean(record.get("input"))))


class Filters:
    """The heuristic filters with memory: `check` is `check_record` plus exact duplicates of earlier passed records."""

    def __init__(self, params: FilterParams | None = None):
        self.params = params or FilterParams()
        self._seen: dict[tuple[str, str], str] = {}

    def check(self, record: Mapping[str, Any]) -> Rejection | None:
        rejection = check_record(record, self.params)
        if rejection is not None:
            return rejection
        if self.params.reject_exact_duplicates:
            key = duplicate_key(record)
            if key in self._seen:
                return Rejection("exact_duplicate", f"same instruction and input as {self._seen[key]}")
            self._seen[key] = str(record.get("id", len(self._seen)))
        return None

    def __call__(self, record: Mapping[str, Any]) -> str | None:
        """A generation-stage task filter: the reason code, or None."""
        rejection = self.check(record)
        return None if rejection is None else rejection.reason


def split(records: Iterable[Mapping[str, Any]], params: FilterParams | None = None):  # type: ignore[no-untyped-def]
    """(passed records, [(record, Rejection)]) in input order."""
    filters = Filters(params)
    passed, rejected = [], []
    for record in records:
        rejection = filters.check(record)
        if rejection is None:
            passed.append(record)
        else:
            rejected.append((record, rejection))
    return passed, rejected
