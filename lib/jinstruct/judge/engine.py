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
  run keeps them; a rerun skips every (question, models, turn) already in the file (and, with
  `retry_errors=True`, judges the recorded errors again; the newer line wins in `jinstruct.judge.metrics`).
- The verdict rule (`rule`: "last", or "fastchat" for FastChat's own reading) is recorded in each record's `judge`
  field (`[judge, prompt name, "verdict:<rule>"]`); a rerun with another rule reads every game again with it, the
  judge's replies coming from the LLM cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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
from jinstruct.judge.grader import Asked, Grader, GraderSettings, VerdictMode
from jinstruct.judge.prompts import Kind, PairTask, SingleTask, pairwise_record, single_record
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
    already_judged: int
    judged: int = 0
    errors: int = 0  # new records with an error verdict
    retried: int = 0  # extra requests for unreadable replies
    failures: list[JudgeFailure] = field(default_factory=list)
    estimate: Estimate | None = None

    def summary(self) -> str:
        what = "games" if self.kind == "pairwise" else "answers"
        text = (f"{self.judge} ({self.kind}): {self.tasks} {what}, {self.already_judged} already judged, "
                f"{self.judged} judged now, {self.retried} re-asked, {self.errors} recorded as errors -> {self.path}")
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


def _pair_key(question_id: QuestionId, turn: int, model_1: str, model_2: str) -> tuple[str, int, frozenset[str]]:
    return str(question_id), turn, frozenset((model_1, model_2))


def _existing(path: Path, kind: Kind) -> dict[tuple[Any, ...], tuple[bool, str | None]]:
    """{key: (is an error, verdict rule recorded)} of the judgments in the file (the last line of a key wins). A
    line cut off by a kill is dropped, and the file rewritten without it so that appends start on a fresh line."""
    if not path.exists():
        return {}
    done: dict[tuple[Any, ...], tuple[bool, str | None]]
    records: list[PairwiseJudgment] | list[SingleJudgment]
    if kind == "pairwise":
        pairs = load_pairwise_judgments(path, tolerate_torn_tail=True)
        records = pairs
        done = {_pair_key(j.question_id, j.turn, j.model_1, j.model_2):
                ("error" in (j.g1_winner, j.g2_winner), j.verdict_rule) for j in pairs}
    else:
        singles = load_single_judgments(path, tolerate_torn_tail=True)
        records = singles
        done = {(str(j.question_id), j.turn, j.model): (j.is_error, j.verdict_rule) for j in singles}
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


def pending_tasks(tasks: Sequence[PairTask] | Sequence[SingleTask], path: str | Path, retry_errors: bool = False,
                  rule: Rule | None = None) -> list[PairTask] | list[SingleTask]:
    """The tasks without a judgment in `path` yet (or whose judgment is an error, with `retry_errors`; or, with a
    `rule`, whose verdict was read with another rule: asked again, the judge's replies come from the LLM cache)."""
    if not tasks:
        return []
    kind: Kind = "pairwise" if isinstance(tasks[0], PairTask) else "single"
    done = _existing(Path(path), kind)

    def pending(t: PairTask | SingleTask) -> bool:
        if _task_key(t) not in done:
            return True
        error, recorded = done[_task_key(t)]
        return (retry_errors and error) or (rule is not None and recorded != rule)

    return [t for t in tasks if pending(t)]  # type: ignore[return-value]


def _prepare(client: LLMClient, kind: Kind, tasks: Sequence[PairTask] | Sequence[SingleTask], out_dir: str | Path,
             judge_name: str | None, retry_errors: bool, rule: Rule) -> tuple[str, Path, list[Any], int]:
    judge = judge_name or client.model
    if not judge:
        raise ValueError("the judge has no name: pass judge_name (the client's endpoint names no model)")
    path = judgment_path(out_dir, judge, "pair" if kind == "pairwise" else "single")
    todo = pending_tasks(tasks, path, retry_errors, rule)
    return judge, path, list(todo), len(tasks) - len(todo)


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
                   expected_output_tokens: int | None = None, echo: bool = True) -> JudgeReport:
    """Judge pairwise games (`judge_prompts.pairwise_tasks`), both orders of each, into
    `<out_dir>/<judge>_pair.jsonl`; games already in the file are skipped. Prints the cost estimate before
    and the summary after when `echo`."""
    grader = _grader(client, mode, max_tokens, max_attempts, temperature, retry_temperature, seed,
                     max_reasoning_chars, rule)
    judge, path, todo, skipped = _prepare(client, "pairwise", tasks, out_dir, judge_name, retry_errors, rule)
    inputs = [g for t in todo for g in (t.g1, t.g2)]
    tags = [f"pair q{t.question.question_id} t{t.turn} g{order}" for t in todo for order in (1, 2)]
    report = JudgeReport("pairwise", judge, path, len(tasks), skipped)
    report.estimate = _estimate(client, grader.requests(inputs, "pairwise", tags), expected_output_tokens, echo)
    halves: dict[int, dict[int, Asked]] = {}

    def settled(i: int, asked: Asked) -> None:
        task, order = divmod(i, 2)
        halves.setdefault(task, {})[order + 1] = asked
        if len(halves[task]) < 2:
            return
        t, g1, g2 = todo[task], halves[task][1], halves[task][2]
        append_records(path, [pairwise_record(t, judge, g1.reply, g2.reply, rule=rule)])
        report.judged += 1
        failed = [(order, g) for order, g in ((1, g1), (2, g2)) if not g.ok]
        report.errors += bool(failed)
        report.failures += [JudgeFailure(t.question.question_id, t.turn, (t.model_1, t.model_2), order, g.attempts,
                                         g.reason, g.reply) for order, g in failed]

    asked = grader.ask(inputs, "pairwise", f"judge {judge} pairwise", tags, settled)
    report.retried = sum(a.attempts - 1 for a in asked if a.attempts)
    if echo:
        print(report.summary())
    return report


