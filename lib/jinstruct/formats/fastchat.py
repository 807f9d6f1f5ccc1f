"""FastChat `llm_judge` file formats: questions, answers, judge prompts and judgments.

The records are the ones FastChat's `gen_model_answer.py`, `gen_judgment.py` and `show_result.py` read and
write, so official benchmark files (MT-Bench, Japanese MT-Bench, ja-vicuna-qa-benchmark) load as they are and
FastChat's tools read what we write:

- question: `question_id, category, turns[str]` (+ `reference[str]` in newer MT-Bench files)
- answer: `question_id, answer_id, model_id, choices[{index, turns[str]}], tstamp`
- judge prompt: `name, type (pairwise|single), system_prompt, prompt_template, description, category, output_format`
- pairwise judgment: `question_id, model_1, model_2, g1_winner, g2_winner, judge [model, prompt name],
  g1_user_prompt, g1_judgment, g2_user_prompt, g2_judgment, turn, tstamp`. Game 1 shows model_1 as
  assistant A; game 2 swaps the order, and FastChat stores both winners already mapped back to
  `model_1` / `model_2` (or `tie`, `error`).
- single judgment: `question_id, model, judge [model, prompt name], user_prompt, judgment, score, turn, tstamp`;
  `score` is -1 when the judge's reply had no rating.

Unknown fields are kept (published files carry extras such as `m1_score` or `question`). ku-nlp's
per-pair judgment files (ja-vicuna-qa-benchmark's v2 layout: `model_1, model_2, question_id, question, answer_1,
answer_2, g1_judgment, g2_judgment, g1_winner, g2_winner, judge_model, judge_prompt, tstamp`) name the judge with
`judge_model` / `judge_prompt` instead of `judge`; those are read too. Every bad line is a `DataError` naming the
file, the line and the field.

`judge` is FastChat's `[judge model, prompt name]`; this project's judgments add a third element naming the rule
the verdict was read with (`"verdict:last"` or `"verdict:fastchat"`, see `jinstruct.judge.verdicts`). FastChat
reads the list as a tuple and its `show_result.py` ignores it, so the files stay FastChat-readable.

Folder layouts read as they are: FastChat's `model_answer/<model>.jsonl` and `reference_answer/<judge>.jsonl`, and
ja-vicuna-qa-benchmark's `model_answer/<model>/results.jsonl` and `reference_answer/<judge>/results.jsonl` (the
model is then the folder's name).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
import string
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jinstruct.formats.benchmarks import BenchmarkSpec, benchmark_folder
from jinstruct.io import DataError, append_jsonl, iter_jsonl, validation_error, write_jsonl

QuestionId = int | str
Winner = Literal["model_1", "model_2", "tie", "error"]
ERROR_SCORE = -1  # FastChat's score for a single judgment whose reply had no rating


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")

    def record(self) -> dict[str, Any]:
        """The JSON object FastChat writes (unset optional fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)


class Question(_Record):
    question_id: QuestionId
    category: str
    turns: list[str] = Field(min_length=1)
    reference: list[str] | None = None  # reference answers per turn (MT-Bench's math/reasoning/coding)


class Choice(_Record):
    index: int = 0
    turns: list[str] = Field(min_length=1)


class Answer(_Record):
    question_id: QuestionId
    answer_id: str = ""
    model_id: str | None = None  # FastChat names the model by the file; the loader fills it from the file name
    choices: list[Choice] = Field(min_length=1)
    tstamp: float = 0.0

    @property
    def turns(self) -> list[str]:
        """The answer's turns (the first choice, as FastChat's judge uses)."""
        return self.choices[0].turns


class JudgePrompt(_Record):
    name: str
    type: Literal["pairwise", "single"]
    system_prompt: str = ""
    prompt_template: str
    description: str = ""
    category: str = "general"
    output_format: str  # "[[A]]", "[[rating]]" or "[[rating_a,rating_b]]"
    # the lowest and highest rating of a "[[rating]]" prompt; FastChat's prompts have none and mean 1-10
    # (the project's 0-10 prompt, after arXiv 2503.23714, writes [0, 10]); FastChat's loader ignores the field
    rating_range: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _range(self) -> JudgePrompt:
        if self.rating_range is not None and not self.rating_range[0] < self.rating_range[1]:
            raise ValueError(f"rating_range {list(self.rating_range)}: the lowest rating must be below the highest")
        return self

    @property
    def scale(self) -> tuple[float, float]:
        """(lowest, highest) rating this prompt asks for: `rating_range`, else FastChat's 1-10."""
        return self.rating_range if self.rating_range is not None else (1, 10)


