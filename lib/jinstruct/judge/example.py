"""Notebook 06's worked example: one pairwise game, the judge prompt, both orders' verdicts, and the tie rule.

The first game the run plays (the first question, the first pair of models) is sent exactly as the run sends it
(same prompts, settings and retries), so the run finds the answers in the LLM cache and pays once. The example shows
the prompt of order 1 (model_1 as assistant A), the judge's reply in each order, the winner each reply names in
FastChat's terms, and the game's result under FastChat's rule: a win only when both orders name the same model; a
tie when either order says tie or the two disagree (the judge preferred a position, not an answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from jinstruct.formats.fastchat import Answer, Question
from jinstruct.judge.grader import Grader, GraderSettings
from jinstruct.judge.prompts import PairTask
from jinstruct.judge.stage import plan_judging
from jinstruct.judge.verdicts import PairVerdict, fastchat_winner, game_outcome
from jinstruct.show import Part, Shown

RULE = ("FastChat's rule: the game counts as a win only when both orders name the same model; when either order "
        "says tie, or the orders disagree (a judge that prefers whichever answer comes first), it is a tie.")


@dataclass(repr=False)
class GameExample(Shown):
    """One pairwise game judged in both orders, and how the two verdicts combine."""

    task: PairTask
    replies: tuple[str, str]
    winners: tuple[str, str]  # FastChat's g1_winner, g2_winner: model_1, model_2, tie or error
    outcome: str  # model_1, model_2, tie or error

    @property
    def title(self) -> str:
        t = self.task
        names = {"model_1": t.model_1, "model_2": t.model_2}
        result = f"{names[self.outcome]} wins" if self.outcome in names else self.outcome
        return f"Question {t.question.question_id} ({t.question.category}): {t.model_1} vs {t.model_2}, {result}"

    def orders(self) -> pd.DataFrame:
        t = self.task
        names = {"model_1": t.model_1, "model_2": t.model_2, "tie": "tie", "error": "error (unreadable)"}
        return pd.DataFrame([
            {"order": 1, "assistant A": t.model_1, "assistant B": t.model_2, "judge's reply": self.replies[0],
             "winner": names[self.winners[0]]},
            {"order": 2, "assistant A": t.model_2, "assistant B": t.model_1, "judge's reply": self.replies[1],
             "winner": names[self.winners[1]]},
        ])

    def parts(self) -> list[Part]:
        t = self.task
        prompt = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in t.g1.messages)
        said = {"model_1": f"names {t.model_1}", "model_2": f"names {t.model_2}", "tie": "says tie",
                "error": "gives no readable verdict"}
        result = {"model_1": f"a win for {t.model_1}", "model_2": f"a win for {t.model_2}", "tie": "a tie",
                  "error": "an error (counted neither as a win nor as a loss)"}
        combined = (f"Order 1 {said[self.winners[0]]}, order 2 {said[self.winners[1]]}: "
                    f"the game is {result[self.outcome]}.")
        return [(f"The judge prompt, order 1 (prompt {t.g1.prompt.name})", prompt),
                ("Both orders: the reply and the winner it names", self.orders()),
                ("How the two verdicts combine", f"{combined}\n{RULE}")]


def example_game(section: Any, client: Any, questions: list[Question], references: dict[Any, Answer],
                 answers_dir: Path, seed: int = 0) -> GameExample:
    """Judge the run's first pairwise game as `run_judging` would (its settings from `section`, a JudgeSection)."""
    pairs, _ = plan_judging(section, questions, references, answers_dir)
    if not pairs:
        raise ValueError("no pairwise game to judge: judge.pairwise is off, or fewer than two models have answers")
    task = pairs[0]
    grader = Grader(client, GraderSettings(mode=section.mode, max_tokens=section.max_tokens,
                                           max_attempts=section.max_attempts, seed=seed,
                                           max_reasoning_chars=section.max_reasoning_chars))
    g1, g2 = grader.ask([task.g1, task.g2], "pairwise", desc="judge one game")
    winners = tuple(fastchat_winner(a.verdict, game) if isinstance(a.verdict, PairVerdict) else "error"
                    for a, game in ((g1, 1), (g2, 2)))
    return GameExample(task, (g1.reply, g2.reply), winners, game_outcome(*winners))  # type: ignore[arg-type]