def judge_single(client: LLMClient, tasks: Sequence[SingleTask], out_dir: str | Path, mode: VerdictMode = "text",
                 max_tokens: int = 2048, max_attempts: int = 3, temperature: float = 0.0,
                 retry_temperature: float = 0.7, seed: int | None = 0, max_reasoning_chars: int | None = None,
                 rule: Rule = "last", judge_name: str | None = None, retry_errors: bool = False,
                 expected_output_tokens: int | None = None, echo: bool = True) -> JudgeReport:
    """Grade answers 1-10 (`judge_prompts.single_tasks`) into `<out_dir>/<judge>_single.jsonl`; answers
    already graded there are skipped. Prints the cost estimate before and the summary after when `echo`."""
    grader = _grader(client, mode, max_tokens, max_attempts, temperature, retry_temperature, seed,
                     max_reasoning_chars, rule)
    judge, path, todo, skipped = _prepare(client, "single", tasks, out_dir, judge_name, retry_errors, rule)
    inputs = [t.input for t in todo]
    tags = [f"single q{t.question.question_id} t{t.turn} {t.model}" for t in todo]
    report = JudgeReport("single", judge, path, len(tasks), skipped)
    report.estimate = _estimate(client, grader.requests(inputs, "single", tags), expected_output_tokens, echo)

    def settled(i: int, asked: Asked) -> None:
        t = todo[i]
        append_records(path, [single_record(t, judge, asked.reply, rule=rule)])
        report.judged += 1
        if not asked.ok:
            report.errors += 1
            report.failures.append(JudgeFailure(t.question.question_id, t.turn, (t.model,), 1, asked.attempts,
                                                asked.reason, asked.reply))

    asked = grader.ask(inputs, "single", f"judge {judge} single", tags, settled)
    report.retried = sum(a.attempts - 1 for a in asked if a.attempts)
    if echo:
        print(report.summary())
    return report
