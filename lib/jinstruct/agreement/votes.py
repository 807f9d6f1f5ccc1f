"""Votes on pairwise games, as FastChat's `compute_agreement.py` counts them.

A vote says which of two answers to one question (one turn) is better: `model_a`, `model_b` or `tie`. FastChat's
rules, kept exactly:

- a game is keyed by (question, turn, the two models ordered by name): a vote given as (model_b, model_a) is
  turned around (`model_a` <-> `model_b`) so that `model_a` is always the model whose name sorts first;
- any winner containing "tie" (`tie`, `tie (bothbad)`) is a tie;
- the judge's vote on a game is its combined verdict over the two answer orders: the winner both orders chose, and
  a tie when either order says tie or the orders disagree (`jinstruct.judge.verdicts.game_outcome`, the rule of
  FastChat's `show_result.py` and of the `gpt4_pair` votes its agreement script reads). A game whose verdict is an
  error has no judge vote (FastChat's files hold none).

`vote_frame` puts the judge's and the humans' votes in one table (one row per vote) that every statistic in
`jinstruct.agreement.metrics` reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from jinstruct.formats.fastchat import PairwiseJudgment, QuestionId
from jinstruct.judge.verdicts import game_outcome

VoteValue = Literal["model_a", "model_b", "tie"]
VOTES: tuple[VoteValue, ...] = ("model_a", "model_b", "tie")
GameKey = tuple[str, int, str, str]  # (question_id as text, turn, model_a, model_b) with model_a < model_b
JUDGE, HUMAN = "judge", "human"
GAME = ["question_id", "turn", "model_a", "model_b"]  # the columns that name a game
COLUMNS = [*GAME, "category", "voter", "role", "vote"]


def normalize_winner(winner: str) -> VoteValue:
    """FastChat's `convertvote`: anything containing "tie" is a tie; else `model_a` or `model_b`."""
    if "tie" in winner:
        return "tie"
    if winner in ("model_a", "model_b"):
        return winner  # type: ignore[return-value]
    raise ValueError(f"winner {winner!r} is not model_a, model_b or a tie")


def turn_around(vote: VoteValue) -> VoteValue:
    """FastChat's `revert`: the same vote with the two models swapped."""
    return {"model_a": "model_b", "model_b": "model_a", "tie": "tie"}[vote]  # type: ignore[return-value]


@dataclass(frozen=True)
class Vote:
    """One voter's verdict on one game, in the order the voter saw the models (model_a first)."""

    question_id: QuestionId
    turn: int
    model_a: str
    model_b: str
    winner: str  # model_a, model_b, or anything containing "tie"
    voter: str

    def canonical(self) -> tuple[GameKey, VoteValue]:
        """The game's key (models ordered by name) and the vote in that order."""
        if self.model_a == self.model_b:
            raise ValueError(f"question {self.question_id!r}: a game needs two different models, got {self.model_a!r} twice")
        vote = normalize_winner(self.winner)
        if self.model_a < self.model_b:
            return (str(self.question_id), self.turn, self.model_a, self.model_b), vote
        return (str(self.question_id), self.turn, self.model_b, self.model_a), turn_around(vote)


def combined_verdict(judgment: PairwiseJudgment) -> str:
    """The judge's verdict over both orders, in its own order: model_1, model_2, tie or error."""
    return game_outcome(judgment.g1_winner, judgment.g2_winner)


def judge_vote(judgment: PairwiseJudgment) -> Vote | None:
    """The judge's combined verdict on a pairwise judgment (both orders), or None when it is an error."""
    outcome = combined_verdict(judgment)
    if outcome == "error":
        return None
    winner = {"model_1": "model_a", "model_2": "model_b", "tie": "tie"}[outcome]
    return Vote(judgment.question_id, judgment.turn, judgment.model_1, judgment.model_2, winner, judgment.judge[0])


def judge_votes(judgments: Iterable[PairwiseJudgment], judge: str | None = None) -> tuple[list[Vote], int]:
    """The judge's votes (one per game: a game judged twice keeps its last line, as FastChat's loader does) and the
    number of games left out because the verdict was an error. With several judges in the judgments, `judge`
    chooses one."""
    judgments = list(judgments)
    judges = sorted({j.judge[0] for j in judgments})
    if judge is None and len(judges) > 1:
        raise ValueError(f"the judgments hold several judges {judges}: choose one")
    if judge is not None and judge not in judges:
        raise ValueError(f"judge {judge!r} is not in the judgments (judges: {judges})")
    games: dict[GameKey, PairwiseJudgment] = {}
    for j in judgments:
        if judge is None or j.judge[0] == judge:
            key, _ = Vote(j.question_id, j.turn, j.model_1, j.model_2, "tie", j.judge[0]).canonical()
            games.pop(key, None)
            games[key] = j
    votes = [judge_vote(j) for j in games.values()]
    return [v for v in votes if v is not None], sum(v is None for v in votes)


def vote_frame(judge: Iterable[Vote], humans: Iterable[Vote], categories: Mapping[str, str] | None = None,
               turn: int | None = None) -> pd.DataFrame:
    """One row per vote, in canonical order: question_id (text), turn, model_a, model_b, category, voter, role
    ("judge" or "human"), vote (model_a, model_b or tie). `categories` maps question ids (as text) to categories;
    `turn` keeps only that turn."""
    rows = []
    for role, votes in ((JUDGE, judge), (HUMAN, humans)):
        for v in votes:
            (qid, t, a, b), value = v.canonical()
            rows.append((qid, t, a, b, (categories or {}).get(qid), v.voter, role, value))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if turn is not None:
        frame = frame[frame["turn"] == turn].reset_index(drop=True)
    return frame

