"""The generic grader: an LLM judge over any prompt and response, on top of the one LLM client.

    grader = Grader(client)                                   # the project's Japanese judge prompts, text verdicts
    grader.grade("日本の首都は?", "東京です。").score           # 1-10 (None when no verdict could be read)
    Grader(client, prompts=load_prompts(prompt_path("judge_single_0to10_ja.jsonl")))  # 0-10 grades
    grader.compare("日本の首都は?", "東京です。", "大阪です。").winner   # "A", "B", "tie" or "error"

`grade` uses the prompts' single-grading template (`[[rating]]`), `compare` the pairwise one in both orders (the
first answer shown as A, then as B) combined by FastChat's rule: a winner only when both orders agree, else a tie.
With a reference answer, the reference-guided templates are used. Any FastChat-format judge prompt file works
(`prompts=load_prompts(path)`).

`ask` is the engine under both, and under the benchmark judging of stage 06 (`jinstruct.judge.engine`): every
request goes through the client (cached, paced, budgeted), and a reply whose verdict cannot be read is asked again
as a fresh sample (a new `sample_index`, so a new cache key) at `retry_temperature`, up to `max_attempts`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from jinstruct.formats.fastchat import JudgePrompt
from jinstruct.judge.prompts import JudgeInput, Kind, choose_prompt, load_prompts, pairwise_input, single_input
from jinstruct.judge.verdicts import (
    API_ERROR_OUTPUT,
    PAIR_VERDICT_SCHEMA,
    RATING_SCHEMA,
    PairVerdict,
    Rating,
    Rule,
    fastchat_winner,
    game_outcome,
    parse_verdict,
)
from jinstruct.llm import ChatRequest, ChatResult, LLMClient

VerdictMode = Literal["text", "json", "choice"]
PAIR_CHOICES = ("[[A]]", "[[B]]", "[[C]]")
RATING_CHOICES = tuple(f"[[{i}]]" for i in range(1, 11))  # FastChat's 1-10 (`rating_choices` for other scales)
STRUCTURED_FORMATS: dict[Kind, str] = {"pairwise": "[[A]]", "single": "[[rating]]"}


def verdict_schema(kind: Kind, max_reasoning_chars: int | None = None,
                   scale: tuple[float, float] = (1, 10)) -> dict[str, Any]:
    """The JSON schema of a structured verdict (`verdicts.PAIR_VERDICT_SCHEMA` / `RATING_SCHEMA`), with the
    explanation limited to `max_reasoning_chars` characters when given, and ratings on `scale` (lowest, highest)."""
    schema = copy.deepcopy(PAIR_VERDICT_SCHEMA if kind == "pairwise" else RATING_SCHEMA)
    if max_reasoning_chars is not None:
        if max_reasoning_chars < 1:
            raise ValueError(f"max_reasoning_chars must be positive, got {max_reasoning_chars}")
        schema["properties"]["reasoning"]["maxLength"] = max_reasoning_chars
    if kind == "single":
        schema["properties"]["rating"].update(minimum=int(scale[0]), maximum=int(scale[1]))
    return schema


def rating_choices(scale: tuple[float, float] = (1, 10)) -> tuple[str, ...]:
    """The verdicts a choice-constrained grader may give: `[[low]]` ... `[[high]]`."""
    return tuple(f"[[{i}]]" for i in range(int(scale[0]), int(scale[1]) + 1))


def verdict_constraint(kind: Kind, mode: VerdictMode, max_reasoning_chars: int | None = None,
                       scale: tuple[float, float] = (1, 10)) -> dict[str, Any]:
    """The `ChatRequest` fields that constrain the judge's reply: nothing (text), `json_schema` or `choices`."""
    if mode == "text":
        return {}
    if mode == "json":
        return {"json_schema": verdict_schema(kind, max_reasoning_chars, scale)}
    if mode == "choice":
        return {"choices": list(PAIR_CHOICES if kind == "pairwise" else rating_choices(scale))}
    raise ValueError(f"mode must be 'text', 'json' or 'choice', got {mode!r}")


