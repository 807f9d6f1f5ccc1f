"""LLM judging (notebook 06): send FastChat's judge prompts through the LLM client, read the verdicts, append
FastChat-format judgments.

The games come from `jinstruct.judge.prompts` (`pairwise_tasks`: each model against a baseline or all
pairs, every game in both orders; `single_tasks`: 1-10 grading; reference-guided prompts for coding and
math, multi-turn prompts for turn 2). This module sends them and records what the judge said:

- The first request of every game is at `temperature` (0: the judge's own verdict, FastChat's setting).
- The verdict is read from the reply: free text with `jinstruct.judge.verdicts` (`[[A]]`, `[[B]]`, `[[C]]`,
  `[[N]]`, `Rating: [[N]]`, ...), or a constrained reply: `mode="json"` asks for
  `{"reasoning", "verdict"|"rating"}` (OpenAI / vLLM structured outputs; `max_reasoning_chars` bounds the
  explanation so that the JSON closes before `max_tokens`), `mode="choice"` asks for exactly one of
  `[[A]]`/`[[B]]`/`[[C]]` or `[[1]]`..`[[10]]` (vLLM's choice constraint: the verdict alone, no explanation).
- A reply without a readable verdict (or a failed call) is asked again as a fresh sample: a new
  `sample_index` (so a new cache key and a derived seed) at `retry_temperature`, because a deterministic judge
  at temperature 0 would only repeat itself. After `max_attempts` it is recorded as FastChat records a
  failure, winner `"error"` / score -1, with the last reply kept, and listed in the report; `jinstruct.judge.metrics`
  never counts it as a win or a loss.
- Judgments are appended to `<judge>_pair.jsonl` / `<judge>_single.jsonl` as each game is decided, so a killed
  run keeps them; a rerun skips every (question, models, turn) already in the file that was judged under the same
  settings. Each record carries `settings_id`, a digest of what decided it (the judge's model, the grader's
  settings, and the prompts sent: question, answers, judge prompt), so a changed answer, prompt or setting re-judges
  what it changes; a record without one (a published file) is taken as it is. With `retry_errors=True` the games
  recorded as errors are judged again: the attempts already made come from the cache and `max_attempts` new ones
  follow. At the end the file keeps one line per game, the newest; the lines it replaced go to `superseded_dir`
  (when given), so FastChat's tools never count a game twice.
- The verdict rule (`rule`: "last", or "fastchat" for FastChat's own reading) is part of those settings and is
  recorded in each record's `judge` field (`[judge, prompt name, "verdict:<rule>"]`); a rerun with another rule reads
  every game again with it, the judge's replies coming from the LLM cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinstruct.formats.fastchat import (
    PairwiseJudgment,
    QuestionId,
    SingleJudgment,
    append_records,
    judgment_path,
    load_pairwise_judgments,
    load_single_judgments,
    write_records,
)
from jinstruct.io import append_jsonl, iter_jsonl, write_jsonl
from jinstruct.judge.grader import Asked, Grader, GraderSettings, VerdictMode
from jinstruct.judge.prompts import JudgeInput, Kind, PairTask, SingleTask, pairwise_record, single_record
from jinstruct.judge.verdicts import Rule

if TYPE_CHECKING:
    import pandas as pd

    from jinstruct.llm import ChatRequest, Estimate, LLMClient

# ---- the report ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeFailure:
    """A game whose verdict stayed unreadable: recorded as an error."""

    question_id: QuestionId
    turn: int
    models: tuple[str, ...]
    game: int  # 1 or 2 (the order shown) for pairwise; 1 for single
    attempts: int
    reason: str
    reply: str


@dataclass
class JudgeReport:
    """What one judging run did."""

    kind: Kind
    judge: str
    path: Path
    tasks: int
    already_judged: int  # reused: judged before under the same settings
    judged: int = 0
    errors: int = 0  # new records with an error verdict
    retried: int = 0  # extra requests for unreadable replies
    redone: int = 0  # judged again because what decided them changed (answers, prompts, judge, settings)
    retried_errors: int = 0  # judged again because they were recorded as errors (retry_errors)
    errors_left: int = 0  # games of this run recorded as errors in the file now
    failures: list[JudgeFailure] = field(default_factory=list)
    estimate: Estimate | None = None

    def summary(self) -> str:
        what = "games" if self.kind == "pairwise" else "answers"
        text = (f"{self.judge} ({self.kind}): {self.tasks} {what}, {self.already_judged} reused (same settings), "
                f"{self.redone} redone (settings changed), {self.retried_errors} errors retried, "
                f"{self.judged} judged now, {self.retried} re-asked, {self.errors} recorded as errors, "
                f"{self.errors_left} errors in the file -> {self.path}")
        for f in self.failures[:10]:
            text += (f"\n  question {f.question_id} turn {f.turn} {' vs '.join(f.models)} game {f.game}: "
                     f"{f.reason} (after {f.attempts} attempts)")
        if len(self.failures) > 10:
            text += f"\n  ... and {len(self.failures) - 10} more"
        return text

    __str__ = summary

    def failures_frame(self) -> pd.DataFrame:
        """One row per failed game: question_id, turn, models, game, attempts, reason, reply."""
        import pandas as pd

        columns = ["question_id", "turn", "models", "game", "attempts", "reason", "reply"]
        return pd.DataFrame([{c: getattr(f, c) for c in columns} for f in self.failures], columns=columns)


# ---- already judged -----------------------------------------------------------------------------------------


def settings_id(model: str, settings: GraderSettings, inputs: Sequence[JudgeInput]) -> str:
    """A digest of what decides a judgment: the judge's model, how it is asked (all but `max_attempts`, which only
    decides when to give up), and the messages of each input (question, answers, judge prompt)."""
    grader = {k: v for k, v in asdict(settings).items() if k != "max_attempts"}
    blob = json.dumps({"model": model, "grader": grader, "messages": [i.messages for i in inputs]},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@dataclass
class _Judged:
    """What the file says of one game: whether its last line is an error, the settings it was judged under (None:
    not recorded, as in published files), and how many error lines it has (each a round of attempts)."""

    error: bool
    settings: str | None
    error_lines: int = 0


def _pair_key(question_id: QuestionId, turn: int, model_1: str, model_2: str) -> tuple[str, int, frozenset[str]]:
    return str(question_id), turn, frozenset((model_1, model_2))


def _line_key(obj: Mapping[str, Any], kind: Kind) -> tuple[Any, ...]:
    if kind == "pairwise":
        return _pair_key(obj["question_id"], obj.get("turn", 1), obj["model_1"], obj["model_2"])
    return str(obj["question_id"]), obj.get("turn", 1), obj["model"]


def _is_error(record: PairwiseJudgment | SingleJudgment) -> bool:
    if isinstance(record, PairwiseJudgment):
        return "error" in (record.g1_winner, record.g2_winner)
    return record.is_error


def _existing(path: Path, kind: Kind) -> dict[tuple[Any, ...], _Judged]:
    """What the file says of each game (the last line of a key wins). A line cut off by a kill is dropped, and the
    file rewritten without it so that appends start on a fresh line."""
    if not path.exists():
        return {}
    done: dict[tuple[Any, ...], _Judged] = {}
    records: list[PairwiseJudgment] | list[SingleJudgment]
    if kind == "pairwise":
        records = load_pairwise_judgments(path, tolerate_torn_tail=True)
    else:
        records = load_single_judgments(path, tolerate_torn_tail=True)
    for j in records:
        key = _line_key(j.model_dump(), kind)
        earlier = done.get(key)
        error = _is_error(j)
        done[key] = _Judged(error, getattr(j, "settings_id", None),
                            (earlier.error_lines if earlier else 0) + error)
    if path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                write_records(path, records)
    return done


def _task_key(task: PairTask | SingleTask) -> tuple[Any, ...]:
    if isinstance(task, PairTask):
        return _pair_key(task.question.question_id, task.turn, task.model_1, task.model_2)
    return task.key


def _task_inputs(task: PairTask | SingleTask) -> list[JudgeInput]:
    return [task.g1, task.g2] if isinstance(task, PairTask) else [task.input]


@dataclass
class _Plan:
    todo: list[Any]
    ids: dict[tuple[Any, ...], str]  # the settings id of every task
    rounds: list[int]  # per task to do: rounds of max_attempts it may use (1, or 1 + its earlier error rounds)
    reused: int = 0
    redone: int = 0
    retried_errors: int = 0


def _plan(tasks: Sequence[PairTask] | Sequence[SingleTask], path: Path, retry_errors: bool, model: str,
          settings: GraderSettings) -> _Plan:
    kind: Kind = "pairwise" if tasks and isinstance(tasks[0], PairTask) else "single"
    done = _existing(path, kind) if tasks else {}
    plan = _Plan([], {}, [])
    for t in tasks:
        key = _task_key(t)
        sid = plan.ids[key] = settings_id(model, settings, _task_inputs(t))
        seen = done.get(key)
        if seen is None:
            plan.todo.append(t)
            plan.rounds.append(1)
        elif seen.settings is not None and seen.settings != sid:
            plan.todo.append(t)
            plan.rounds.append(1)
            plan.redone += 1
        elif retry_errors and seen.error:
            plan.todo.append(t)
            plan.rounds.append(1 + seen.error_lines)  # the attempts made before come from the cache
            plan.retried_errors += 1
        else:
            plan.reused += 1
    return plan


def pending_tasks(tasks: Sequence[PairTask] | Sequence[SingleTask], path: str | Path,
                  retry_errors: bool = False, model: str = "", settings: GraderSettings | None = None
                  ) -> list[PairTask] | list[SingleTask]:
    """The tasks without a judgment in `path` yet, or judged under other settings (`model` and `settings` as the
    judging would use them), or (with `retry_errors`) judged as errors."""
    return _plan(tasks, Path(path), retry_errors, model, settings or GraderSettings()).todo


def compact(path: Path, kind: Kind, superseded_dir: Path | None = None) -> int:
    """Keep one line per game in a judgment file, the newest (atomically); the lines dropped are appended to
    `superseded_dir/<file name>` when given. Returns how many were dropped."""
    if not path.exists():
        return 0
    rows = [obj for _, obj in iter_jsonl(path, tolerate_torn_tail=True)]
    last = {_line_key(obj, kind): i for i, obj in enumerate(rows)}
    keep = sorted(last.values())
    if len(keep) == len(rows):
        return 0
    kept = set(keep)
    dropped = [obj for i, obj in enumerate(rows) if i not in kept]
    if superseded_dir is not None:
        append_jsonl(superseded_dir / path.name, dropped)
    write_jsonl(path, [rows[i] for i in keep])
    return len(dropped)


def _errors_in(path: Path, kind: Kind, keys: set[tuple[Any, ...]]) -> int:
    return sum(j.error for k, j in _existing(path, kind).items() if k in keys)


def _prepare(client: LLMClient, kind: Kind, tasks: Sequence[PairTask] | Sequence[SingleTask], out_dir: str | Path,
             judge_name: str | None, retry_errors: bool, settings: GraderSettings) -> tuple[str, Path, _Plan]:
    judge = judge_name or client.model
    if not judge:
        raise ValueError("the judge has no name: pass judge_name (the client's endpoint names no model)")
    path = judgment_path(out_dir, judge, "pair" if kind == "pairwise" else "single")
    return judge, path, _plan(tasks, path, retry_errors, client.model, settings)


def _report(kind: Kind, judge: str, path: Path, tasks: Sequence[Any], plan: _Plan) -> JudgeReport:
    return JudgeReport(kind, judge, path, len(tasks), plan.reused, redone=plan.redone,
                       retried_errors=plan.retried_errors)


def _finish(report: JudgeReport, kind: Kind, plan: _Plan, superseded_dir: str | Path | None, echo: bool) -> None:
    compact(report.path, kind, Path(superseded_dir) if superseded_dir is not None else None)
    report.errors_left = _errors_in(report.path, kind, set(plan.ids))
    if echo:
        print(report.summary())


def _estimate(client: LLMClient, requests: list[ChatRequest], expected_output_tokens: int | None,
              echo: bool) -> Estimate:
    estimate = client.estimate(requests, expected_output_tokens)
    if echo:
        print(f"estimate: {estimate}")
    return estimate


def _grader(client: LLMClient, mode: VerdictMode, max_tokens: int, max_attempts: int, temperature: float,
            retry_temperature: float, seed: int | None, max_reasoning_chars: int | None, rule: Rule) -> Grader:
    return Grader(client, GraderSettings(mode=mode, max_tokens=max_tokens, max_attempts=max_attempts,
                                         temperature=temperature, retry_temperature=retry_temperature, seed=seed,
                                         max_reasoning_chars=max_reasoning_chars, rule=rule))


def judge_pairwise(client: LLMClient, tasks: Sequence[PairTask], out_dir: str | Path, mode: VerdictMode = "text",
                   max_tokens: int = 2048, max_attempts: int = 3, temperature: float = 0.0,
                   retry_temperature: float = 0.7, seed: int | None = 0, max_reasoning_chars: int | None = None,
                   rule: Rule = "last", judge_name: str | None = None, retry_errors: bool = False,
                   expected_output_tokens: int | None = None, echo: bool = True,
                   superseded_dir: str | Path | None = None) -> JudgeReport:
    """Judge pairwise games (`judge_prompts.pairwise_tasks`), both orders of each, into
    `<out_dir>/<judge>_pair.jsonl`; games already in the file under the same settings are skipped. Prints the cost
    estimate before and the summary after when `echo`."""
    grader = _grader(client, mode, max_tokens, max_attempts, temperature, retry_temperature, seed,
                     max_reasoning_chars, rule)
    judge, path, plan = _prepare(client, "pairwise", tasks, out_dir, judge_name, retry_errors, grader.settings)
    todo = plan.todo
    inputs = [g for t in todo for g in (t.g1, t.g2)]
    tags = [f"pair q{t.question.question_id} t{t.turn} g{order}" for t in todo for order in (1, 2)]
    rounds = [r for r in plan.rounds for _ in (1, 2)]
    report = _report("pairwise", judge, path, tasks, plan)
    report.estimate = _estimate(client, grader.requests(inputs, "pairwise", tags), expected_output_tokens, echo)
    halves: dict[int, dict[int, Asked]] = {}

    def settled(i: int, asked: Asked) -> None:
        task, order = divmod(i, 2)
        halves.setdefault(task, {})[order + 1] = asked
        if len(halves[task]) < 2:
            return
        t, g1, g2 = todo[task], halves[task][1], halves[task][2]
        record = pairwise_record(t, judge, g1.reply, g2.reply, rule=rule)
        record.settings_id = plan.ids[_task_key(t)]  # type: ignore[attr-defined]  (an extra field FastChat ignores)
        append_records(path, [record])
        report.judged += 1
        failed = [(order, g) for order, g in ((1, g1), (2, g2)) if not g.ok]
        report.errors += bool(failed)
        report.failures += [JudgeFailure(t.question.question_id, t.turn, (t.model_1, t.model_2), order, g.attempts,
                                         g.reason, g.reply) for order, g in failed]

    asked = grader.ask(inputs, "pairwise", f"judge {judge} pairwise", tags, settled, rounds)
    report.retried = sum(a.attempts - 1 for a in asked if a.attempts)
    _finish(report, "pairwise", plan, superseded_dir, echo)
    return report


def judge_single(client: LLMClient, tasks: Sequence[SingleTask], out_dir: str | Path, mode: VerdictMode = "text",
                 max_tokens: int = 2048, max_attempts: int = 3, temperature: float = 0.0,
                 retry_temperature: float = 0.7, seed: int | None = 0, max_reasoning_chars: int | None = None,
                 rule: Rule = "last", judge_name: str | None = None, retry_errors: bool = False,
                 expected_output_tokens: int | None = None, echo: bool = True,
                 superseded_dir: str | Path | None = None) -> JudgeReport:
    """Grade answers 1-10 (`judge_prompts.single_tasks`) into `<out_dir>/<judge>_single.jsonl`; answers
    already graded there under the same settings are skipped. Prints the cost estimate before and the summary
    after when `echo`."""
    grader = _grader(client, mode, max_tokens, max_attempts, temperature, retry_temperature, seed,
                     max_reasoning_chars, rule)
    judge, path, plan = _prepare(client, "single", tasks, out_dir, judge_name, retry_errors, grader.settings)
    todo = plan.todo
    inputs = [t.input for t in todo]
    tags = [f"single q{t.question.question_id} t{t.turn} {t.model}" for t in todo]
    report = _report("single", judge, path, tasks, plan)
    report.estimate = _estimate(client, grader.requests(inputs, "single", tags), expected_output_tokens, echo)

    def settled(i: int, asked: Asked) -> None:
        t = todo[i]
        record = single_record(t, judge, asked.reply, rule=rule)
        record.settings_id = plan.ids[_task_key(t)]  # type: ignore[attr-defined]  (an extra field FastChat ignores)
        append_records(path, [record])
        report.judged += 1
        if not asked.ok:
            report.errors += 1
            report.failures.append(JudgeFailure(t.question.question_id, t.turn, (t.model,), 1, asked.attempts,
                                                asked.reason, asked.reply))

    asked = grader.ask(inputs, "single", f"judge {judge} single", tags, settled, plan.rounds)
    report.retried = sum(a.attempts - 1 for a in asked if a.attempts)
    _finish(report, "single", plan, superseded_dir, echo)
    return report
