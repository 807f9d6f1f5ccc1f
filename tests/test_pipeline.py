"""The whole pipeline on the tiny config, through the runner, as the README's first command runs it."""

import re

import nbformat
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
    outcomes = Runner(configs_dir() / "tiny.yaml", overrides, runs_dir=runs, log=LOG.append).run()
    return runs / "tiny", outcomes, overrides, runs


LOG: list[str] = []  # what the runner printed during the tiny run


def outputs(run_dir, stage: str) -> list:
    nb = nbformat.read(run_dir / "notebooks" / f"{stage}.ipynb", as_version=4)
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


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
    # the 64 judgments, and the worked example's game first (2 requests the run then finds in the cache)
    assert ledger["requests"] == 66 and ledger["cached"] >= 2 and ledger["failed"] == 0 and ledger["prompt_tokens"] > 0
    summary = pd.read_csv(run.tasks_summary)
    assert list(summary.columns) == ["task", "model", "metric", "value", "stderr", "n", "num_fewshot"]
    assert len(summary) == 2 * 7 and set(summary["model"]) == {"tiny", "tiny-sft"}  # acc x3, acc_norm, ppl x3
    acc = summary[summary["metric"] == "acc"]
    assert set(acc["num_fewshot"]) == {2} and acc["value"].between(0, 1).all() and (acc["stderr"] > 0).all()
    for model in ("tiny", "tiny-sft"):  # the base model by its config name, and the tuned one
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


def test_every_saved_figure_is_shown_once(tiny_run):
    run_dir = tiny_run[0]
    for stage in STAGES:
        saved = sorted(p.stem for p in (run_dir / "figures").glob(f"{stage[:2]}_*.png"))
        assert sorted(p.stem for p in (run_dir / "figures").glob(f"{stage[:2]}_*.pdf")) == saved
        images = [o for o in outputs(run_dir, stage) if "image/png" in o.get("data", {})]
        assert len(images) == len(saved), (stage, saved)
        assert not any("<Figure size" in o.get("data", {}).get("text/plain", "") for o in outputs(run_dir, stage))
    assert len([p for p in (run_dir / "figures").glob("0[1-6]_*.png")]) == 9  # 01-06's figures; 07-09 counted above


def test_the_records_hold_no_warning_and_no_frozen_bar(tiny_run):
    run_dir = tiny_run[0]
    for stage in STAGES:
        outs = outputs(run_dir, stage)
        warned = [o.text for o in outs if o.output_type == "stream" and o.name == "stderr" and "warn" in o.text.lower()]
        assert not warned, (stage, warned)
        assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outs), stage
        bars = [o.data["text/plain"] for o in outs if o.output_type == "display_data" and "%|" in o.data.get("text/plain", "")]
        assert all("100%|" in b for b in bars), (stage, bars)
    # every stage that sends or trains shows its bar, finished
    for stage, bar in [("01_seed_editing", "translating seed tasks: 100%"), ("02_generation", "self_instruct: 100%"),
                       ("03_filtering", "filtering: 100%"), ("04_qlora_training", "training tiny-sft: 100%"),
                       ("05_answering", "tiny-base turn 1: 100%"), ("06_judging", "judge tiny-judge single: 100%")]:
        assert any(o.output_type == "display_data" and o.data.get("text/plain", "").startswith(bar)
                   for o in outputs(run_dir, stage)), (stage, bar)
        assert any(line.startswith(f"[{stage}] {bar}") for line in LOG), (stage, bar)


def test_each_notebook_shows_its_worked_example_and_prints_once(tiny_run):
    run_dir = tiny_run[0]
    titles = {"01_seed_editing": r"Seed seed_task_0: \d+ fields", "02_generation": r"Request 0: 3 demonstrations in",
              "03_filtering": r"The filters on the first 40 candidates", "04_qlora_training": r"Training example 0",
              "05_answering": r"Question 1 \(writing", "06_judging": r"Question 1 \(writing\): tiny-sft vs tiny-base"}
    for stage, title in titles.items():
        shown = [o.data["text/html"] for o in outputs(run_dir, stage) if "jx-example" in o.get("data", {}).get("text/html", "")]
        assert len(shown) == 1 and re.search(title, shown[0]), stage
    printed = "".join(o.text for o in outputs(run_dir, "06_judging") if o.output_type == "stream")
    assert printed.count("tiny-judge (pairwise): 16 games") == 1 and printed.count("tiny-judge (single)") == 1
    stats = next(o.data["text/plain"] for o in outputs(run_dir, "02_generation")
                 if o.output_type == "execute_result" and "kept (output)" in o.data.get("text/plain", ""))
    assert re.search(r"kept \(output\)\s+40\n", stats), stats  # integers as integers, not 40.000
