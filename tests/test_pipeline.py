"""The whole pipeline on the tiny config, through the runner, as the README's first command runs it."""

import pandas as pd
import pytest

from jinstruct.formats.layout import RunLayout
from jinstruct.io import read_json, read_jsonl
from jinstruct.paths import configs_dir
from jinstruct.run.estimate import estimate_run
from jinstruct.run.runner import Runner, discover, overrides_dict
from jinstruct.run.stage import Stage

pytestmark = pytest.mark.slow

# the pipeline's notebooks, in order: a renamed or missing one fails here instead of being skipped
STAGES = ["01_seed_editing", "02_generation", "03_filtering", "04_qlora_training", "05_answering", "06_judging",
          "07_human_agreement", "08_task_eval", "09_figures"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    overrides = [f"llm.cache={runs / 'llm_cache.sqlite'}"]
    outcomes = Runner(configs_dir() / "tiny.yaml", overrides, runs_dir=runs, log=lambda m: None).run()
    return runs / "tiny", outcomes, overrides, runs


def test_every_notebook_runs(tiny_run):
    run_dir, outcomes, _, _ = tiny_run
    assert [p.stem for p in discover()] == STAGES
    assert [o.stage for o in outcomes] == STAGES
    assert all(o.status == "ok" for o in outcomes)
    manifest = read_json(run_dir / "manifest.json")
    for stage in manifest["stages"].values():
        assert stage["status"] == "ok" and stage["outputs"], stage
        assert all(len(f["sha256"]) == 64 for f in stage["outputs"].values())
    for p in discover():
        assert (run_dir / "notebooks" / p.name).exists()


def test_stage_outputs(tiny_run):
    run = RunLayout(tiny_run[0])
    assert len(read_jsonl(run.japanese_seeds)) == 175
    assert run.postedit_sheet.exists()
    effort = read_json(run.effort)  # the shipped original seeds stand in: not post-edits, so no edit distance
    assert effort["comparable"] is False and effort["machine_tasks"] == 3 and "chars_changed" not in effort
    generated, filtered, train = (read_jsonl(p) for p in (run.generated, run.filtered, run.train_data))
    assert len(generated) == 40 and 0 < len(filtered) <= 40 and len(train) == len(filtered)
    assert all(r["messages"][0]["role"] == "user" and r["messages"][1]["role"] == "assistant" for r in train)
    card = read_json(run.adapter("tiny-sft") / "training_card.json")
    assert card["steps"] == 8 and card["final_train_loss"] > 0
    for model in ("tiny-sft", "tiny-base"):
        answers = read_jsonl(run.answer_file(model))
        assert len(answers) == 16 and all(a["model_id"] == model for a in answers)
    pair = read_jsonl(run.judgment_file("tiny-judge", "pair"))
    assert len(pair) == 16 and {(p["model_1"], p["model_2"]) for p in pair} == {("tiny-sft", "tiny-base")}
    assert len(read_jsonl(run.judgment_file("tiny-judge", "single"))) == 32
    ledger = read_json(run.manifest)["stages"]["06_judging"]["llm"]
    assert ledger["requests"] == 64 and ledger["failed"] == 0 and ledger["prompt_tokens"] > 0
    summary = pd.read_csv(run.tasks_summary)
    assert list(summary.columns) == ["task", "model", "metric", "value", "stderr", "n", "num_fewshot"]
    assert len(summary) == 2 * 7 and set(summary["model"]) == {"tiny-base", "tiny-sft"}  # acc x3, acc_norm, ppl x3
    acc = summary[summary["metric"] == "acc"]
    assert set(acc["num_fewshot"]) == {2} and acc["value"].between(0, 1).all() and (acc["stderr"] > 0).all()
    for model in ("tiny-base", "tiny-sft"):
        assert read_json(run.task_results(model, 2))["n-shot"]["jinstruct_nli"] == 2
    assert len(run.tasks_commands.read_text().splitlines()) == 2 + 2  # a header, then one line per model


def test_human_agreement_outputs(tiny_run):
    run = RunLayout(tiny_run[0])
    assert len(read_jsonl(run.agreement_items)) == 12 and run.label_studio_tasks.exists() and run.annotation_sheet.exists()
    summary = read_json(run.agreement_summary)  # the shipped demonstration labels: 3 votes on each of the 16 games
    assert summary["judge"] == "tiny-judge" and summary["n_human_votes"] == 48 and summary["n_questions"] == 16
    assert summary["judge_human"]["n"]["with_ties"] == 48 and summary["sources"] == ["data/agreement/demo_labels.json"]
    assert (run.figures / "07_confusion.png").exists()


def test_rerun_skips_every_stage(tiny_run):
    _, _, overrides, runs = tiny_run
    again = Runner(configs_dir() / "tiny.yaml", overrides, runs_dir=runs, log=lambda m: None).run()
    assert {o.status for o in again} == {"skipped"}


def test_estimate_after_the_run_finds_everything_cached(tiny_run):
    run_dir, _, overrides, _ = tiny_run
    st = Stage.open("estimate", configs_dir() / "tiny.yaml", run_dir, overrides_dict(overrides))
    rows = {r.stage: r.estimate for r in estimate_run(st)}
    assert rows["06_judging"].requests == 64 and rows["06_judging"].to_send == 0
    assert rows["01_seed_editing"].to_send == 0
