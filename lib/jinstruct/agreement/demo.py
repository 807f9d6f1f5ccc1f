"""Demonstration labels: votes in FastChat's human judgment format, made up by a rule, so that notebook 07 runs offline.

They are NOT human judgments and say nothing about the models: every record carries `"demo": true` and annotators
named `demo-annotator-N`. The rule, from the question id and the two model names only (sha256, no randomness): each
game gets a made-up "consensus" (first model 40%, second 40%, tie 20%); each demo annotator gives it with
probability 3/4 and otherwise one of the two other votes; half the records name the models in the reverse order, to
exercise the reordering. `data/agreement/demo_labels.json` is this module's output for the tiny run's games:

    python -m jinstruct.agreement.demo
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from jinstruct.agreement.human_format import HumanJudgment, write_human_judgments
from jinstruct.agreement.votes import VOTES, turn_around
from jinstruct.formats.fastchat import QuestionId, load_questions, select_questions
from jinstruct.paths import resolve_path

ANNOTATORS = ("demo-annotator-1", "demo-annotator-2", "demo-annotator-3")
DEMO_FILE = "data/agreement/demo_labels.json"
TINY_BENCHMARK, TINY_PER_CATEGORY, TINY_MODELS = "data/bench/ja_qa80", 2, ("tiny-base", "tiny-sft")


def _draw(*parts: object) -> int:
    """A number in 0..9999 from the parts (sha256)."""
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16) % 10_000


def demo_labels(question_ids: Iterable[QuestionId], models: tuple[str, str], annotators: Sequence[str] = ANNOTATORS,
                turn: int = 1) -> list[HumanJudgment]:
    """The demonstration votes on (question, `models`, `turn`) for each question id, by the module's rule."""
    a, b = sorted(models)
    out = []
    for qid in question_ids:
        c = _draw("consensus", qid, a, b, turn)
        consensus = "model_a" if c < 4000 else "model_b" if c < 8000 else "tie"
        for name in annotators:
            d = _draw("vote", qid, a, b, turn, name)
            others = [v for v in VOTES if v != consensus]
            vote = consensus if d < 7500 else others[d % 2]
            reverse = _draw("order", qid, name) % 2 == 1
            record = {"question_id": qid, "model_a": b if reverse else a, "model_b": a if reverse else b,
                      "winner": turn_around(vote) if reverse else vote, "judge": name, "turn": turn, "demo": True}
            out.append(HumanJudgment.model_validate(record))
    return out


def tiny_demo_labels() -> list[HumanJudgment]:
    """The demonstration votes for the tiny run's games (the first two questions of each category, tiny-sft vs
    tiny-base)."""
    questions = select_questions(load_questions(resolve_path(TINY_BENCHMARK) / "question.jsonl"), TINY_PER_CATEGORY)
    return demo_labels([q.question_id for q in questions], TINY_MODELS)


def write_tiny_demo_labels(path: str | os.PathLike[str] | None = None) -> Path:
    """Write the tiny run's demonstration votes (default: `data/agreement/demo_labels.json` of the project)."""
    return write_human_judgments(resolve_path(path or DEMO_FILE), tiny_demo_labels())


if __name__ == "__main__":
    print(write_tiny_demo_labels())
