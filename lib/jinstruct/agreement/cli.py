"""`python -m jinstruct agreement PAIR_JUDGMENTS --human HUMAN.json [--turn N] [--json]`: judge-human agreement.

PAIR_JUDGMENTS: a FastChat pairwise judgment file (`<judge>_pair.jsonl`: the judge's vote on a game is its combined
verdict over both orders), or the judge's votes already in FastChat's human judgment format (a JSON list with
`winner`, as MT-Bench's `gpt4_pair` votes). HUMAN: FastChat human judgment files (JSON lists of `{question_id,
model_a, model_b, winner, judge, turn}`). Prints the agreement table (FastChat's agreement with and without ties,
Cohen's kappa, Krippendorff's alpha, bootstrap intervals over questions), per turn, per category (with
`--questions`) and the confusion matrix; `--json` prints the summary and the tables as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from jinstruct.agreement import metrics
from jinstruct.agreement.human_format import load_human_judgments
from jinstruct.agreement.stage import categories_of, measure
from jinstruct.agreement.votes import Vote, judge_votes
from jinstruct.formats.fastchat import load_pairwise_judgments, load_questions
from jinstruct.io import DataError


def read_judge_votes(path: str | Path, judge: str | None) -> tuple[list[Vote], int, str]:
    """The judge's votes from a pairwise judgment file or a vote file; errors left out; the judge's name."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    with path.open(encoding="utf-8") as f:
        head = f.read(64).lstrip()
    if head.startswith("["):
        records = load_human_judgments(path)
        names = sorted({r.annotator for r in records})
        if judge is None and len(names) > 1:
            raise ValueError(f"{path} holds several judges {names}: choose one with --judge")
        name = judge or (names[0] if names else "judge")
        return [r.vote() for r in records if r.annotator == name], 0, name
    judgments = load_pairwise_judgments(path)
    votes, errors = judge_votes(judgments, judge)
    return votes, errors, judge or (judgments[0].judge[0] if judgments else "judge")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    return json.loads(frame.reset_index().to_json(orient="records", force_ascii=False))


def _text(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(nothing)"
    counts = [c for c in frame.columns if str(frame[c].dtype) == "Int64"]  # nullable counts: NA shown as "-" too
    shown = frame.astype({c: object for c in counts}).fillna({c: "-" for c in counts})
    return shown.to_string(float_format=lambda x: f"{x:.3f}", na_rep="-")


def _run(args: argparse.Namespace) -> int:
    judge, errors, name = read_judge_votes(args.judgments, args.judge)
    human = [h for f in args.human for h in load_human_judgments(f, annotator_prefix=args.annotator_prefix)]
    categories = categories_of(load_questions(args.questions)) if args.questions else None
    _, summary, tables = measure(judge, human, categories, args.turn, args.rounds, args.seed, args.level)
    if not categories:
        tables.pop("per_category")
    summary = {**summary, "judge": name, "turn": args.turn, "error_games": errors}
    if args.json:
        out = {"summary": summary, **{k: _records(v) for k, v in tables.items()}}
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    print(f"judge: {name}  annotators: {len(summary['annotators'])}  questions: {summary['n_questions']}  "
          f"games: {summary['n_games']}  human votes: {summary['n_human_votes']}  turn: {args.turn or 'all'}  "
          f"judge errors left out: {errors}  bootstrap: {args.rounds} rounds over questions, {args.level:.0%}")
    for title, table in tables.items():
        if title == "by_turn" and table.index.get_level_values(0).nunique() < 2:
            continue
        print(f"\n## {title}\n{_text(table)}")
    return 0


def _guarded(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (DataError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def register_cli(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `agreement` to the jinstruct command."""
    p = sub.add_parser("agreement", help="judge-human agreement (FastChat's, kappa, alpha, intervals)",
                       description=__doc__.splitlines()[0])
    p.add_argument("judgments", metavar="PAIR_JUDGMENTS",
                   help="the judge's FastChat pairwise judgments (JSONL), or its votes in the human judgment format")
    p.add_argument("--human", action="append", required=True, metavar="HUMAN.json",
                   help="a FastChat human judgment file (JSON list); repeat for several")
    p.add_argument("--turn", type=int, help="only this turn (default: every turn, pooled; FastChat reports turn 1 and 2)")
    p.add_argument("--judge", help="the judge to use when the judgment file holds several")
    p.add_argument("--questions", metavar="FILE", help="question.jsonl, for agreement per category")
    p.add_argument("--annotator-prefix", metavar="PREFIX",
                   help="count only annotators whose name starts with this (FastChat's script: expert)")
    p.add_argument("--rounds", type=int, default=metrics.ROUNDS, help="bootstrap rounds (0: no intervals)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--level", type=float, default=metrics.LEVEL, help="confidence level of the intervals")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=_guarded)