JudgeField = tuple[str, str] | tuple[str, str, str]
VERDICT_PREFIX = "verdict:"


def judge_field(judge_model: str, prompt_name: str, rule: str | None = None) -> JudgeField:
    """The `judge` of a judgment record: FastChat's (model, prompt name), plus the verdict rule when given."""
    return (judge_model, prompt_name) if rule is None else (judge_model, prompt_name, VERDICT_PREFIX + rule)


class _JudgmentRecord(_Record):
    @property
    def verdict_rule(self) -> str | None:
        """The rule the verdict was read with, as recorded in `judge` (None: not recorded, e.g. FastChat's files)."""
        judge = getattr(self, "judge")
        if len(judge) > 2 and judge[2].startswith(VERDICT_PREFIX):
            return judge[2][len(VERDICT_PREFIX):]
        return None

    @model_validator(mode="before")
    @classmethod
    def accept_split_judge_fields(cls, data: Any) -> Any:
        """ku-nlp's per-pair files write `judge_model` and `judge_prompt` instead of `judge`."""
        if isinstance(data, dict) and "judge" not in data and "judge_model" in data:
            data = dict(data)
            data["judge"] = (data.pop("judge_model"), data.pop("judge_prompt", ""))
        return data


class PairwiseJudgment(_JudgmentRecord):
    question_id: QuestionId
    model_1: str
    model_2: str
    g1_winner: Winner
    g2_winner: Winner
    judge: JudgeField  # (judge model, judge prompt name[, "verdict:<rule>"])
    g1_user_prompt: str = ""
    g1_judgment: str = ""
    g2_user_prompt: str = ""
    g2_judgment: str = ""
    turn: int = 1
    tstamp: float = 0.0


class SingleJudgment(_JudgmentRecord):
    question_id: QuestionId
    model: str
    judge: JudgeField
    user_prompt: str = ""
    judgment: str = ""
    score: int | float  # -1: no rating found
    turn: int = 1
    tstamp: float = 0.0

    @property
    def is_error(self) -> bool:
        return self.score == ERROR_SCORE


M = TypeVar("M", bound=BaseModel)


def _load(path: str | os.PathLike[str], model: type[M], tolerate_torn_tail: bool = False) -> list[tuple[int, M]]:
    out: list[tuple[int, M]] = []
    for line, obj in iter_jsonl(path, tolerate_torn_tail=tolerate_torn_tail):
        try:
            out.append((line, model.model_validate(obj)))
        except ValidationError as e:
            raise validation_error(path, line, e) from None
    return out


def load_questions(path: str | os.PathLike[str]) -> list[Question]:
    """A benchmark's `question.jsonl`: at least one question; question ids are integers (as in every FastChat
    benchmark: a quoted "1" would never match the answers and judgments keyed by the number) and unique."""
    seen: dict[QuestionId, int] = {}
    questions = []
    for line, q in _load(path, Question):
        if not isinstance(q.question_id, int) or isinstance(q.question_id, bool):
            raise DataError(path, line, "question_id", f"{q.question_id!r} is not an integer (FastChat's question "
                            "ids are numbers: write 1, not \"1\")")
        if q.question_id in seen:
            raise DataError(path, line, "question_id", f"duplicate id {q.question_id!r} (first on line {seen[q.question_id]})")
        seen[q.question_id] = line
        questions.append(q)
    if not questions:
        raise DataError(path, None, None, "no questions in the file")
    return questions


