"""Building the judge's messages from a FastChat judge prompt, a question and the answers.

Prompt choice follows FastChat's `gen_judgment.py`: questions whose category needs a reference
(math, reasoning, coding; and our `coding-math`) are judged with the reference-guided prompts
(`pair-math-v1`, `single-math-v1`), the others with `pair-v2` / `single-v1`; turn 2 of a two-turn question
uses the `-multi-turn` variants, which show the whole conversation. Prompt files that use other names
(ku-nlp's `pair`, `pair-math`, `single`, `single-math`) are matched by what their templates contain:
`{ref_answer_1}` marks a reference-guided prompt, `{question_2}` a multi-turn one.

Templates are filled as FastChat fills them (`str.format`, so a literal brace is written `{{`):
single-turn `{question}`, `{answer_a}`, `{answer_b}` / `{answer}`; multi-turn `{question_1}`, `{question_2}`,
`{answer_a_1}`, `{answer_a_2}`, `{answer_b_1}`, `{answer_b_2}` / `{answer_1}`, `{answer_2}`; references
`{ref_answer_1}`, `{ref_answer_2}`.

`pairwise_tasks` / `single_tasks` plan the judgments as FastChat's `make_match*` do (each game in both
orders), and `pairwise_record` / `single_record` turn the judge's replies into FastChat judgment records.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jinstruct.formats.fastchat import (
    REFERENCE_FIELDS,
    template_fields,
    ERROR_SCORE,
    Answer,
    JudgePrompt,
    PairwiseJudgment,
    Question,
    QuestionId,
    SingleJudgment,
    judge_field,
    load_judge_prompts,
    reference_turns,
)
from jinstruct.paths import prompt_path
from jinstruct.judge.verdicts import PairVerdict, Rating, Rule, fastchat_winner, parse_verdict

Kind = Literal["pairwise", "single"]

JA_PROMPTS_FILE = prompt_path("judge_prompts_ja.jsonl")
# FastChat's NEED_REF_CATS, plus this project's merged category.
REFERENCE_CATEGORIES: frozenset[str] = frozenset({"math", "reasoning", "coding", "coding-math"})

# FastChat's prompt names: (kind, reference-guided, multi-turn) -> name
FASTCHAT_NAMES: dict[tuple[Kind, bool, bool], str] = {
    ("pairwise", False, False): "pair-v2",
    ("pairwise", True, False): "pair-math-v1",
    ("pairwise", False, True): "pair-v2-multi-turn",
    ("pairwise", True, True): "pair-math-v1-multi-turn",
    ("single", False, False): "single-v1",
    ("single", True, False): "single-math-v1",
    ("single", False, True): "single-v1-multi-turn",
    ("single", True, True): "single-math-v1-multi-turn",
}

# ja-vicuna-qa-benchmark's names for the same roles (its questions are single-turn, so it has no multi-turn prompts)
JA_VICUNA_NAMES: dict[tuple[Kind, bool, bool], str] = {
    ("pairwise", False, False): "pair",
    ("pairwise", True, False): "pair-math",
    ("single", False, False): "single",
    ("single", True, False): "single-math",
}


def role_names(kind: Kind, reference: bool, multi_turn: bool) -> list[str]:
    """The prompt names that play a role, in order of preference: FastChat's, then ja-vicuna's."""
    names = [FASTCHAT_NAMES[(kind, reference, multi_turn)]]
    if (kind, reference, multi_turn) in JA_VICUNA_NAMES:
        names.append(JA_VICUNA_NAMES[(kind, reference, multi_turn)])
    return names


def load_prompts(path: str | os.PathLike[str] | None = None) -> dict[str, JudgePrompt]:
    """A FastChat-format judge prompt file; by default the project's Japanese prompts."""
    return load_judge_prompts(Path(path) if path is not None else JA_PROMPTS_FILE)


def needs_reference(category: str, reference_categories: frozenset[str] | set[str] = REFERENCE_CATEGORIES) -> bool:
    return category in reference_categories


def is_reference_guided(prompt: JudgePrompt) -> bool:
    return "ref_answer_1" in template_fields(prompt.prompt_template)


def is_multi_turn(prompt: JudgePrompt) -> bool:
    return "question_2" in template_fields(prompt.prompt_template)


