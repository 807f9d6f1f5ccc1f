"""Stage 07 in a few calls: sample the judged games for people, export them, read the labels back, measure agreement.

    items = prepare_items(section, layout, questions, judge)         # agreement/items.jsonl (kept once written)
    export_items(items, layout)                                      # Label Studio tasks + config, CSV sheet
    result = run_agreement(section, layout, questions, judge)        # labels -> human_judgments.json, summary.json

Label sources (`agreement.labels` in the config, plus the notebook labeler's file when it exists) are recognised by
their content: a CSV is a filled sheet; a JSON list of tasks with `annotations` is a Label Studio export; of records
with `winner` a FastChat human judgment file; of records with `choice` a labeler file. Every source is checked
(unknown item or game, bad choice, an annotator labelling the same game twice, within a file or across files) and
mapped back to model names; all of them together are written as `agreement/human_judgments.json` in FastChat's format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from jinstruct.agreement import label_studio, metrics, sheet
from jinstruct.agreement.human_format import (
    HumanJudgment,
    from_labels,
    load_human_judgments,
    write_human_judgments,
)
from jinstruct.agreement.labels import Label, LabelError, check_labels, read_label_file
from jinstruct.agreement.sampling import (
    Item,
    load_items,
    make_items,
    sample_games,
    write_items,
)
from jinstruct.agreement.votes import GameKey, Vote, judge_votes, vote_frame
from jinstruct.formats.fastchat import (
    PairwiseJudgment,
    Question,
    load_answer_dir,
    load_pairwise_judgments,
)
from jinstruct.formats.layout import RunLayout
from jinstruct.io import DataError, read_json, write_json
from jinstruct.paths import project_root, resolve_path


@dataclass
class Agreement:
    """What stage 07 measured: the human votes, the vote frame, the summary and its tables."""

    judge: str
    human: list[HumanJudgment]
    votes: pd.DataFrame
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    error_games: int = 0  # games left out because the judge's verdict was an error
    sources: list[str] = field(default_factory=list)

    def model_pair(self) -> tuple[str, str] | None:
        """The two models (by name) when every vote is on the same pair, else None."""
        pairs = set(zip(self.votes["model_a"], self.votes["model_b"]))
        return next(iter(pairs)) if len(pairs) == 1 else None


def pair_judgment_file(layout: RunLayout, judge: str | None) -> Path:
    """The judge's `judgments/<judge>_pair.jsonl`; without a judge, the run's only pairwise judgment file."""
    if judge is not None:
        path = layout.judgment_file(judge, "pair")
        if not path.exists():
            raise FileNotFoundError(f"no pairwise judgments of {judge!r}: {path} does not exist (run stage 06)")
        return path
    found = sorted(layout.judgments.glob("*_pair.jsonl"))  # FastChat names them <judge>_pair.jsonl
    if len(found) != 1:
        raise FileNotFoundError(f"{layout.judgments}: expected one pairwise judgment file, found "
                                f"{[p.name for p in found]}; set agreement.judge")
    return found[0]


def categories_of(questions: Sequence[Question]) -> dict[str, str]:
    return {str(q.question_id): q.category for q in questions}


def prepare_items(section: Any, layout: RunLayout, questions: Sequence[Question], judge: str | None,
                  seed: int = 0) -> list[Item]:
    """The items people label: `agreement/items.jsonl` when it exists (labels may refer to it), else a new
    stratified sample of the judge's games (`section`: a `schema.AgreementSection`), written there."""
    if layout.agreement_items.exists():
        return load_items(layout.agreement_items)
    judgments = _judgments(layout, judge)
    if section.turn is not None:
        judgments = [j for j in judgments if j.turn == section.turn]
    games = sample_games(judgments, section.sample_size, categories_of(questions), section.strata,
                         section.disagreement_weight, seed)
    answers = {model: {str(k): a for k, a in by_q.items()} for model, by_q in load_answer_dir(layout.answers).items()}
    items = make_items(games, {str(q.question_id): q for q in questions}, answers, seed)
    write_items(layout.agreement_items, items)
    return items


def export_items(items: Sequence[Item], layout: RunLayout) -> dict[str, Path]:
    """The items for Label Studio (tasks and labeling config) and as a CSV sheet."""
    tasks, config = label_studio.write_label_studio(items, layout.label_studio_tasks, layout.label_studio_config)
    return {"label_studio_tasks": tasks, "label_studio_config": config,
            "sheet": sheet.write_sheet(layout.annotation_sheet, items)}


def _judgments(layout: RunLayout, judge: str | None) -> list[PairwiseJudgment]:
    path = pair_judgment_file(layout, judge)
    judgments = load_pairwise_judgments(path)
    if not judgments:
        raise DataError(path, None, None, "no pairwise judgments in the file")
    return judgments