def load_answers(path: str | os.PathLike[str], model_id: str | None = None, strict_name: bool = False) -> list[Answer]:
    """One model's answer file. A record without `model_id` gets `model_id` or else the file name's stem
    (FastChat's convention: `model_answer/<model>.jsonl`). Question ids must be unique. With `strict_name`, a
    record whose `model_id` is another model's (not the one the file is named for) is an error."""
    name = model_id or Path(path).stem
    seen: dict[QuestionId, int] = {}
    answers = []
    for line, a in _load(path, Answer):
        if a.question_id in seen:
            raise DataError(path, line, "question_id", f"second answer to question {a.question_id!r} (first on line {seen[a.question_id]})")
        seen[a.question_id] = line
        if a.model_id is None:
            a.model_id = name
        elif strict_name and a.model_id != name and file_safe(a.model_id) != file_safe(name):
            raise DataError(path, line, "model_id", f"an answer of {a.model_id!r} read as the answers of {name!r} "
                            f"(the file name, or the config's model_id, says whose answers these are: use "
                            f"{file_safe(a.model_id)!r}, or fix model_id)")
        answers.append(a)
    return answers


def answer_files(directory: str | os.PathLike[str]) -> dict[str, Path]:
    """{model name: file} of a `model_answer/` (or `reference_answer/`) folder: FastChat's `<model>.jsonl` and
    ja-vicuna's `<model>/results.jsonl`. A model in both layouts is an error."""
    out: dict[str, Path] = {}
    folder = Path(directory)
    for path in sorted([*folder.glob("*.jsonl"), *folder.glob("*/results.jsonl")]):
        model = path.parent.name if path.name == "results.jsonl" and path.parent != folder else path.stem
        if model in out:
            raise DataError(path, None, None, f"answers of {model!r} also in {out[model]}: keep one of them")
        out[model] = path
    return out


def load_answer_dir(directory: str | os.PathLike[str]) -> dict[str, dict[QuestionId, Answer]]:
    """Every answer file of a `model_answer/` folder (see `answer_files`): {model name: {question_id: answer}}."""
    return {model: {a.question_id: a for a in load_answers(path, model_id=model, strict_name=True)}
            for model, path in answer_files(directory).items()}


# the placeholders a FastChat judge template may use, by (kind, multi-turn)
TEMPLATE_FIELDS: dict[tuple[str, bool], set[str]] = {
    ("pairwise", False): {"question", "answer_a", "answer_b"},
    ("pairwise", True): {"question_1", "question_2", "answer_a_1", "answer_a_2", "answer_b_1", "answer_b_2"},
    ("single", False): {"question", "answer"},
    ("single", True): {"question_1", "question_2", "answer_1", "answer_2"},
}
REFERENCE_FIELDS = {"ref_answer_1", "ref_answer_2"}
KNOWN_FIELDS = set().union(*TEMPLATE_FIELDS.values(), REFERENCE_FIELDS)


