"""LLM judging (notebook 06): send FastChat's judge prompts through the LLM client, read the verdicts, append
FastChat-format judgments.

The games come from `jinstruct.judge_prompts` (`pairwise_tasks`: each model against a baseline or all
pairs, every game in both orders; `single_tasks`: 1-10 grading; reference-guided prompts for coding and
math, multi-turn prompts for turn 2). This module sends them and records what the judge said:

- The first request of every game is at `temperature` (0: the judge's own verdict, FastChat's setting).
- The verdict is read from the reply: free text with `jinstruct.verdicts` (`[[A]]`, `[[B]]`, `[[C]]`,
  `[[N]]`, `Rating: [[N]]`, ...), or a constrained reply: `mode="json"` asks for
  `{"reasoning", "verdict"|"rating"}` (OpenAI / vLLM structured outputs; `max_reasoning_chars` bounds the
  explanation so that the JSON closes before `max_tokens`), `mode="choice"` asks for exactly one of
  `[[A]]`/`[[B]]`/`[[C]]` or `[[1]]`..`[[10]]` (vLLM's choice constraint: the verdict alone, no explanation).
- A reply without a readable verdict (or a failed call) is asked again as a fresh sample: a new
  `sample_index` (so a new cache key and a derived seed) at `retry_temperature`, because a deterministic judge
  at temperature 0 would only repeat itself. After `max_attempts` it is recorded as FastChat records a
  failure, winner `"error"` / score -1, with the last reply kept, and listed in the report; `jinstruct.results`
  never counts it as a win or a loss.
- Judgments are appended to `<judge>_pair.jsonl` / `<judge>_single.jsonl` as each game is decided, so a killed
  run keeps them; a rerun skips every (question, models, turn) already in the file (and, with
  `retry_errors=True`, judges the recorded errors again; the newer line wins in `jinstruct.results`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jinstruct.fastchat import (
    PairwiseJudgment,
    QuestionId,
    SingleJudgment,
    append_records,
    judgment_path,
    load_pairwise_judgments,
    load_single_judgments,
    write_records,
)
from jinstruct.judge_prompts import JudgeInput, Kind, PairTask, SingleTask, pairwise_record, single_record
from jinstruct.verdicts import API_ERROR_OUTPUT, PAIR_VERDICT_SCHEMA, RATING_SCHEMA, Rule, parse_verdict

if TYPE_CHECKING:
    import pandas as pd

    from jinstruct.llm import ChatRequest, ChatResult, Estimate, LLMClient

VerdictMode = Literal["text", "json", "choice"]
PAIR_CHOICES = ("[[A]]", "[[B]]", "[[C]]")
RATING_CHOICES = tuple(f"[[{i}]]" for i in range(1, 11))
_STRUCTURED_FORMATS: dict[Kind, str] = {"pairwise": "[[A]]", "single": "[[rating]]"}


# ---- the requests -------------------------------------------------------------------------------------------


def verdict_schema(kind: Kind, max_reasoning_chars: int | None = None) -> dict[str, Any]:
    """The JSON schema of a structured verdict (`verdicts.PAIR_VERDICT_SCHEMA` / `RATING_SCHEMA`), with the
    explanation limited to `max_reasoning_chars` characters when given."""
    schema = copy.deepcopy(PAIR_VERDICT_SCHEMA if kind == "pairwise" else RATING_SCHEMA)
    if max_reasoning_chars is not None:
        if max_reasoning_chars < 1:
            raise ValueError(f"max_reasoning_chars must be positive, got {max_reasoning_chars}")
        schema["properties"]["reasoning"]["maxLength"] = max_reasoning_chars
    return schema


def verdict_constraint(kind: Kind, mode: VerdictMode, max_reasoning_chars: int | None = None) -> dict[str, Any]:
    """The `ChatRequest` fields that constrain the judge's reply: nothing (text), `json_schema` or `choices`."""
    if mode == "text":
        return {}
    if mode == "json":
        return {"json_schema": verdict_schema(kind, max_reasoning_chars)}
    if mode == "choice":
        return {"choices": list(PAIR_CHOICES if kind == "pairwise" else RATING_CHOICES)}
    raise ValueError(f"mode must be 'text', 'json' or 'choice', got {mode!r}")


