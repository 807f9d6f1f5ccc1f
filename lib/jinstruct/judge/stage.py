"""Stage 06 in a few calls: judge the run's answers (pairwise in both orders, and 1-10), then tabulate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from jinstruct.formats.benchmarks import judge_prompts_file
from jinstruct.formats.fastchat import (Answer, JudgePrompt, Question, judgment_path, load_answer_dir,
                                        load_pairwise_judgments, load_single_judgments)
from jinstruct.judge.engine import JudgeReport, judge_pairwise, judge_single
from jinstruct.judge.grader import GraderSettings, judge_request
from jinstruct.judge.prompts import PairTask, SingleTask, load_prompts, pairwise_tasks, single_tasks
from jinstruct.llm import ChatRequest
from jinstruct.judge.metrics import (categories_of, judge_diagnostics, mean_scores, pairwise_by_category, pairwise_frame,
                               pairwise_summary, single_frame)


@dataclass
class Judging:
    judge: str
    pairwise: JudgeReport | None = None
    single: JudgeReport | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        """Judgments of this run recorded as errors in the files now (`judge.retry_errors` judges them again)."""
        return sum(r.errors_left for r in (self.pairwise, self.single) if r is not None)


def judge_prompts(section: Any) -> dict[str, JudgePrompt]:
    """The judge prompts `section.prompts` names: a file, a benchmark's own prompts, or (None) the project's."""
    return load_prompts(judge_prompts_file(section.prompts) if section.prompts else None)


def plan_judging(section: Any, questions: list[Question], references: dict[Any, Answer],
                 answers_dir: Path | Mapping[str, Mapping[Any, Answer]]) -> tuple[list[PairTask], list[SingleTask]]:
    """The pairwise games and single gradings `section` (a `settings.JudgeSection`) asks for, over every model
    with answers in `answers_dir` (or in a {model: {question_id: answer}} mapping)."""
    answers = load_answer_dir(answers_dir) if isinstance(answers_dir, Path) else dict(answers_dir)
    models = sorted(answers)
    if section.baseline is not None and section.baseline not in answers:
        raise KeyError(f"judge.baseline {section.baseline!r} has no answers in {answers_dir} (have: {models})")
    prompts = judge_prompts(section)
    pairs = (pairwise_tasks(questions, answers, models, prompts, baseline=section.baseline,
                            reference_answers=references) if section.pairwise else [])
    singles = single_tasks(questions, answers, models, prompts, reference_answers=references) if section.single else []
    return pairs, singles


def judging_requests(section: Any, pairs: list[PairTask], singles: list[SingleTask], seed: int = 0) -> list[ChatRequest]:
    """The first attempt of every judgment (both orders of each game), for a cost estimate."""
    settings = GraderSettings(mode=section.mode, max_tokens=section.max_tokens, seed=seed,
                              max_reasoning_chars=section.max_reasoning_chars)

    def request(judge_input: Any, kind: Any) -> ChatRequest:
        return judge_request(judge_input, kind, settings)

    return ([request(g, "pairwise") for t in pairs for g in (t.g1, t.g2)]
            + [request(t.input, "single") for t in singles])


def run_judging(section: Any, client: Any, questions: list[Question], references: dict[Any, Answer],
                answers_dir: Path, out_dir: Path, seed: int = 0, superseded_dir: Path | None = None) -> Judging:
    """Judge every model with answers in `answers_dir` as `section` (a `settings.JudgeSection`) says, into
    `<out_dir>/<judge>_pair.jsonl` and `<judge>_single.jsonl` (resuming what was judged under the same settings;
    the lines replaced go to `superseded_dir`), and compute the result tables."""
    pairs, singles = plan_judging(section, questions, references, answers_dir)
    judge = section.name or client.settings.model_name()
    common = dict(mode=section.mode, max_tokens=section.max_tokens, max_attempts=section.max_attempts,
                  max_reasoning_chars=section.max_reasoning_chars, judge_name=judge, seed=seed,
                  rule=section.verdict_rule, retry_errors=getattr(section, "retry_errors", False),
                  superseded_dir=superseded_dir)
    result = Judging(judge)
    cats = categories_of(questions)
    rounds = section.bootstrap_rounds
    if section.pairwise:
        result.pairwise = judge_pairwise(client, pairs, out_dir, **common)
        games = pairwise_frame(load_pairwise_judgments(judgment_path(out_dir, judge, "pair")), cats)
        result.tables["pairwise"] = pairwise_summary(games, section.baseline, rounds, seed)
        result.tables["pairwise_by_category"] = pairwise_by_category(games, section.baseline, rounds, seed)
        result.tables["diagnostics"] = judge_diagnostics(games)
    if section.single:
        result.single = judge_single(client, singles, out_dir, **common)
        scores = single_frame(load_single_judgments(judgment_path(out_dir, judge, "single")), cats)
        result.tables["single"] = mean_scores(scores, ("model",), rounds, seed)
        result.tables["single_by_category"] = mean_scores(scores, ("model", "category"), rounds, seed)
    return result


def save_tables(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Each table as CSV (for spreadsheets) next to the judgments."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, table in tables.items():
        path = out_dir / f"{name}.csv"
        table.to_csv(path)
        paths.append(path)
    return paths