def source_kind(path: Path) -> str:
    """"sheet", "label_studio", "fastchat" or "labeler", from the file's content."""
    if path.suffix.lower() == ".csv":
        return "sheet"
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    if path.suffix.lower() == ".jsonl":
        return "fastchat"
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(path, None, None, "expected a JSON list (Label Studio export, FastChat human judgments or "
                                          "labeler labels)")
    first = next((x for x in data if isinstance(x, dict)), {})
    if "annotations" in first or "data" in first:
        return "label_studio"
    if "choice" in first:
        return "labeler"
    return "fastchat"


def read_source(path: Path, items: Mapping[str, Item], known: set[GameKey], seen: dict[tuple[str, str], Label],
                annotator_prefix: str | None = None) -> list[HumanJudgment]:
    """One label source as FastChat votes, checked (see the module)."""
    kind = source_kind(path)
    if kind == "fastchat":
        return load_human_judgments(path, known, annotator_prefix)
    if kind == "sheet":
        labels = sheet.load_sheet(path, items, seen=seen)
    elif kind == "label_studio":
        labels = label_studio.load_export(path, items, seen)
    else:
        labels = check_labels(read_label_file(path), items, seen)
    return from_labels(labels, items)


def collect_votes(paths: Sequence[Path], items: Sequence[Item], known: set[GameKey],
                  annotator_prefix: str | None = None) -> list[HumanJudgment]:
    """Every source's votes; an annotator voting twice on a game across two sources is a LabelError."""
    by_id = {i.item_id: i for i in items}
    seen: dict[tuple[str, str], Label] = {}
    owner: dict[tuple[str, GameKey], str] = {}
    out = []
    for path in paths:
        for record in read_source(path, by_id, known, seen, annotator_prefix):
            key = (record.annotator, record.vote().canonical()[0])
            if key in owner and owner[key] != str(path):
                raise LabelError(path, None, record.game(), record.annotator,
                                 f"duplicate label: the annotator voted on this game in {owner[key]} too")
            owner[key] = str(path)
            out.append(record)
    return out


def label_sources(section: Any, layout: RunLayout) -> list[Path]:
    """The configured label files (resolved from the project root) and the notebook's labels when there are any."""
    paths = [resolve_path(p) for p in section.labels]
    if layout.notebook_labels.exists():
        paths.append(layout.notebook_labels)
    return paths


def measure(judge_records: Sequence[Vote], human: Sequence[HumanJudgment], categories: Mapping[str, str] | None,
            turn: int | None, rounds: int, seed: int,
            level: float = metrics.LEVEL) -> tuple[pd.DataFrame, dict[str, Any], dict[str, pd.DataFrame]]:
    """The vote frame, the summary and its tables (agreement, per_category, by_turn, confusion)."""
    votes = vote_frame(judge_records, [h.vote() for h in human], categories, turn)
    summary = metrics.summarize(votes, rounds, seed, level)
    jh = metrics.judge_human_pairs(votes)
    tables = {"agreement": metrics.agreement_table(summary), "per_category": metrics.per_category(jh),
              "by_turn": metrics.by_turn(votes), "confusion": metrics.confusion_matrix(jh)}
    return votes, summary, tables


def run_agreement(section: Any, layout: RunLayout, questions: Sequence[Question], judge: str | None,
                  seed: int = 0) -> Agreement:
    """Read every label source, write `human_judgments.json`, measure, write `summary.json` and the tables."""
    judgments = _judgments(layout, judge)
    name = judge or judgments[0].judge[0]
    judge_records, errors = judge_votes(judgments, name)
    known = {Vote(j.question_id, j.turn, j.model_1, j.model_2, "tie", name).canonical()[0] for j in judgments
             if j.judge[0] == name}
    items = load_items(layout.agreement_items) if layout.agreement_items.exists() else []
    sources = label_sources(section, layout)
    human = collect_votes(sources, items, known, section.annotator_prefix)
    write_human_judgments(layout.human_judgments, human)
    votes, summary, tables = measure(judge_records, human, categories_of(questions), section.turn,
                                     section.bootstrap_rounds, seed)
    shown = [_shown(p, layout) for p in sources]
    summary = {**summary, "judge": name, "turn": section.turn, "error_games": errors, "sources": shown}
    write_json(layout.agreement_summary, summary)
    for table_name, table in tables.items():
        table.to_csv(layout.agreement_table(table_name))
    return Agreement(name, human, votes, summary, tables, errors, shown)


def _shown(path: Path, layout: RunLayout) -> str:
    """A source as the summary records it: relative to the run folder or the project when inside one of them."""
    for base in (layout.root, project_root()):
        if path.resolve().is_relative_to(base.resolve()):
            return path.resolve().relative_to(base.resolve()).as_posix()
    return str(path)