def template_fields(template: str) -> set[str]:
    """The placeholders of a FastChat template; a malformed or unknown placeholder is a ValueError."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:
        raise ValueError(f"malformed template ({e}); write a literal brace as {{{{ or }}}}") from None
    unknown = fields - KNOWN_FIELDS
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; known: {sorted(KNOWN_FIELDS)}")
    return fields


def load_judge_prompts(path: str | os.PathLike[str]) -> dict[str, JudgePrompt]:
    """A `judge_prompts.jsonl`: {name: prompt}; names must be unique and templates well formed."""
    prompts: dict[str, JudgePrompt] = {}
    lines: dict[str, int] = {}
    for line, p in _load(path, JudgePrompt):
        if p.name in prompts:
            raise DataError(path, line, "name", f"duplicate prompt name {p.name!r} (first on line {lines[p.name]})")
        try:
            template_fields(p.prompt_template)
        except ValueError as e:
            raise DataError(path, line, "prompt_template", str(e)) from None
        prompts[p.name], lines[p.name] = p, line
    return prompts


def load_pairwise_judgments(path: str | os.PathLike[str], tolerate_torn_tail: bool = False) -> list[PairwiseJudgment]:
    """A pairwise judgment file (`<judge>_pair.jsonl`, ours or published)."""
    return [j for _, j in _load(path, PairwiseJudgment, tolerate_torn_tail)]


def load_single_judgments(path: str | os.PathLike[str], tolerate_torn_tail: bool = False) -> list[SingleJudgment]:
    """A single-grading judgment file (`<judge>_single.jsonl`, ours or published)."""
    return [j for _, j in _load(path, SingleJudgment, tolerate_torn_tail)]


def judgment_lines(path: str | os.PathLike[str], kind: Literal["pairwise", "single"]
                   ) -> list[tuple[int, PairwiseJudgment | SingleJudgment]]:
    """(line, judgment) of every judgment in a file, for tools that must say where a problem is."""
    model: type[PairwiseJudgment] | type[SingleJudgment] = PairwiseJudgment if kind == "pairwise" else SingleJudgment
    return list(_load(path, model))


def judgment_key(j: PairwiseJudgment | SingleJudgment) -> tuple[Any, ...]:
    """What a judgment is of: (judge, question, turn, the two models in either order) or (judge, question, turn,
    model); two lines with one key judge the same thing twice."""
    if isinstance(j, PairwiseJudgment):
        return j.judge[0], str(j.question_id), j.turn, frozenset((j.model_1, j.model_2))
    return j.judge[0], str(j.question_id), j.turn, j.model


def write_records(path: str | os.PathLike[str], records: Iterable[_Record]) -> Path:
    """Write questions, answers or judgments as FastChat JSON Lines, atomically."""
    return write_jsonl(path, (r.record() for r in records))


def append_records(path: str | os.PathLike[str], records: Iterable[_Record]) -> None:
    """Append records (fsync'd): judgments are logged as they arrive so a killed run resumes."""
    append_jsonl(path, (r.record() for r in records))


def file_safe(name: str) -> str:
    """A model or judge name as a file name: `/` and other unsafe characters become `--` (ku-nlp's habit)."""
    return re.sub(r"[^\w.\-+]+", "--", name, flags=re.UNICODE).strip("-") or "_"


def answer_path(answers_dir: str | os.PathLike[str], model_id: str) -> Path:
    """`<answers_dir>/<model_id>.jsonl` (FastChat's `model_answer/<model>.jsonl`; unsafe characters become `--`)."""
    return Path(answers_dir) / f"{file_safe(model_id)}.jsonl"


def judgment_path(directory: str | os.PathLike[str], judge_model: str, kind: Literal["pair", "single"]) -> Path:
    """`<directory>/<judge>_pair.jsonl` or `<judge>_single.jsonl`, FastChat's names."""
    return Path(directory) / f"{file_safe(judge_model)}_{kind}.jsonl"


def reference_turns(question: Question, reference_answer: Answer | None = None) -> list[str] | None:
    """The reference answer's turns for a question: the question's own `reference` field, else the answer
    of a reference file (`reference_answer/<judge>.jsonl`), else None."""
    if question.reference:
        return list(question.reference)
    if reference_answer is not None:
        return list(reference_answer.turns)
    return None


def by_question(records: Sequence[Answer]) -> dict[QuestionId, Answer]:
    return {r.question_id: r for r in records}


def select_questions(questions: list[Question], per_category: int | None) -> list[Question]:
    """The first `per_category` questions of each category, in file order (all when None)."""
    if per_category is None:
        return list(questions)
    seen: dict[str, int] = defaultdict(int)
    out = []
    for q in questions:
        if seen[q.category] < per_category:
            seen[q.category] += 1
            out.append(q)
    return out


def load_benchmark(benchmark: BenchmarkSpec,
                   per_category: int | None = None) -> tuple[list[Question], dict[Any, Answer]]:
    """Questions (`question.jsonl`) and reference answers (every file under `reference_answer/`, in either layout) of
    a benchmark: a name (`ja_qa80`, `ja-vicuna`, `ja-mt-bench`: fetched and checked first, see
    `jinstruct.formats.benchmarks`) or a folder."""
    folder = benchmark_folder(benchmark)
    questions = select_questions(load_questions(folder / "question.jsonl"), per_category)
    refs: dict[Any, Answer] = {}
    for model, path in answer_files(folder / "reference_answer").items():
        refs.update(by_question(load_answers(path, model_id=model)))
    return questions, refs