@dataclass(frozen=True)
class GraderSettings:
    """How the judge is asked. temperature: the first attempt (0: the judge's own verdict, FastChat's setting);
    later attempts are fresh samples at `retry_temperature` or above. rule: which verdict counts when a reply holds
    several ("last", or FastChat's "first")."""

    mode: VerdictMode = "text"
    max_tokens: int = 2048
    max_attempts: int = 3
    temperature: float = 0.0
    retry_temperature: float = 0.7
    seed: int | None = 0
    max_reasoning_chars: int | None = None
    rule: Rule = "last"

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")


@dataclass
class Asked:
    """What the judge said about one input: the reply kept (the last one), whether its verdict reads, why not."""

    input: JudgeInput
    kind: Kind
    reply: str = API_ERROR_OUTPUT
    ok: bool = False
    reason: str = "not judged"
    attempts: int = 0
    verdict: PairVerdict | Rating | None = None


@dataclass(frozen=True)
class Grade:
    """A grade of one response on the prompt's scale (1-10, or e.g. 0-10: `JudgePrompt.scale`); `score` is None
    when no attempt gave a readable rating."""

    score: float | None
    judgment: str
    attempts: int
    prompt_name: str
    reason: str = ""


@dataclass(frozen=True)
class Comparison:
    """Two responses compared in both orders: `winner` "A" (the first response), "B", "tie" or "error"."""

    winner: Literal["A", "B", "tie", "error"]
    g1_winner: str  # FastChat's g1/g2 winners: "model_1" is the first response, "model_2" the second
    g2_winner: str
    judgments: tuple[str, str]
    prompt_name: str


def judge_request(judge_input: JudgeInput, kind: Kind, settings: GraderSettings, attempt: int = 0,
                  tag: str = "") -> ChatRequest:
    """The request of one judging attempt: attempt 0 at `temperature`, later attempts (fresh samples, each its
    own `sample_index`) at `retry_temperature` or above."""
    s = settings
    sampled = s.temperature if attempt == 0 else max(s.temperature, s.retry_temperature)
    return ChatRequest(messages=judge_input.messages, temperature=sampled, max_tokens=s.max_tokens, seed=s.seed,
                       sample_index=attempt, tag=tag,
                       **verdict_constraint(kind, s.mode, s.max_reasoning_chars, judge_input.prompt.scale))


def check_prompts(inputs: Sequence[JudgeInput], kind: Kind, mode: VerdictMode) -> None:
    """Structured modes give `[[A]]`-style or `[[rating]]` verdicts: a prompt asking for another format cannot use them."""
    if mode == "text":
        return
    for inp in inputs:
        if inp.prompt.output_format.replace(" ", "") != STRUCTURED_FORMATS[kind]:
            raise ValueError(f"judge prompt {inp.prompt.name!r} has output format {inp.prompt.output_format!r}; "
                             f"mode={mode!r} gives {STRUCTURED_FORMATS[kind]} verdicts: use mode='text'")


def _reply_of(result: ChatResult) -> tuple[str, str | None]:
    """The reply text to parse and keep, and the call's error if it failed."""
    if result.error is None:
        return result.text, None
    return (result.texts[0] if result.texts else API_ERROR_OUTPUT), result.error