def choose_prompt(prompts: Mapping[str, JudgePrompt], kind: Kind, reference: bool, multi_turn: bool) -> JudgePrompt:
    """The prompt for this kind of judgment: FastChat's name (or ja-vicuna's: `pair`, `pair-math`, `single`,
    `single-math`) if the file has it, else the one prompt whose type and template fit (reference-guided: has
    `{ref_answer_1}`; multi-turn: has `{question_2}`)."""
    name = FASTCHAT_NAMES[(kind, reference, multi_turn)]
    for candidate in role_names(kind, reference, multi_turn):
        if candidate in prompts and prompts[candidate].type == kind:
            return prompts[candidate]
    fits = [p for p in prompts.values()
            if p.type == kind and is_reference_guided(p) == reference and is_multi_turn(p) == multi_turn]
    what = f"{kind}{', reference-guided' if reference else ''}{', multi-turn' if multi_turn else ''}"
    if len(fits) == 1:
        return fits[0]
    if not fits:
        raise KeyError(f"no {what} judge prompt (FastChat's name: {name!r}); prompts: {sorted(prompts)}")
    raise KeyError(f"several {what} judge prompts fit ({sorted(p.name for p in fits)}); name one {name!r}")


@dataclass(frozen=True)
class JudgeInput:
    """What the judge is sent: the prompt used, its system message and the filled-in user message."""

    prompt: JudgePrompt
    user_prompt: str

    @property
    def system_prompt(self) -> str:
        return self.prompt.system_prompt

    @property
    def messages(self) -> list[dict[str, str]]:
        """OpenAI chat messages: the system prompt (when the prompt has one) and the user prompt."""
        out = [{"role": "system", "content": self.system_prompt}] if self.system_prompt.strip() else []
        return out + [{"role": "user", "content": self.user_prompt}]


def _fill(prompt: JudgePrompt, kind: Kind, multi_turn: bool, values: dict[str, str]) -> JudgeInput:
    if prompt.type != kind:
        raise ValueError(f"judge prompt {prompt.name!r} is {prompt.type}, not {kind}")
    fields = template_fields(prompt.prompt_template)
    if multi_turn != ("question_2" in fields):
        raise ValueError(f"judge prompt {prompt.name!r} is {'not ' if multi_turn else ''}a multi-turn prompt"
                         f" but turn {2 if multi_turn else 1} is being judged")
    missing = fields - values.keys()
    if missing & REFERENCE_FIELDS:
        raise ValueError(f"judge prompt {prompt.name!r} needs a reference answer ({sorted(missing & REFERENCE_FIELDS)})"
                         " and none was given (or it has too few turns)")
    if missing:
        raise ValueError(f"judge prompt {prompt.name!r} has placeholders {sorted(missing)} that a {kind} judgment"
                         " does not fill")
    return JudgeInput(prompt, prompt.prompt_template.format_map(values))


def _turns(what: str, turns: Sequence[str], need: int) -> list[str]:
    if isinstance(turns, str):
        raise TypeError(f"{what} must be a list of turns, not a string")
    if len(turns) < need:
        raise ValueError(f"{what} has {len(turns)} turn(s); judging turn {need} needs {need}")
    return list(turns)


def _reference_values(reference: Sequence[str] | None) -> dict[str, str]:
    if reference is None:
        return {}
    if isinstance(reference, str):
        raise TypeError("reference must be a list of turns, not a string")
    return {f"ref_answer_{i}": text for i, text in enumerate(reference[:2], start=1)}


def pairwise_input(prompt: JudgePrompt, question: Sequence[str], answer_a: Sequence[str], answer_b: Sequence[str],
                   reference: Sequence[str] | None = None, turn: int = 1) -> JudgeInput:
    """One pairwise game: `answer_a` is shown as assistant A. Arguments are turn lists; turn 2 uses the
    multi-turn template with both turns."""
    if turn not in (1, 2):
        raise ValueError(f"turn must be 1 or 2 (FastChat judges at most two turns), got {turn}")
    q, a, b = (_turns(w, t, turn) for w, t in (("question", question), ("answer_a", answer_a), ("answer_b", answer_b)))
    if turn == 1:
        values = {"question": q[0], "answer_a": a[0], "answer_b": b[0]}
    else:
        values = {"question_1": q[0], "question_2": q[1], "answer_a_1": a[0], "answer_a_2": a[1],
                  "answer_b_1": b[0], "answer_b_2": b[1]}
    return _fill(prompt, "pairwise", turn == 2, values | _reference_values(reference))


