"""The run folder: the one place that says where each file of a run lives.

`runs/<name>/` is the contract between the notebooks: a stage reads what earlier stages wrote there and writes only
there. Every path inside a run folder is defined here and nowhere else; stages, the runner, the LLM client (ledger,
Batch API state) and the tools ask a `RunLayout` for them.

    runs/<name>/
      config.yaml  manifest.json  run.log  run.lock  notebooks/NN_*.ipynb  notebooks/NN_*.errors.json
      ledger/<stage>.json  ledger/<stage>.calls.jsonl  batches/   LLM calls, tokens, cost; Batch API jobs
      superseded/<when>/...                          work redone because its settings changed, kept
      seeds/      machine_translated.jsonl  translation_report.csv  postedit_sheet.csv  post_edited.jsonl
                  ja_seed_tasks.jsonl  effort.json
      data/       generated.jsonl  filtered.jsonl  rejected.jsonl  train.jsonl  dataset_card.md
      models/<name>/adapter/  models/<name>/train_log.jsonl
      answers/<model_id>.jsonl
      judgments/<judge>_pair.jsonl  <judge>_single.jsonl  tables
      tasks/      task-evaluation results
      agreement/  human labels and agreement tables
      figures/    NN_*.pdf / .png
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jinstruct.formats.fastchat import answer_path, judgment_path


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @classmethod
    def of(cls, run_dir: str | os.PathLike[str]) -> RunLayout:
        return cls(Path(run_dir))

    # the runner's records
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def log(self) -> Path:
        return self.root / "run.log"

    @property
    def lock(self) -> Path:
        return self.root / "run.lock"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    def executed_notebook(self, name: str) -> Path:
        return self.notebooks / name

    def ledger(self, stage: str) -> Path:
        return self.root / "ledger" / f"{stage}.json"

    def errors_report(self, stage: str) -> Path:
        """What a stage reports as errors left in its outputs (`Stage.report_errors`), read by the runner."""
        return self.notebooks / f"{stage}.errors.json"

    @property
    def superseded(self) -> Path:
        """Records a stage redid because its settings changed: moved here, never deleted, never an output."""
        return self.root / "superseded"

    @property
    def batches(self) -> Path:
        return self.root / "batches"

    # 01 seeds
    @property
    def seeds(self) -> Path:
        return self.root / "seeds"

    @property
    def machine_translated(self) -> Path:
        return self.seeds / "machine_translated.jsonl"

    @property
    def translation_report(self) -> Path:
        return self.seeds / "translation_report.csv"

    @property
    def postedit_sheet(self) -> Path:
        """The sheet a person edits (exported by stage 01)."""
        return self.seeds / "postedit_sheet.csv"

    @property
    def postedit_sheet_stand_in(self) -> Path:
        """Built from the shipped Japanese seeds when no person's sheet is given."""
        return self.seeds / "postedit_sheet_edited.csv"

    @property
    def post_edited(self) -> Path:
        return self.seeds / "post_edited.jsonl"

    @property
    def japanese_seeds(self) -> Path:
        return self.seeds / "ja_seed_tasks.jsonl"

    @property
    def effort(self) -> Path:
        return self.seeds / "effort.json"

    # 02 / 03 data
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def generated(self) -> Path:
        return self.data / "generated.jsonl"

    @property
    def filtered(self) -> Path:
        return self.data / "filtered.jsonl"

    @property
    def rejected(self) -> Path:
        return self.data / "rejected.jsonl"

    @property
    def train_data(self) -> Path:
        return self.data / "train.jsonl"

    @property
    def dataset_card(self) -> Path:
        return self.data / "dataset_card.md"

    # 04 models
    def model_dir(self, name: str) -> Path:
        return self.root / "models" / name

    def adapter(self, name: str) -> Path:
        return self.model_dir(name) / "adapter"

    # 05 answers, 06 judgments
    @property
    def answers(self) -> Path:
        return self.root / "answers"

    def answer_file(self, model_id: str) -> Path:
        return answer_path(self.answers, model_id)

    @property
    def judgments(self) -> Path:
        return self.root / "judgments"

    def judgment_file(self, judge: str, kind: Literal["pair", "single"]) -> Path:
        return judgment_path(self.judgments, judge, kind)

    # 07 agreement, 08 task evaluation, figures
    @property
    def agreement(self) -> Path:
        return self.root / "agreement"

    @property
    def tasks(self) -> Path:
        return self.root / "tasks"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def figure(self, stem: str) -> Path:
        """A figure's path without suffix (saved as .pdf and .png)."""
        return self.figures / stem

    def relative(self, path: Path) -> str:
        """`path` relative to the run folder, as the manifest records it."""
        return path.relative_to(self.root).as_posix()
