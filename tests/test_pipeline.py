"""The whole pipeline on the tiny config, through the runner, as the README's first command runs it."""

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
          "09_figures"]


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
    assert read_json(run.effort)["tasks"] >= 1
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