def single_input(prompt: JudgePrompt, question: Sequence[str], answer: Sequence[str],
                 reference: Sequence[str] | None = None, turn: int = 1) -> JudgeInput:
    """One single-answer grading; turn 2 uses the multi-turn template with both turns."""
    if turn not in (1, 2):
        raise ValueError(f"turn must be 1 or 2 (FastChat judges at most two turns), got {turn}")
    q, a = (_turns(w, t, turn) for w, t in (("question", question), ("answer", answer)))
    if turn == 1:
        values = {"question": q[0], "answer": a[0]}
    else:
        values = {"question_1": q[0], "question_2": q[1], "answer_1": a[0], "answer_2": a[1]}
    return _fill(prompt, "single", turn == 2, values | _reference_values(reference))


def judged_turns(question: Question) -> list[int]:
    """The turns FastChat judges for a question: turn 1, and turn 2 when the question has exactly two turns."""
    return [1, 2] if len(question.turns) == 2 else [1]


def prompt_for(prompts: Mapping[str, JudgePrompt], kind: Kind, question: Question, turn: int = 1,
               reference: Sequence[str] | None = None,
               reference_categories: frozenset[str] | set[str] = REFERENCE_CATEGORIES,
               require_reference: bool = True) -> JudgePrompt:
    """The prompt FastChat would use for this question and turn.

    A question in a reference category without a reference answer is an error (FastChat's `check_data`),
    unless `require_reference=False`, when it is judged with the general prompt instead.
    """
    guided = needs_reference(question.category, reference_categories)
    if guided and reference is None:
        if require_reference:
            raise ValueError(f"question {question.question_id!r} (category {question.category!r}) needs a reference"
                             " answer: add `reference` to the question or pass a reference answer file")
        guided = False
    return choose_prompt(prompts, kind, reference=guided, multi_turn=turn == 2)


# ---- matches: what to judge, and the FastChat records of the verdicts ------------------------------------------


@dataclass(frozen=True)
class PairTask:
    """One pairwise game, ready to send: g1 shows model_1 as assistant A, g2 the swapped order."""

    question: Question
    turn: int
    model_1: str
    model_2: str
    g1: JudgeInput
    g2: JudgeInput

    @property
    def key(self) -> tuple[str, int, str, str]:
        """(question_id, turn, model_1, model_2): what a resumed run skips when it is already judged."""
        return str(self.question.question_id), self.turn, self.model_1, self.model_2


@dataclass(frozen=True)
class SingleTask:
    """One answer to grade."""

    question: Question
    turn: int
    model: str
    input: JudgeInput

    @property
    def key(self) -> tuple[str, int, str]:
        return str(self.question.question_id), self.turn, self.model


def _answer_lookup(answers: Mapping[str, Mapping[QuestionId, Answer]]) -> dict[str, dict[str, Answer]]:
    return {m: {str(q): a for q, a in by_q.items()} for m, by_q in answers.items()}


def _answer_turns(lookup: dict[str, dict[str, Answer]], model: str, question: Question) -> list[str]:
    if model not in lookup:
        raise ValueError(f"no answers of model {model!r}; models with answers: {sorted(lookup)}")
    answer = lookup[model].get(str(question.question_id))
    if answer is None:
        raise ValueError(f"model {model!r} has no answer to question {question.question_id!r}")
    return answer.turns


def _reference(question: Question, reference_answers: Mapping[QuestionId, Answer] | None) -> list[str] | None:
    ref = None if reference_answers is None else {str(q): a for q, a in reference_answers.items()}.get(str(question.question_id))
    return reference_turns(question, ref)


def _turns_to_judge(question: Question, multi_turn: bool) -> list[int]:
    return judged_turns(question) if multi_turn else [1]