def judge_request(judge_input: JudgeInput, kind: Kind, mode: VerdictMode = "text", max_tokens: int = 2048,
                  attempt: int = 0, temperature: float = 0.0, retry_temperature: float = 0.7, seed: int | None = 0,
                  max_reasoning_chars: int | None = None, tag: str = "") -> ChatRequest:
    """The request of one judging attempt: attempt 0 at `temperature`, later attempts (fresh samples, each its
    own `sample_index`) at `retry_temperature` or above."""
    from jinstruct.llm import ChatRequest

    sampled = temperature if attempt == 0 else max(temperature, retry_temperature)
    return ChatRequest(messages=judge_input.messages, temperature=sampled, max_tokens=max_tokens, seed=seed,
                       sample_index=attempt, tag=tag, **verdict_constraint(kind, mode, max_reasoning_chars))


def _check_prompts(inputs: Sequence[JudgeInput], kind: Kind, mode: VerdictMode) -> None:
    if mode == "text":
        return
    for inp in inputs:
        if inp.prompt.output_format.replace(" ", "") != _STRUCTURED_FORMATS[kind]:
            raise ValueError(f"judge prompt {inp.prompt.name!r} has output format {inp.prompt.output_format!r}; "
                             f"mode={mode!r} gives {_STRUCTURED_FORMATS[kind]} verdicts: use mode='text'")


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


def _existing(path: Path, kind: Kind) -> dict[tuple[Any, ...], bool]:
    """{key: is an error} of the judgments in the file (the last line of a key wins). A line cut off by a
    kill is dropped, and the file rewritten without it so that appends start on a fresh line."""
    if not path.exists():
        return {}
    done: dict[tuple[Any, ...], bool]
    records: list[PairwiseJudgment] | list[SingleJudgment]
    if kind == "pairwise":
        pairs = load_pairwise_judgments(path, tolerate_torn_tail=True)
        records = pairs
        done = {_pair_key(j.question_id, j.turn, j.model_1, j.model_2): "error" in (j.g1_winner, j.g2_winner)
                for j in pairs}
    else:
        singles = load_single_judgments(path, tolerate_torn_tail=True)
        records = singles
        done = {(str(j.question_id), j.turn, j.model): j.is_error for j in singles}
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


def pending_tasks(tasks: Sequence[PairTask] | Sequence[SingleTask], path: str | Path,
                  retry_errors: bool = False) -> list[PairTask] | list[SingleTask]:
    """The tasks without a judgment in `path` yet (or whose judgment is an error, with `retry_errors`)."""
    if not tasks:
        return []
    kind: Kind = "pairwise" if isinstance(tasks[0], PairTask) else "single"
    done = _existing(Path(path), kind)
    return [t for t in tasks if _task_key(t) not in done or (retry_errors and done[_task_key(t)])]  # type: ignore[return-value]


# ---- the engine ---------------------------------------------------------------------------------------------


@dataclass
class _Game:
    task: int
    order: int
    input: JudgeInput
    reply: str = API_ERROR_OUTPUT
    reason: str = "not judged"
    attempts: int = 0
    ok: bool = False


def _reply_of(result: ChatResult) -> tuple[str, str | None]:
    """The reply text to parse and keep, and the call's error if it failed."""
    if result.error is None:
        return result.text, None
    return (result.texts[0] if result.texts else API_ERROR_OUTPUT), result.error


def _run(client: LLMClient, games: list[_Game], finish: Callable[[int], None], desc: str,
         request: Callable[[_Game, int], ChatRequest], max_attempts: int, rule: Rule) -> int:
    """Ask every game until its verdict reads or `max_attempts` are spent; `finish(task)` once all of a
    task's games are settled. Returns the number of retries."""
    open_games: dict[int, int] = {}
    for g in games:
        open_games[g.task] = open_games.get(g.task, 0) + 1
    pending, retried = games, 0
    for attempt in range(max_attempts):
        if not pending:
            break
        retried += len(pending) if attempt else 0
        label = desc if attempt == 0 else f"{desc} (retry {attempt})"
        again: list[_Game] = []
        for result in client.stream([request(g, attempt) for g in pending], desc=label):
            g = pending[result.index]
            g.attempts += 1
            g.reply, failure = _reply_of(result)
            verdict = parse_verdict(g.reply, g.input.prompt.output_format, rule)
            g.ok = verdict.ok  # the record is made from the reply, so the reply alone decides
            g.reason = "" if g.ok else "; ".join(x for x in (verdict.error, failure) if x)
            if not g.ok and attempt + 1 < max_attempts:
                again.append(g)
                continue
            open_games[g.task] -= 1
            if open_games[g.task] == 0:
                finish(g.task)
        pending = again
    return retried


