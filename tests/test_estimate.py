"""`python -m jinstruct estimate`: what a run's LLM stages would send and cost, calling nothing."""

from jinstruct.run.estimate import estimate_run, table
from jinstruct.paths import configs_dir
from jinstruct.run.stage import Stage


def test_estimates_the_tiny_run_without_calling(tmp_path):
    overrides = {"llm.cache": str(tmp_path / "cache.sqlite")}
    st = Stage.open("estimate", configs_dir() / "tiny.yaml", tmp_path / "run", overrides)
    rows = {r.stage: r for r in estimate_run(st)}
    seeds, gen, judge = rows["01_seed_editing"], rows["02_generation"], rows["06_judging"]
    assert seeds.estimate.requests == 3 and seeds.estimate.to_send == 3 and seeds.estimate.cached == 0
    # 40 instructions at an assumed keep rate of 1/2 and 4 tasks a reply: 20 requests
    assert gen.estimate.requests == 20 and gen.estimate.prompt_tokens > 0
    assert judge.estimate is None and "run stages up to 05" in judge.what
    assert not (tmp_path / "run" / "ledger").exists()  # nothing was sent, so nothing was booked
    text = table(list(rows.values()))
    row = next(line for line in text.splitlines() if line.startswith("| 02_generation"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:6] == ["02_generation", "local", "self-instruct to 40 instructions", "20", "0", "20"]
    assert f"{gen.estimate.prompt_tokens:,}" in cells
