"""Sweeps: named axes, one generation shared by the data sizes, dependency order, Slurm through submitit."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import nbformat
import pytest

from jinstruct.io import read_json
from jinstruct.paths import configs_dir
from jinstruct.run.config import ConfigError
from jinstruct.run.sweep import (SubmititLauncher, SweepRun, execute, expand, in_dependency_order, load_sweep,
                                 plan_reuse)

PARAMS = "config_path = None\nrun_dir = None\noverrides = {}\n"


def notebook(path: Path, code: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]}))
    nb.cells.append(nbformat.v4.new_code_cell(code))
    nbformat.write(nb, path)


@pytest.fixture
def project(tmp_path):
    """A config and one notebook that writes the run's seed: a sweep of it runs in seconds."""
    (tmp_path / "notebooks").mkdir()
    notebook(tmp_path / "notebooks" / "01_write.ipynb",
             "from pathlib import Path\nfrom jinstruct.run.schema import load_config\n"
             "cfg = load_config(config_path, overrides)\n"
             "(Path(run_dir) / 'seed.txt').write_text(str(cfg.seed))")
    (tmp_path / "cfg.yaml").write_text("name: demo\nseed: 3\n")
    return tmp_path


def sweep_file(project: Path, body: str) -> Path:
    path = project / "sweep.yaml"
    path.write_text(f"name: sw\nconfig: {project / 'cfg.yaml'}\nnotebooks: {project / 'notebooks'}\n{body}")
    return path


def test_named_axes_give_each_run_its_coordinates_and_overrides(project):
    spec = load_sweep(sweep_file(project, "set: {answer.per_category: 1}\ngrid:\n"
                                          "  source:\n    si: {generate.recipe: self_instruct}\n"
                                          "    tr: {generate.recipe: translate}\n"
                                          "  size:\n    1000: {generate.self_instruct.target: 1000}\n"
                                          "  seed: [1, 2]\n"))
    runs = expand(spec)
    assert spec.axes() == {"source": ["si", "tr"], "size": ["1000"], "seed": [1, 2]}
    assert [r.coordinates for r in runs] == [{"source": s, "size": "1000", "seed": n} for s in ("si", "tr")
                                             for n in (1, 2)]
    assert runs[2].overrides == {"answer.per_category": 1, "generate.recipe": "translate",
                                 "generate.self_instruct.target": 1000, "seed": 1}
    assert [c.label() for c in spec.comparisons()] == ["source=si vs source=tr"]


@pytest.mark.parametrize("compare, message", [
    ("[{a: {model: x}, b: {source: tr}}]", "compare.0.a.model': not an axis"),
    ("[{a: {source: si}, b: {source: xx}}]", "compare.0.b.source': 'xx' is not a value"),
])
def test_a_comparison_must_name_axes_and_values_of_the_grid(project, compare, message):
    path = sweep_file(project, "grid:\n  source:\n    si: {seed: 1}\n    tr: {seed: 2}\n" f"compare: {compare}\n")
    with pytest.raises(ConfigError, match=message):
        load_sweep(path)


def test_smaller_sizes_take_the_data_of_the_largest_run_of_the_same_generation():
    spec = load_sweep(configs_dir() / "sweeps" / "tiny_paper_grid.yaml")
    runs = {r.name: r for r in plan_reuse(spec, expand(spec))}
    by_cell = {(r.coordinates["source"], r.coordinates["size"]): r for r in runs.values()}
    si_big, tr_big = by_cell[("self_instruct", "20")], by_cell[("translated", "20")]
    assert si_big.from_run is None and tr_big.from_run is None
    assert by_cell[("self_instruct", "10")].from_run == si_big.name
    assert by_cell[("translated", "10")].overrides["generate.from_run"] == tr_big.name
    order = [r.name for r in in_dependency_order(list(runs.values()))]
    assert order[:2] == [si_big.name, tr_big.name]


def test_a_different_generation_setting_or_all_records_decide_the_source(project):
    spec = load_sweep(sweep_file(project, "grid:\n  generate.recipe: [translate]\n"
                                          "  generate.translate.english_limit: [5, null, 20]\n"
                                          "  generate.translate.max_tokens: [100, 200]\n"))
    runs = plan_reuse(spec, expand(spec))
    sources = {r.overrides["generate.translate.max_tokens"]: r.name for r in runs
               if r.overrides["generate.translate.english_limit"] is None}
    for r in runs:
        if r.overrides["generate.translate.english_limit"] is not None:
            assert r.from_run == sources[r.overrides["generate.translate.max_tokens"]]
        else:
            assert r.from_run is None
    spec.reuse_generated = False
    assert all(r.from_run is None for r in expand(spec))


def test_dependency_order_and_cycles():
    a, b, c = SweepRun("a", {}, from_run="c"), SweepRun("b", {}), SweepRun("c", {}, from_run="b")
    assert [r.name for r in in_dependency_order([a, b, c])] == ["b", "c", "a"]
    b.from_run = "a"
    with pytest.raises(ConfigError, match="cycle"):
        in_dependency_order([a, b, c])