@dataclass
class Grader:
    client: LLMClient
    settings: GraderSettings = field(default_factory=GraderSettings)
    prompts: Mapping[str, JudgePrompt] = field(default_factory=load_prompts)

    def ask(self, inputs: Sequence[JudgeInput], kind: Kind, desc: str = "judge",
            tags: Sequence[str] | None = None, settled: Callable[[int, Asked], None] | None = None,
            rounds: Sequence[int] | None = None) -> list[Asked]:
        """Ask the judge about every input until its verdict reads or `max_attempts` are spent; `settled(i, asked)`
        is called as each input is decided (in the order replies arrive). Returns one `Asked` per input.

        `rounds[i]` gives input i that many rounds of `max_attempts` (default 1): an input recorded as an error
        before is judged again through the attempts it made then (answered by the cache) and one new round."""
        check_prompts(inputs, kind, self.settings.mode)
        asked = [Asked(inp, kind) for inp in inputs]
        limits = [self.settings.max_attempts * (rounds[i] if rounds is not None else 1) for i in range(len(inputs))]
        pending = list(range(len(inputs)))
        for attempt in range(max(limits, default=0)):
            if not pending:
                break
            label = desc if attempt == 0 else f"{desc} (retry {attempt})"
            requests = [judge_request(inputs[i], kind, self.settings, attempt, tags[i] if tags else "") for i in pending]
            again: list[int] = []
            for result in self.client.stream(requests, desc=label):
                i = pending[result.index]
                a = asked[i]
                a.attempts += 1
                a.reply, failure = _reply_of(result)
                a.verdict = parse_verdict(a.reply, a.input.prompt.output_format, self.settings.rule,
                                          a.input.prompt.scale)
                a.ok = a.verdict.ok  # the record is made from the reply, so the reply alone decides
                a.reason = "" if a.ok else "; ".join(x for x in (a.verdict.error, failure) if x)
                if not a.ok and attempt + 1 < limits[i]:
                    again.append(i)
                elif settled is not None:
                    settled(i, a)
            pending = again
        return asked

    def requests(self, inputs: Sequence[JudgeInput], kind: Kind, tags: Sequence[str] | None = None) -> list[ChatRequest]:
        """The first attempt's request of each input (what an estimate counts)."""
        return [judge_request(inp, kind, self.settings, 0, tags[i] if tags else "") for i, inp in enumerate(inputs)]

    # ---- any prompt and response ------------------------------------------------------------------------------

    def prompt(self, kind: Kind, reference: bool = False) -> JudgePrompt:
        """The prompt `grade` (single) or `compare` (pairwise) uses, with or without a reference answer."""
        return choose_prompt(self.prompts, kind, reference, False)

    def _prompt(self, kind: Kind, reference: str | None) -> JudgePrompt:
        return self.prompt(kind, reference is not None)

    def grade_requests(self, items: Sequence[tuple[str, str]]) -> list[ChatRequest]:
        """The first attempt's request of grading each (prompt, response), as `grade_many` sends it (for estimates)."""
        return self.requests([single_input(self.prompt("single"), [p], [r]) for p, r in items], "single")

    def grade_many(self, items: Sequence[tuple[str, str]], references: Sequence[str | None] | None = None,
                   desc: str = "grade") -> list[Grade]:
        """A grade of each (prompt, response), on the single prompt's scale (FastChat's 1-10 unless the prompt's
        `rating_range` says otherwise, e.g. `prompts/judge_single_0to10_ja.jsonl`)."""
        refs = list(references) if references is not None else [None] * len(items)
        inputs = [single_input(self._prompt("single", ref), [prompt], [response], [ref] if ref is not None else None)
                  for (prompt, response), ref in zip(items, refs, strict=True)]
        out = []
        for a in self.ask(inputs, "single", desc):
            score = a.verdict.score if isinstance(a.verdict, Rating) else None
            out.append(Grade(score, a.reply, a.attempts, a.input.prompt.name, a.reason))
        return out

    def grade(self, prompt: str, response: str, reference: str | None = None) -> Grade:
        """A 1-10 grade of `response` to `prompt`."""
        return self.grade_many([(prompt, response)], [reference])[0]

    def compare_many(self, items: Sequence[tuple[str, str, str]], references: Sequence[str | None] | None = None,
                     desc: str = "compare") -> list[Comparison]:
        """Each (prompt, response A, response B) judged in both orders, combined by FastChat's rule."""
        refs = list(references) if references is not None else [None] * len(items)
        inputs = []
        for (prompt, a, b), ref in zip(items, refs, strict=True):
            p, r = self._prompt("pairwise", ref), ([ref] if ref is not None else None)
            inputs += [pairwise_input(p, [prompt], [a], [b], r), pairwise_input(p, [prompt], [b], [a], r)]
        asked = self.ask(inputs, "pairwise", desc)
        out = []
        for g1, g2 in zip(asked[0::2], asked[1::2]):
            w1 = fastchat_winner(g1.verdict, 1) if isinstance(g1.verdict, PairVerdict) else "error"
            w2 = fastchat_winner(g2.verdict, 2) if isinstance(g2.verdict, PairVerdict) else "error"
            outcome = game_outcome(w1, w2)
            winner = {"model_1": "A", "model_2": "B"}.get(outcome, outcome)
            out.append(Comparison(winner, w1, w2, (g1.reply, g2.reply), g1.input.prompt.name))  # type: ignore[arg-type]
        return out

    def compare(self, prompt: str, a: str, b: str, reference: str | None = None) -> Comparison:
        """`a` against `b` as answers to `prompt`, in both orders."""
        return self.compare_many([(prompt, a, b)], [reference])[0]
