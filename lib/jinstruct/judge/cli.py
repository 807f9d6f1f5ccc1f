"""`python -m jinstruct results pairwise|single|ratings FILE...`: tables from FastChat judgment files.

The files may be ours or published ones (FastChat's `model_judgment/<judge>_pair.jsonl` and `_single.jsonl`,
ja-vicuna-qa-benchmark's per-pair files). A table prints as text, or as JSON with `--json` (the same numbers).
`--semantics` chooses how lines are counted (`jinstruct.judge.metrics.SEMANTICS`: today's FastChat, or the 2023
ja-vicuna tables'); `pairwise --by-pair` adds one row per pair of models of an all-pairs file.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pandas as pd

from jinstruct.judge import metrics as results
from jinstruct.formats.fastchat import PairwiseJudgment, SingleJudgment, judgment_key, judgment_lines, load_questions
from jinstruct.io import DataError


def _load(files: list[str], kind: Any) -> list[Any]:
    """Every judgment of the files. A game judged twice (two lines with one key, in one file or two: a re-run, a
    retried error) counts once, by its last line, as FastChat's loader does; each such line is named on stderr,
    never dropped silently. A file without a judgment is an error naming it."""
    seen: dict[tuple[Any, ...], tuple[str, int]] = {}
    out: list[PairwiseJudgment | SingleJudgment] = []
    replaced = []
    for f in files:
        rows = judgment_lines(f, kind)
        if not rows:
            raise DataError(f, None, None, f"no {kind} judgments in the file")
        for line, j in rows:
            key = judgment_key(j)
            if key in seen:
                first_file, first_line = seen[key]
                where = f"line {first_line}" + ("" if first_file == f else f" of {first_file}")
                what = f"{j.model_1} vs {j.model_2}" if isinstance(j, PairwiseJudgment) else j.model
                replaced.append(f"{f}, line {line}: question {j.question_id!r} turn {j.turn} ({what}) by "
                                f"{j.judge[0]} was judged before ({where}); this later line counts")
            seen[key] = (f, line)
            out.append(j)
    for note in replaced[:20]:
        print(f"note: {note}", file=sys.stderr)
    if len(replaced) > 20:
        print(f"note: ... and {len(replaced) - 20} more games judged more than once", file=sys.stderr)
    return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    return json.loads(frame.reset_index().to_json(orient="records", force_ascii=False))


def _text(frame: pd.DataFrame) -> str:
    return frame.to_string(float_format=lambda x: f"{x:.3f}") if not frame.empty else "(nothing)"


def _categories(args: argparse.Namespace) -> dict[str, str] | None:
    return results.categories_of(load_questions(args.questions)) if args.questions else None


def _one_judge(frame: pd.DataFrame, judge: str | None, files: list[str]) -> tuple[pd.DataFrame, str]:
    names = ", ".join(files)
    if frame.empty:
        raise ValueError(f"no judgments in {names}")
    judges = sorted(frame["judge_model"].unique())
    if judge is not None:
        if judge not in judges:
            raise ValueError(f"judge {judge!r} not in {names}; judges: {judges}")
        frame = frame[frame["judge_model"] == judge]
    elif len(judges) > 1:
        raise ValueError(f"{names} hold several judges {judges}: choose one with --judge")
    return frame, judges[0] if judge is None else judge


def _by_turn(frame: pd.DataFrame, turn: int | None) -> pd.DataFrame:
    if turn is None:
        return frame
    out = frame[frame["turn"] == turn]
    if out.empty:
        raise ValueError(f"no judgments of turn {turn}")
    return out


def _has_categories(frame: pd.DataFrame) -> bool:
    return bool(frame["category"].notna().all())


def _emit(args: argparse.Namespace, header: dict[str, Any], tables: dict[str, pd.DataFrame]) -> None:
    if args.json:
        print(json.dumps(header | {k: _records(v) for k, v in tables.items()}, ensure_ascii=False, indent=2))
        return
    print("  ".join(f"{k}: {v}" for k, v in header.items() if v is not None))
    for title, table in tables.items():
        print(f"\n## {title}\n{_text(table)}")


def _pairwise(args: argparse.Namespace) -> int:
    judgments = _load(args.files, "pairwise")
    games, judge = _one_judge(results.pairwise_frame(judgments, _categories(args), args.semantics), args.judge,
                              args.files)
    games = _by_turn(games, args.turn)
    kw = {"rounds": args.rounds, "seed": args.seed, "level": args.level}
    tables = {"overall": results.pairwise_summary(games, args.baseline, **kw)}
    if args.by_pair:
        tables["by_pair"] = results.pairwise_by_pair(games, args.baseline)
    if _has_categories(games):
        tables["by_category"] = results.pairwise_by_category(games, args.baseline, **kw)
    elif not args.json:
        print("(no per-category table: pass --questions FILE)", file=sys.stderr)
    tables["diagnostics"] = results.judge_diagnostics(games)
    _emit(args, {"judge": judge, "baseline": args.baseline, "semantics": args.semantics, "games": len(games),
                 "bootstrap_rounds": args.rounds, "level": args.level}, tables)
    return 0


def _single(args: argparse.Namespace) -> int:
    judgments = _load(args.files, "single")
    scores, judge = _one_judge(results.single_frame(judgments, _categories(args), args.semantics), args.judge,
                               args.files)
    scores = _by_turn(scores, args.turn)
    kw = {"rounds": args.rounds, "seed": args.seed, "level": args.level}
    tables = {"overall": results.mean_scores(scores, ["model"], **kw)}
    if scores["turn"].nunique() > 1:
        tables["by_turn"] = results.mean_scores(scores, ["model", "turn"], **kw)
    if _has_categories(scores):
        tables["by_category"] = results.mean_scores(scores, ["model", "category"], **kw)
    elif not args.json:
        print("(no per-category table: pass --questions FILE)", file=sys.stderr)
    _emit(args, {"judge": judge, "semantics": args.semantics, "graded": len(scores), "bootstrap_rounds": args.rounds,
                 "level": args.level}, tables)
    return 0


def _ratings(args: argparse.Namespace) -> int:
    judgments = _load(args.files, "pairwise")
    games, judge = _one_judge(results.pairwise_frame(judgments, semantics=args.semantics), args.judge, args.files)
    games = _by_turn(games, args.turn)
    table = results.bt_ratings(games, anchor=args.anchor, anchor_rating=args.anchor_rating, rounds=args.rounds,
                               seed=args.seed, level=args.level)
    _emit(args, {"judge": judge, "semantics": args.semantics, "games": len(games), "anchor": args.anchor,
                 "anchor_rating": args.anchor_rating, "bootstrap_rounds": args.rounds, "level": args.level},
          {"ratings": table})
    return 0


def _guarded(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (DataError, ValueError, KeyError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return run


def register_cli(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `results pairwise|single|ratings` to the jinstruct command."""
    p = sub.add_parser("results", help="win rates, scores and ratings from FastChat judgment files")
    kinds = p.add_subparsers(dest="results_command", required=True)
    semantics_help = "how lines are counted (default: fastchat). " + "; ".join(
        f"{name}: {what}" for name, what in results.SEMANTICS.items())

    def common(q: argparse.ArgumentParser, what: str) -> None:
        q.add_argument("files", nargs="+", metavar="FILE", help=f"FastChat {what} judgment files (JSON Lines)")
        q.add_argument("--judge", help="judge model to use when the files hold several")
        q.add_argument("--turn", type=int, help="only this turn (default: all turns, as FastChat)")
        q.add_argument("--rounds", type=int, default=results.ROUNDS, help="bootstrap rounds (0: no intervals)")
        q.add_argument("--seed", type=int, default=0, help="bootstrap seed")
        q.add_argument("--level", type=float, default=results.LEVEL, help="confidence level of the intervals")
        q.add_argument("--json", action="store_true", help="print JSON instead of tables (the same numbers)")
        q.add_argument("--semantics", choices=sorted(results.SEMANTICS), default="fastchat", help=semantics_help)

    pw = kinds.add_parser("pairwise", help="wins, losses, ties, win rates with intervals, judge diagnostics")
    common(pw, "pairwise")
    pw.add_argument("--baseline", metavar="MODEL", help="report each model against this one (default: all games)")
    pw.add_argument("--questions", metavar="FILE", help="question.jsonl, for the per-category breakdown")
    pw.add_argument("--by-pair", action="store_true",
                    help="also one row per pair of models (model_1's wins, ties, losses against model_2, counts and "
                         "rates), e.g. A vs B, B vs C and A vs C from one all-pairs file; with --baseline, its pairs")
    pw.set_defaults(func=_guarded(_pairwise))

    sg = kinds.add_parser("single", help="mean 1-10 scores with intervals, per model, turn and category")
    common(sg, "single")
    sg.add_argument("--questions", metavar="FILE", help="question.jsonl, for the per-category breakdown")
    sg.set_defaults(func=_guarded(_single))

    rt = kinds.add_parser("ratings", help="Bradley-Terry ratings (Elo scale) with intervals from pairwise games")
    common(rt, "pairwise")
    rt.add_argument("--anchor", metavar="MODEL", help="model pinned at --anchor-rating (default: the mean is)")
    rt.add_argument("--anchor-rating", type=float, default=1000.0)
    rt.set_defaults(func=_guarded(_ratings))