def _prepare(client: LLMClient, kind: Kind, tasks: Sequence[PairTask] | Sequence[SingleTask], out_dir: str | Path,
             judge_name: str | None, retry_errors: bool) -> tuple[str, Path, list[Any], int]:
    judge = judge_name or client.model
    if not judge:
        raise ValueError("the judge has no name: pass judge_name (the client's endpoint names no model)")
    path = judgment_path(out_dir, judge, "pair" if kind == "pairwise" else "single")
    todo = pending_tasks(tasks, path, retry_errors)
    return judge, path, list(todo), len(tasks) - len(todo)


def _estimate(client: LLMClient, requests: list[ChatRequest], expected_output_tokens: int | None,
              echo: bool) -> Estimate:
    estimate = client.estimate(requests, expected_output_tokens)
    if echo:
        print(f"estimate: {estimate}")
    return estimate


def judge_pairwise(client: LLMClient, tasks: Sequence[PairTask], out_dir: str | Path, mode: VerdictMode = "text",
                   max_tokens: int = 2048, max_attempts: int = 3, temperature: float = 0.0,
                   retry_temperature: float = 0.7, seed: int | None = 0, max_reasoning_chars: int | None = None,
                   rule: Rule = "last", judge_name: str | None = None, retry_errors: bool = False,
                   expected_output_tokens: int | None = None, echo: bool = True) -> JudgeReport:
    """Judge pairwise games (`judge_prompts.pairwise_tasks`), both orders of each, into
    `<out_dir>/<judge>_pair.jsonl`; games already in the file are skipped. Prints the cost estimate before
    and the summary after when `echo`."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    judge, path, todo, skipped = _prepare(client, "pairwise", tasks, out_dir, judge_name, retry_errors)
    games = [_Game(i, order, t.g1 if order == 1 else t.g2) for i, t in enumerate(todo) for order in (1, 2)]
    _check_prompts([g.input for g in games], "pairwise", mode)

    def request(g: _Game, attempt: int) -> ChatRequest:
        t = todo[g.task]
        return judge_request(g.input, "pairwise", mode, max_tokens, attempt, temperature, retry_temperature, seed,
                             max_reasoning_chars, tag=f"pair q{t.question.question_id} t{t.turn} g{g.order}")

    report = JudgeReport("pairwise", judge, path, len(tasks), skipped)
    report.estimate = _estimate(client, [request(g, 0) for g in games], expected_output_tokens, echo)
    by_task: dict[int, list[_Game]] = {}
    for g in games:
        by_task.setdefault(g.task, []).append(g)

    def finish(i: int) -> None:
        t, (g1, g2) = todo[i], sorted(by_task[i], key=lambda g: g.order)
        record = pairwise_record(t, judge, g1.reply, g2.reply, rule=rule)
        append_records(path, [record])
        report.judged += 1
        failed = [g for g in (g1, g2) if not g.ok]
        report.errors += bool(failed)
        report.failures += [JudgeFailure(t.question.question_id, t.turn, (t.model_1, t.model_2), g.order, g.attempts,
                                         g.reason, g.reply) for g in failed]

    report.retried = _run(client, games, finish, f"judge {judge} pairwise", request, max_attempts, rule)
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
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    judge, path, todo, skipped = _prepare(client, "single", tasks, out_dir, judge_name, retry_errors)
    games = [_Game(i, 1, t.input) for i, t in enumerate(todo)]
    _check_prompts([g.input for g in games], "single", mode)

    def request(g: _Game, attempt: int) -> ChatRequest:
        t = todo[g.task]
        return judge_request(g.input, "single", mode, max_tokens, attempt, temperature, retry_temperature, seed,
                             max_reasoning_chars, tag=f"single q{t.question.question_id} t{t.turn} {t.model}")

    report = JudgeReport("single", judge, path, len(tasks), skipped)
    report.estimate = _estimate(client, [request(g, 0) for g in games], expected_output_tokens, echo)

    def finish(i: int) -> None:
        t, g = todo[i], games[i]
        append_records(path, [single_record(t, judge, g.reply, rule=rule)])
        report.judged += 1
        if not g.ok:
            report.errors += 1
            report.failures.append(JudgeFailure(t.question.question_id, t.turn, (t.model,), 1, g.attempts, g.reason,
                                                g.reply))

    report.retried = _run(client, games, finish, f"judge {judge} single", request, max_attempts, rule)
    if echo:
        print(report.summary())
    return report
