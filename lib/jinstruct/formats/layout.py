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
                  generation_card.md  human_instructions/  (recipe human_instructions: one file per sub-stage)
      models/<name>/adapter/  models/<name>/train_log.jsonl
      answers/<model_id>.jsonl
      judgments/<judge>_pair.jsonl  <judge>_single.jsonl  tables
      tasks/      summary.csv  lm_eval_commands.sh  yaml/<task>.yaml
                  <model_id>/results_<k>shot.json  <model_id>/samples_<task>_<k>shot.jsonl
      agreement/  items.jsonl  label_studio_tasks.json  label_studio_config.xml  annotation_sheet.csv
                  notebook_labels.json  human_judgments.json  summary.json  tables (CSV)
      figures/    NN_*.pdf / .png (and NN_*.csv, the table a figure is drawn from)
      runner.out  what the runner printed, when a sweep started it

A sweep's folder (`SweepLayout`) holds its runs side by side with its record, summary and figures:

    runs/<sweep>/
      sweep.json  summary.csv  summary.md  significance.csv  figures/  slurm/ (submitit's job files)
      <sweep>-01/  <sweep>-02/ ...               one run folder each
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

    # 02, recipe human_instructions: one file per sub-stage, each resumable and runnable on its own
    @property
    def human_instructions(self) -> Path:
        return self.data / "human_instructions"

    @property
    def hi_sources(self) -> Path:
        """The first user turn of every source conversation."""
        return self.human_instructions / "sources.jsonl"

    @property
    def hi_filtered(self) -> Path:
        """Every source row with its flags (empty, duplicate, template, placeholders, language, length)."""
        return self.human_instructions / "filtered.jsonl"

    @property
    def hi_translated(self) -> Path:
        return self.human_instructions / "translated.jsonl"

    @property
    def hi_responses(self) -> Path:
        return self.human_instructions / "responses.jsonl"

    @property
    def hi_scored(self) -> Path:
        return self.human_instructions / "scored.jsonl"

    @property
    def hi_dropped(self) -> Path:
        """Every source row that did not become a record, with the sub-stage and the reason."""
        return self.human_instructions / "dropped.jsonl"

    @property
    def generation_card(self) -> Path:
        """What stage 02 tells the dataset card (a recipe's counts and figures); stage 03 includes it."""
        return self.data / "generation_card.md"

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

    def vllm_log(self, model_id: str) -> Path:
        """The log of the vLLM server that answered for `model_id` (engine: vllm)."""
        return self.answers / f"{model_id}.vllm.log"

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
    def agreement_items(self) -> Path:
        """The games sampled for people to label, each with its left/right order (07)."""
        return self.agreement / "items.jsonl"

    @property
    def label_studio_tasks(self) -> Path:
        return self.agreement / "label_studio_tasks.json"

    @property
    def label_studio_config(self) -> Path:
        return self.agreement / "label_studio_config.xml"

    @property
    def annotation_sheet(self) -> Path:
        return self.agreement / "annotation_sheet.csv"

    @property
    def notebook_labels(self) -> Path:
        """Labels given in notebook 07's labeler (a person's work: appended to, never overwritten)."""
        return self.agreement / "notebook_labels.json"

    @property
    def human_judgments(self) -> Path:
        """Every human label of the run in FastChat's human judgment format."""
        return self.agreement / "human_judgments.json"

    @property
    def agreement_summary(self) -> Path:
        """Judge-human and human-human agreement, kappa, alpha and intervals, for notebook 09."""
        return self.agreement / "summary.json"

    def agreement_table(self, name: str) -> Path:
        return self.agreement / f"{name}.csv"

    @property
    def tasks(self) -> Path:
        return self.root / "tasks"

    @property
    def task_yaml(self) -> Path:
        """The lm-eval task YAMLs stage 08 evaluated, data paths made absolute."""
        return self.tasks / "yaml"

    def task_results(self, model_id: str, num_fewshot: int) -> Path:
        """lm-eval's raw results for one model at one few-shot count."""
        return self.tasks / model_id / f"results_{num_fewshot}shot.json"

    def task_samples(self, model_id: str, task: str, num_fewshot: int) -> Path:
        """lm-eval's logged samples (one line per scored document) of one task in `task_results`."""
        return self.tasks / model_id / f"samples_{task}_{num_fewshot}shot.jsonl"

    def task_cli_output(self, model_id: str) -> Path:
        """Where the `lm_eval` command lines of `tasks_commands` write."""
        return self.tasks / "cli" / model_id

    @property
    def tasks_commands(self) -> Path:
        return self.tasks / "lm_eval_commands.sh"

    @property
    def tasks_summary(self) -> Path:
        """One row per task, model, metric and few-shot count (other notebooks read it)."""
        return self.tasks / "summary.csv"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def figure(self, stem: str) -> Path:
        """A figure's path without suffix (saved as .pdf and .png)."""
        return self.figures / stem

    # ---- cross-run reporting (notebook 09, sweeps) ----
    def figure_table(self, stem: str) -> Path:
        """The table a figure is drawn from, beside it as CSV."""
        return self.figures / f"{stem}.csv"

    def judgment_files(self, kind: Literal["pair", "single"]) -> list[Path]:
        """Every judge's `<judge>_pair.jsonl` (or `_single.jsonl`) in the run, sorted."""
        return sorted(self.judgments.glob(f"*_{kind}.jsonl")) if self.judgments.is_dir() else []

    def training_card(self, name: str) -> Path:
        return self.adapter(name) / "training_card.json"

    @property
    def runner_output(self) -> Path:
        """What `python -m jinstruct run` printed when a sweep started it."""
        return self.root / "runner.out"

    def relative(self, path: Path) -> str:
        """`path` relative to the run folder, as the manifest records it."""
        return path.relative_to(self.root).as_posix()


@dataclass(frozen=True)
class SweepLayout:
    """A sweep's folder: its record, its summary tables, its figures and one run folder per grid point."""

    root: Path

    @classmethod
    def of(cls, sweep_dir: str | os.PathLike[str]) -> SweepLayout:
        return cls(Path(sweep_dir))

    @property
    def record(self) -> Path:
        """`sweep.json`: the grid, each run's coordinates, overrides, data source, status, time and job id."""
        return self.root / "sweep.json"

    @property
    def summary_csv(self) -> Path:
        return self.root / "summary.csv"

    @property
    def summary_md(self) -> Path:
        return self.root / "summary.md"

    @property
    def significance_csv(self) -> Path:
        return self.root / "significance.csv"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def jobs(self) -> Path:
        """Where submitit keeps each job's script, pickles and logs (`--executor slurm`)."""
        return self.root / "slurm"

    def run(self, name: str) -> RunLayout:
        return RunLayout(self.root / name)
