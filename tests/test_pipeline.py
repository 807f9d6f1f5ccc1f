"""The whole pipeline on the tiny config, through the runner, as the README's first command runs it."""

import pytest

from jinstruct.io import read_json, read_jsonl
from jinstruct.paths import CONFIGS_DIR
from jinstruct.runner import Runner, discover

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    overrides = [f"llm.cache={runs / 'llm_cache.sqlite'}"]
    outcomes = Runner(CONFIGS_DIR / "tiny.yaml", overrides, runs_dir=runs, log=lambda m: None).run()
    return runs / "tiny", outcomes, overrides, runs


def test_every_notebook_runs(tiny_run):
    run_dir, outcomes, _, _ = tiny_run
    assert [o.stage for o in outcomes] == [p.stem for p in discover()]
    assert all(o.status == "ok" for o in outcomes)
    manifest = read_json(run_dir / "manifest.json")
    for stage in manifest["stages"].values():
        assert stage["status"] == "ok" and stage["outputs"], stage
        assert all(len(f["sha256"]) == 64 for f in stage["outputs"].values())
    for p in discover():
        assert (run_dir / "notebooks" / p.name).exists()


def test_stage_outputs(tiny_run):
    run_dir = tiny_run[0]
    stages = {p.stem for p in discover()}
    if "01_seed_editing" in stages:
        assert len(read_jsonl(run_dir / "seeds" / "ja_seed_tasks.jsonl")) == 175
        assert (run_dir / "seeds" / "postedit_sheet.csv").exists()
        assert read_json(run_dir / "seeds" / "effort.json")["tasks"] >= 1
    if "04_qlora_training" in stages:
        card = read_json(run_dir / "models" / "tiny-sft" / "adapter" / "training_card.json")
        assert card["steps"] == 8 and card["final_train_loss"] > 0
    if "05_answering" in stages:
        for model in ("tiny-sft", "tiny-base"):
            answers = read_jsonl(run_dir / "answers" / f"{model}.jsonl")
            assert len(answers) == 16 and all(a["model_id"] == model for a in answers)
    if "06_judging" in stages:
        pair = read_jsonl(run_dir / "judgments" / "tiny-judge_pair.jsonl")
        assert len(pair) == 16 and {(p["model_1"], p["model_2"]) for p in pair} == {("tiny-sft", "tiny-base")}
        assert len(read_jsonl(run_dir / "judgments" / "tiny-judge_single.jsonl")) == 32
        ledger = read_json(run_dir / "manifest.json")["stages"]["06_judging"]["llm"]
        assert ledger["requests"] == 64 and ledger["failed"] == 0 and ledger["prompt_tokens"] > 0


def test_rerun_skips_every_stage(tiny_run):
    _, _, overrides, runs = tiny_run
    again = Runner(CONFIGS_DIR / "tiny.yaml", overrides, runs_dir=runs, log=lambda m: None).run()
    assert {o.status for o in again} == {"skipped"}


def test_estimate_after_the_run_finds_everything_cached(tiny_run):
    from jinstruct.estimate import estimate_run
    from jinstruct.runner import overrides_dict
    from jinstruct.stage import Stage

    run_dir, _, overrides, _ = tiny_run
    st = Stage.open("estimate", CONFIGS_DIR / "tiny.yaml", run_dir, overrides_dict(overrides))
    rows = {r.stage: r.estimate for r in estimate_run(st)}
    assert rows["06_judging"].requests == 64 and rows["06_judging"].to_send == 0
    assert rows["01_seed_editing"].to_send == 0