def test_a_run_starts_once_its_data_source_generated_and_not_at_all_when_that_failed(project, monkeypatch):
    import jinstruct.run.sweep as sweep_module
    from jinstruct.formats.layout import RunLayout
    from jinstruct.io import write_json

    monkeypatch.setattr(sweep_module, "POLL_S", 0.05)
    spec = load_sweep(sweep_file(project, "grid:\n  seed: [1, 2]\n  generate.self_instruct.target: [10, 20]\n"))
    spans: dict[str, tuple[float, float]] = {}
    lock = threading.Lock()

    def launcher(run: SweepRun, out: Path) -> int:
        start = time.perf_counter()
        fails = run.name == "sw-04"  # the target-20 run of seed 2 fails before generating
        if run.from_run is None and not fails:  # a source: generation ends well, then it trains a while
            time.sleep(0.2)
            layout = RunLayout(out.parent)
            write_json(layout.manifest, {"stages": {"02_generation": {
                "status": "ok", "outputs": {layout.relative(layout.generated): {"sha256": "x", "size": 1}}}}})
        time.sleep(1.0)
        with lock:
            spans[run.name] = (start, time.perf_counter())
        return 1 if fails else 0

    runs = {r.name: r for r in execute(spec, jobs=3, runs_dir=project / "runs", launcher=launcher,
                                       log=lambda m: None)}
    assert runs["sw-01"].from_run == "sw-02" and runs["sw-03"].from_run == "sw-04"
    source, taker = spans["sw-02"], spans["sw-01"]
    assert source[0] + 0.2 <= taker[0] < source[1]  # after the source's generation, while it trains
    assert "sw-03" not in spans and runs["sw-03"].status == "failed" and "sw-04 failed" in runs["sw-03"].message
    record = read_json(project / "runs" / "sw" / "sweep.json")
    assert [(r["name"], r["status"], r["from_run"]) for r in record["runs"]] == [
        ("sw-01", "ok", "sw-02"), ("sw-02", "ok", None), ("sw-03", "failed", "sw-04"), ("sw-04", "failed", None)]
    assert record["axes"] == {"seed": [1, 2], "generate.self_instruct.target": [10, 20]}


def test_slurm_jobs_through_submitits_local_executor(project):
    spec = load_sweep(sweep_file(project, "grid:\n  seed: [1, 2]\nslurm: {gpus_per_node: 0, timeout_min: 10}\n"))
    sweep = project / "runs" / "sw"
    launcher = SubmititLauncher(spec.slurm, sweep / "slurm", cluster="local")
    runs = execute(spec, jobs=None, runs_dir=project / "runs", executor="slurm", launcher=launcher,
                   log=lambda m: None)
    assert [r.status for r in runs] == ["ok", "ok"]
    assert [(sweep / f"sw-0{i}" / "seed.txt").read_text() for i in (1, 2)] == ["1", "2"]
    record = read_json(sweep / "sweep.json")
    assert record["executor"] == "slurm" and all(r["job_id"] and r["job_id"].isdigit() for r in record["runs"])
    assert "run sw-01: done" in (sweep / "sw-01" / "runner.out").read_text()
    assert (sweep / "summary.csv").exists()


def test_the_slurm_section_reaches_the_job_script(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit only checks that Slurm is installed
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    spec = load_sweep(configs_dir() / "sweeps" / "paper_grid.yaml")
    spec.slurm.setup = ["module load cuda"]
    spec.slurm.additional = {"exclude": "node7"}
    launcher = SubmititLauncher(spec.slurm, tmp_path / "jobs", cluster="slurm")
    script = launcher.executor._executor._make_submission_file_text("python -m x", "uid")  # the sbatch file
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --mem=64GB",
                 "#SBATCH --time=2880", "#SBATCH --cpus-per-task=8", "#SBATCH --exclude=node7", "module load cuda"):
        assert line in script, line


def test_the_sweep_command_prints_the_summary(project, capsys):
    from jinstruct.__main__ import main

    rc = main(["sweep", str(sweep_file(project, "grid:\n  seed: [1, 2]\n")), "--jobs", "2",
               "--runs-dir", str(project / "runs")])
    out = capsys.readouterr().out
    assert rc == 0 and "| sw-01 " in out and "summary:" in out


def test_slurm_where_there_is_none_says_so(project, capsys, monkeypatch):
    from jinstruct.__main__ import main

    monkeypatch.setenv("PATH", "/nonexistent")
    rc = main(["sweep", str(sweep_file(project, "grid:\n  seed: [1, 2]\n")), "--executor", "slurm",
               "--runs-dir", str(project / "runs")])
    assert rc == 1 and "no srun on PATH" in capsys.readouterr().err
