"""One run's results, read from its folder through the run-folder layout (nothing is recomputed but statistics).

`load_run` gathers what the summary and the figures need: the resolved config and the manifest, the pairwise games
and single scores of the run's judge (FastChat files, with the benchmark's categories), answer lengths, data
counts, each tuned model's training card, and notebook 07's and 08's summaries when those stages ran. A stage that
did not run leaves its part empty (None), never an error; a file that exists but is malformed is an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from jinstruct.formats.fastchat import load_answer_dir, load_pairwise_judgments, load_questions, load_single_judgments
from jinstruct.formats.layout import RunLayout
from jinstruct.io import DataError, iter_jsonl, read_json
from jinstruct.judge.metrics import categories_of, pairwise_frame, single_frame
from jinstruct.paths import resolve_path
from jinstruct.report.sources import RunRef

TASK_COLUMNS = ["task", "model", "metric", "value", "stderr", "n", "num_fewshot"]


@dataclass
class RunData:
    ref: RunRef
    manifest: dict[str, Any]
    config: dict[str, Any]  # the resolved config the run recorded
    judge: str | None = None
    games: pd.DataFrame | None = None  # `judge.metrics.pairwise_frame`, with categories
    scores: pd.DataFrame | None = None  # `judge.metrics.single_frame`, with categories
    answer_chars: pd.DataFrame | None = None  # model, question_id, turn, chars
    tasks: pd.DataFrame | None = None  # notebook 08's summary.csv
    agreement: dict[str, Any] | None = None  # notebook 07's summary.json

    @property
    def layout(self) -> RunLayout:
        return self.ref.layout

    @property
    def baseline(self) -> str | None:
        return (self.config.get("judge") or {}).get("baseline")

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def bootstrap_rounds(self) -> int:
        return int((self.config.get("judge") or {}).get("bootstrap_rounds", 1000))

    def compared_models(self) -> list[str]:
        """The models the run judges against its baseline (every judged model without a baseline), else the
        models it trains."""
        if self.games is not None and not self.games.empty:
            models = sorted(set(self.games["model_1"]) | set(self.games["model_2"]))
            return [m for m in models if m != self.baseline]
        answer_models = [m.get("model_id") for m in (self.config.get("answer") or {}).get("models", [])]
        return [m for m in answer_models if m and m != self.baseline]

    def trained_name(self, model_id: str) -> str | None:
        """The `train.models` entry a model answered with (None for a base model or an endpoint)."""
        for m in (self.config.get("answer") or {}).get("models", []):
            if m.get("model_id") == model_id:
                return m.get("trained")
        return None

    def all_pairs(self) -> bool:
        """Judged every pair of three or more models (what Bradley-Terry ratings need to mean more than a win rate)."""
        if self.games is None or self.games.empty:
            return False
        models = set(self.games["model_1"]) | set(self.games["model_2"])
        pairs = {frozenset(p) for p in zip(self.games["model_1"], self.games["model_2"])}
        return len(models) >= 3 and len(pairs) == len(models) * (len(models) - 1) // 2


def count_records(path: Path) -> int | None:
    """JSON Lines records in a file (None when it does not exist)."""
    if not path.exists():
        return None
    return sum(1 for _ in iter_jsonl(path, tolerate_torn_tail=True))


def _categories(config: dict[str, Any], run_path: Path) -> dict[str, str] | None:
    bench = (config.get("answer") or {}).get("benchmark")
    if not bench:
        return None
    questions = resolve_path(bench) / "question.jsonl"
    return categories_of(load_questions(questions)) if questions.exists() else None


def _judge_name(layout: RunLayout, config: dict[str, Any]) -> str | None:
    """The configured judge's name when its files are there, else the run's only judge; None without judgments."""
    named = (config.get("judge") or {}).get("name")
    files = layout.judgment_files("pair") + layout.judgment_files("single")
    judges = sorted({p.name.rsplit("_", 1)[0] for p in files})
    if named and (layout.judgment_file(named, "pair").exists() or layout.judgment_file(named, "single").exists()):
        return named
    if len(judges) > 1:
        raise DataError(layout.judgments, None, None, f"judgments of several judges {judges} and none is the "
                                                      "configured judge.name")
    return judges[0] if judges else None


def _answer_chars(layout: RunLayout) -> pd.DataFrame | None:
    if not layout.answers.is_dir() or not any(layout.answers.glob("*.jsonl")):
        return None
    rows = [{"model": model, "question_id": str(qid), "turn": t, "chars": len(text)}
            for model, answers in load_answer_dir(layout.answers).items()
            for qid, a in answers.items() for t, text in enumerate(a.turns, start=1)]
    return pd.DataFrame(rows, columns=["model", "question_id", "turn", "chars"])


def load_tasks(path: Path) -> pd.DataFrame | None:
    """Notebook 08's `tasks/summary.csv` (task, model, metric, value, stderr, n, num_fewshot)."""
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    missing = [c for c in TASK_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(path, 1, missing[0], f"missing column(s) {missing}; expected {TASK_COLUMNS}")
    bad = pd.to_numeric(frame["value"], errors="coerce").isna() & frame["value"].notna()
    if bad.any():
        raise DataError(path, int(bad.idxmax()) + 2, "value", f"not a number: {frame.loc[bad.idxmax(), 'value']!r}")
    return frame[TASK_COLUMNS]


def load_agreement(path: Path) -> dict[str, Any] | None:
    """Notebook 07's `agreement/summary.json` (judge_human, human_human, alpha, n_questions, per_category)."""
    if not path.exists():
        return None
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("judge_human"), dict):
        raise DataError(path, None, "judge_human", "expected an object with a 'judge_human' object")
    return data


def load_run(ref: RunRef) -> RunData:
    layout = ref.layout
    if not layout.manifest.exists():
        raise DataError(layout.manifest, None, None, f"run {ref.name} has no manifest (did it start?)")
    manifest = read_json(layout.manifest)
    data = RunData(ref=ref, manifest=manifest, config=manifest.get("config") or {})
    data.judge = _judge_name(layout, data.config)
    cats = _categories(data.config, ref.path) if data.judge else None
    if data.judge:
        pair, single = layout.judgment_file(data.judge, "pair"), layout.judgment_file(data.judge, "single")
        if pair.exists():
            data.games = pairwise_frame(load_pairwise_judgments(pair, tolerate_torn_tail=True), cats)
        if single.exists():
            data.scores = single_frame(load_single_judgments(single, tolerate_torn_tail=True), cats)
    data.answer_chars = _answer_chars(layout)
    data.tasks = load_tasks(layout.tasks_summary)
    data.agreement = load_agreement(layout.agreement_summary)
    return data
