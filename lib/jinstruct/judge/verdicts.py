"""Reading the judge's verdict out of its reply.

Pairwise replies end with `[[A]]`, `[[B]]` or `[[C]]` (tie); single grading replies with `[[N]]` or
`Rating: [[N]]`. Judges writing Japanese also use full-width forms (`［［Ａ］］`, `【【B】】`, `[[８]]`), so the
reply is NFKC-normalised and lenticular brackets 【】 are read as [] first.

What the parser decides, and why (rule="last", the default):

- Several verdicts in one reply: the **last** one counts. Judges explain first and conclude last; earlier
  tokens are usually the judge restating the format. FastChat instead checks `"[[A]]" in reply` before
  `"[[B]]"` and `"[[C]]"`, so any reply that mentions `[[A]]` anywhere is a win for A, a bias towards the
  first position. `rule="fastchat"` reproduces FastChat exactly (on the raw reply), for re-scoring its files.
- A verdict that only echoes the instructions is ignored: three consecutive tokens naming A, B and C close
  together ("[[A]] if A is better, [[B]] if B is better, [[C]] for a tie") are the format, not a verdict.
- A rating that follows "example" / "e.g." / "例" (the prompt's `for example: "Rating: [[5]]"`) is ignored
  when the reply holds another rating.
- Fallbacks, only when no double-bracket verdict is left: a single-bracket `[B]` that ends the reply, and for
  ratings a number after a rating word (`Rating: 7`, `評価：[8]`, `スコア: 6/10`).
- A rating outside the scale (1-10 by default; a prompt's `rating_range`, e.g. 0-10, otherwise) is an error, not a
  clipped score.
- Anything else is an error: `winner`/`score` is None and `error` says why. An error is never a win or a loss.

Structured outputs: `PAIR_VERDICT_SCHEMA` / `RATING_SCHEMA` are JSON schemas for
`{"reasoning": str, "verdict": "A"|"B"|"C"}` and `{"reasoning": str, "rating": 1..10}` (reasoning first,
so the judge explains before it decides); `parse_pair_json` / `parse_rating_json` read them, and the text
parsers accept such a JSON reply too.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PairWinner = Literal["A", "B", "tie"]
Rule = Literal["last", "fastchat"]
API_ERROR_OUTPUT = "$ERROR$"  # what FastChat stores when the judge call itself failed
TIE_DELTA = 0.1  # FastChat: two scores closer than this are a tie ("[[rating_a,rating_b]]" format)


@dataclass(frozen=True)
class PairVerdict:
    """A pairwise verdict: winner "A" (the first answer shown), "B" or "tie"; or None and an error."""

    winner: PairWinner | None
    error: str | None = None
    conflicting: bool = False  # the reply held different verdicts; the last one was taken

    @property
    def ok(self) -> bool:
        return self.winner is not None


@dataclass(frozen=True)
class Rating:
    """A single-grading verdict: the score, or None and an error."""

    score: float | int | None
    error: str | None = None
    conflicting: bool = False

    @property
    def ok(self) -> bool:
        return self.score is not None


def normalize(text: str) -> str:
    """NFKC (full-width letters, digits and brackets become ASCII) and 【】〚〛 read as []."""
    text = unicodedata.normalize("NFKC", text)
    return text.translate(str.maketrans("【〚〖】〛〗", "[[[]]]"))


_PAIR = re.compile(r"\[\[\s*([ABC])\s*\]\]", re.IGNORECASE)
_PAIR_SINGLE_AT_END = re.compile(r"(?<!\[)\[\s*([ABC])\s*\](?!\])[\s\W]*$", re.IGNORECASE)
_NUMBER = r"(\d+(?:\.\d+)?)"
_RATING = re.compile(r"\[\[\s*" + _NUMBER + r"\s*(?:/\s*10\s*)?\]\]")
_RATING_WORD = re.compile(
    r"(?:rating|score|評価|スコア|点数|得点)\s*[:=]?\s*\[?\s*" + _NUMBER + r"\s*(?:/\s*10|点)?\s*\]?", re.IGNORECASE
)
_TWO_SCORES = re.compile(r"\[\[\s*" + _NUMBER + r"\s*,\s*" + _NUMBER + r"\s*\]\]")
_TWO_SCORES_BACKUP = re.compile(r"\[\s*" + _NUMBER + r"\s*,\s*" + _NUMBER + r"\s*\]")
_EXAMPLE_BEFORE = re.compile(r"(example|e\.g\.|for instance|例)[^\n\[]{0,20}$", re.IGNORECASE)
_ECHO_GAP = 60  # characters between verdict tokens that belong to one enumeration of the options
_LETTER = {"A": "A", "B": "B", "C": "tie"}


def _number(s: str) -> float | int:
    return float(s) if "." in s else int(s)


def _failed_call(text: str) -> str | None:
    if not text or not text.strip():
        return "empty reply"
    if text.strip() == API_ERROR_OUTPUT:
        return "the judge call failed ($ERROR$)"
    return None


def _drop_echoes(matches: list[re.Match[str]]) -> tuple[list[re.Match[str]], bool]:
    """Remove enumerations of the options (the format, repeated): three consecutive, closely spaced tokens
    naming A, B and C."""
    kept: list[re.Match[str]] = []
    dropped = False
    i = 0
    while i < len(matches):
        three = matches[i: i + 3]
        if (len(three) == 3 and {m.group(1).upper() for m in three} == {"A", "B", "C"}
                and all(b.start() - a.end() <= _ECHO_GAP for a, b in zip(three, three[1:]))):
            dropped = True
            i += 3
        else:
            kept.append(matches[i])
            i += 1
    return kept, dropped


def parse_pair_verdict(text: str, rule: Rule = "last") -> PairVerdict:
    """The verdict of a pairwise reply ("[[A]]" output format); see the module's rules."""
    if (why := _failed_call(text)) is not None:
        return PairVerdict(None, why)
    if rule == "fastchat":
        for token, winner in (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie")):
            if token in text:
                return PairVerdict(winner)  # type: ignore[arg-type]
        return PairVerdict(None, "no [[A]], [[B]] or [[C]] in the reply")
    if text.lstrip().startswith("{"):
        structured = parse_pair_json(text)
        if structured.ok:
            return structured
    norm = normalize(text)
    matches, echoed = _drop_echoes(list(_PAIR.finditer(norm)))
    if matches:
        letters = [m.group(1).upper() for m in matches]
        return PairVerdict(_LETTER[letters[-1]], conflicting=len(set(letters)) > 1)  # type: ignore[arg-type]
    if (m := _PAIR_SINGLE_AT_END.search(norm)) is not None:
        return PairVerdict(_LETTER[m.group(1).upper()])  # type: ignore[arg-type]
    if echoed:
        return PairVerdict(None, "the reply only repeats the format ([[A]], [[B]], [[C]]) without a verdict")
    return PairVerdict(None, "no [[A]], [[B]] or [[C]] in the reply")


def parse_pair_scores(text: str, tie_delta: float = TIE_DELTA) -> PairVerdict:
    """FastChat's "[[rating_a,rating_b]]" format: the higher score wins, a tie within `tie_delta`."""
    if (why := _failed_call(text)) is not None:
        return PairVerdict(None, why)
    norm = normalize(text)
    found = list(_TWO_SCORES.finditer(norm)) or list(_TWO_SCORES_BACKUP.finditer(norm))
    if not found:
        return PairVerdict(None, "no [[rating_a,rating_b]] in the reply")
    a, b = (float(x) for x in found[-1].groups())
    winner: PairWinner = "tie" if abs(a - b) <= tie_delta else ("A" if a > b else "B")
    return PairVerdict(winner, conflicting=len({m.groups() for m in found}) > 1)


def _not_examples(text: str, matches: list[re.Match[str]]) -> list[re.Match[str]]:
    """Drop matches that follow "example"/"例" (a quoted format example), unless nothing else is left."""
    real = [m for m in matches if not _EXAMPLE_BEFORE.search(text[max(0, m.start() - 40): m.start()])]
    return real or matches


def parse_rating(text: str, low: float = 1, high: float = 10, rule: Rule = "last") -> Rating:
    """The score of a single-grading reply ("[[rating]]" output format); see the module's rules."""
    if (why := _failed_call(text)) is not None:
        return Rating(None, why)
    if rule == "fastchat":  # re.search of [[N]], then of [N]; first match; no range check
        m = re.search(r"\[\[(\d+\.?\d*)\]\]", text) or re.search(r"\[(\d+\.?\d*)\]", text)
        return Rating(_number(m.group(1).rstrip(".")) if m else None, None if m else "no [[rating]] in the reply")
    if text.lstrip().startswith("{"):
        structured = parse_rating_json(text, low, high)
        if structured.ok:
            return structured
    norm = normalize(text)
    found = _not_examples(norm, list(_RATING.finditer(norm))) or _not_examples(norm, list(_RATING_WORD.finditer(norm)))
    if not found:
        return Rating(None, "no [[rating]] in the reply")
    values = [_number(m.group(1)) for m in found]
    score = values[-1]
    if not low <= score <= high:
        return Rating(None, f"rating {score} is outside {low:g}-{high:g}")
    return Rating(score, conflicting=len(set(values)) > 1)


def parse_verdict(text: str, output_format: str, rule: Rule = "last",
                  scale: tuple[float, float] = (1, 10)) -> PairVerdict | Rating:
    """Dispatch on a judge prompt's `output_format`: "[[A]]", "[[rating]]" (on the prompt's `scale`, see
    `JudgePrompt.scale`) or "[[rating_a,rating_b]]"."""
    fmt = output_format.replace(" ", "")
    if fmt == "[[A]]":
        return parse_pair_verdict(text, rule)
    if fmt == "[[rating]]":
        return parse_rating(text, scale[0], scale[1], rule=rule)
    if fmt == "[[rating_a,rating_b]]":
        return parse_pair_scores(text)
    raise ValueError(f"unknown output_format {output_format!r}; expected [[A]], [[rating]] or [[rating_a,rating_b]]")


def fastchat_winner(verdict: PairVerdict, game: Literal[1, 2]) -> Literal["model_1", "model_2", "tie", "error"]:
    """The winner as FastChat stores it. Game 1 shows model_1 as A; game 2 swaps, so there A is model_2."""
    if verdict.winner is None:
        return "error"
    if verdict.winner == "tie":
        return "tie"
    first, second = ("model_1", "model_2") if game == 1 else ("model_2", "model_1")
    return first if verdict.winner == "A" else second


def game_outcome(g1_winner: str, g2_winner: str) -> str:
    """FastChat's reading of one game: "error", "tie" (a tie or the orders disagree), "model_1" or "model_2"."""
    if g1_winner == "error" or g2_winner == "error":
        return "error"
    if g1_winner == "tie" or g1_winner != g2_winner:
        return "tie"
    return g1_winner


def game_outcome_2023(g1_winner: str, g2_winner: str) -> str:
    """The 2023 ja-vicuna-qa-benchmark reading of one game (its `show_result.py`): "tie" when game 1 says tie or the
    two orders disagree (so a game with one error verdict is a tie), else the winner both orders named, where two
    agreeing error verdicts fall to "model_2" as that code's else-branch did. Errors are never left out."""
    if g1_winner == "tie" or g1_winner != g2_winner:
        return "tie"
    return "model_1" if g1_winner == "model_1" else "model_2"


# ---- structured outputs -------------------------------------------------------------------------------------


class PairVerdictJSON(BaseModel):
    """A structured pairwise verdict: the explanation first, then "A", "B" or "C" (tie)."""

    model_config = ConfigDict(extra="forbid", title="pair_verdict")
    reasoning: str
    verdict: Literal["A", "B", "C"]


class RatingJSON(BaseModel):
    """A structured 1-10 grade: the explanation first, then the rating."""

    model_config = ConfigDict(extra="forbid", title="rating")
    reasoning: str
    rating: int = Field(ge=1, le=10)


PAIR_VERDICT_SCHEMA: dict[str, Any] = PairVerdictJSON.model_json_schema()
RATING_SCHEMA: dict[str, Any] = RatingJSON.model_json_schema()


def _as_object(data: str | Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    if isinstance(data, Mapping):
        return dict(data), None
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as e:
        return None, f"reply is not valid JSON ({e.msg})"
    if not isinstance(obj, dict):
        return None, f"reply is JSON but not an object ({type(obj).__name__})"
    return obj, None


def _first_problem(e: ValidationError) -> str:
    err = e.errors()[0]
    return f"field '{'.'.join(str(p) for p in err['loc'])}': {err['msg']}"


def parse_pair_json(data: str | Mapping[str, Any]) -> PairVerdict:
    """A structured pairwise reply (`PAIR_VERDICT_SCHEMA`), as text or already parsed."""
    obj, why = _as_object(data)
    if obj is None:
        return PairVerdict(None, why)
    if isinstance(obj.get("verdict"), str):
        obj["verdict"] = normalize(obj["verdict"]).strip().strip("[]").strip().upper()
    try:
        v = PairVerdictJSON.model_validate(obj)
    except ValidationError as e:
        return PairVerdict(None, _first_problem(e))
    return PairVerdict(_LETTER[v.verdict])  # type: ignore[arg-type]


def parse_rating_json(data: str | Mapping[str, Any], low: float = 1, high: float = 10) -> Rating:
    """A structured grading reply (`RATING_SCHEMA`), as text or already parsed."""
    obj, why = _as_object(data)
    if obj is None:
        return Rating(None, why)
    rating = obj.get("rating")
    if isinstance(rating, bool) or not isinstance(rating, int | float):
        return Rating(None, f"field 'rating': expected a number, got {rating!r}")
    if not isinstance(obj.get("reasoning"), str):
        return Rating(None, "field 'reasoning': expected a string")
    if not low <= rating <= high:
        return Rating(None, f"rating {rating} is outside {low:g}-{high:g}")
    return Rating(rating)