def pairwise_tasks(questions: Sequence[Question], answers: Mapping[str, Mapping[QuestionId, Answer]],
                   models: Sequence[str], prompts: Mapping[str, JudgePrompt], baseline: str | None = None,
                   reference_answers: Mapping[QuestionId, Answer] | None = None, multi_turn: bool = True,
                   reference_categories: frozenset[str] | set[str] = REFERENCE_CATEGORIES,
                   require_reference: bool = True) -> list[PairTask]:
    """FastChat's matches: each model against the baseline (model_1 = the model, model_2 = the baseline),
    or every pair of models when there is no baseline; every question, turn 1 and (for two-turn questions,
    when `multi_turn`) turn 2. `answers` is {model: {question_id: answer}} (see `load_answer_dir`)."""
    lookup = _answer_lookup(answers)
    if baseline is not None:
        pairs = [(m, baseline) for m in models if m != baseline]
    else:
        pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]
    tasks = []
    for q in questions:
        reference = _reference(q, reference_answers)
        for turn in _turns_to_judge(q, multi_turn):
            prompt = prompt_for(prompts, "pairwise", q, turn, reference, reference_categories, require_reference)
            ref = reference if is_reference_guided(prompt) else None
            for m1, m2 in pairs:
                a1, a2 = _answer_turns(lookup, m1, q), _answer_turns(lookup, m2, q)
                tasks.append(PairTask(q, turn, m1, m2, pairwise_input(prompt, q.turns, a1, a2, ref, turn),
                                      pairwise_input(prompt, q.turns, a2, a1, ref, turn)))
    return tasks


def single_tasks(questions: Sequence[Question], answers: Mapping[str, Mapping[QuestionId, Answer]],
                 models: Sequence[str], prompts: Mapping[str, JudgePrompt],
                 reference_answers: Mapping[QuestionId, Answer] | None = None, multi_turn: bool = True,
                 reference_categories: frozenset[str] | set[str] = REFERENCE_CATEGORIES,
                 require_reference: bool = True) -> list[SingleTask]:
    """Every model's answer to every question (and turn 2 of two-turn questions), to grade 1-10."""
    lookup = _answer_lookup(answers)
    tasks = []
    for q in questions:
        reference = _reference(q, reference_answers)
        for turn in _turns_to_judge(q, multi_turn):
            prompt = prompt_for(prompts, "single", q, turn, reference, reference_categories, require_reference)
            ref = reference if is_reference_guided(prompt) else None
            for m in models:
                tasks.append(SingleTask(q, turn, m, single_input(prompt, q.turns, _answer_turns(lookup, m, q), ref, turn)))
    return tasks


def pairwise_record(task: PairTask, judge_model: str, g1_reply: str, g2_reply: str, tstamp: float | None = None,
                    rule: Rule = "last") -> PairwiseJudgment:
    """The FastChat pairwise judgment of a game from the judge's two replies (either may be a structured
    JSON verdict); an unparseable reply makes that order's winner "error"."""
    v1, v2 = (parse_verdict(r, task.g1.prompt.output_format, rule, task.g1.prompt.scale) for r in (g1_reply, g2_reply))
    if not isinstance(v1, PairVerdict) or not isinstance(v2, PairVerdict):
        raise ValueError(f"judge prompt {task.g1.prompt.name!r} is not a pairwise verdict format")
    return PairwiseJudgment(
        question_id=task.question.question_id, model_1=task.model_1, model_2=task.model_2,
        g1_winner=fastchat_winner(v1, 1), g2_winner=fastchat_winner(v2, 2),
        judge=judge_field(judge_model, task.g1.prompt.name, rule),
        g1_user_prompt=task.g1.user_prompt, g1_judgment=g1_reply, g2_user_prompt=task.g2.user_prompt,
        g2_judgment=g2_reply, turn=task.turn, tstamp=time.time() if tstamp is None else tstamp)


def single_record(task: SingleTask, judge_model: str, reply: str, tstamp: float | None = None,
                  rule: Rule = "last") -> SingleJudgment:
    """The FastChat single judgment of a graded answer; score -1 when the reply has no usable rating."""
    verdict = parse_verdict(reply, task.input.prompt.output_format, rule, task.input.prompt.scale)
    if not isinstance(verdict, Rating):
        raise ValueError(f"judge prompt {task.input.prompt.name!r} is not a rating format")
    return SingleJudgment(
        question_id=task.question.question_id, model=task.model,
        judge=judge_field(judge_model, task.input.prompt.name, rule),
        user_prompt=task.input.user_prompt, judgment=reply,
        score=verdict.score if verdict.score is not None else ERROR_SCORE, turn=task.turn,
        tstamp=time.time() if tstamp is None else tstamp)
