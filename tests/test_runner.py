"""The papermill runner on small test notebooks: order, parameters, manifest, resume, --force, failures, secrets."""

from pathlib import Path

import nbformat
import pytest

from jinstruct.io import read_json, sha256_file
from jinstruct.run.runner import Runner, StageFailed, select

PARAMS = 'config_path = None\nrun_dir = None\noverrides = {}\n'


def notebook(path: Path, *cells: str, description: str = "# test stage") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_markdown_cell(description))
    nb.cells.append(nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]}))
    nb.cells.extend(nbformat.v4.new_code_cell(c) for c in cells)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def project(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    notebook(nbs / "01_write.ipynb",
             "from pathlib import Path\nfrom jinstruct.run.schema import load_config\n"
             "cfg = load_config(config_path, overrides)\n"
             "out = Path(run_dir) / 'data' / 'a.txt'\nout.parent.mkdir(parents=True, exist_ok=True)\n"
             "out.write_text(f'seed={cfg.seed}')")
    notebook(nbs / "02_read.ipynb",
             "from pathlib import Path\n"
             "a = (Path(run_dir) / 'data' / 'a.txt').read_text()\n"
             "(Path(run_dir) / 'data' / 'b.txt').write_text(a + ' read')")
    (nbs / "README.ipynb").write_text("not a stage")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("name: demo\nseed: 3\n")
    return tmp_path


def runner(project: Path, **kw) -> Runner:
    kw.setdefault("log", lambda m: None)
    return Runner(project / "cfg.yaml", notebooks_dir=project / "notebooks", runs_dir=project / "runs", **kw)


def test_runs_in_order_with_parameters_and_manifest(project):
    outcomes = runner(project, overrides=["seed=9"]).run()
    assert [(o.stage, o.status) for o in outcomes] == [("01_write", "ok"), ("02_read", "ok")]
    run_dir = project / "runs" / "demo"
    assert (run_dir / "data" / "b.txt").read_text() == "seed=9 read"
    m = read_json(run_dir / "manifest.json")
    assert m["config"]["seed"] == 9 and m["overrides"] == {"seed": 9}
    assert list(m["stages"]) == ["01_write", "02_read"]
    s1, s2 = m["stages"]["01_write"], m["stages"]["02_read"]
    assert s1["status"] == s2["status"] == "ok" and s1["start"] <= s2["start"] and s1["seconds"] > 0
    assert s1["outputs"] == {"data/a.txt": {"sha256": sha256_file(run_dir / "data/a.txt"), "size": 6}}
    assert list(s2["outputs"]) == ["data/b.txt"]
    assert m["environment"]["python"].startswith("3.") and m["environment"]["packages"]["papermill"]
    assert "commit" in m["environment"]["git"] and "dirty" in m["environment"]["git"]
    executed = nbformat.read(run_dir / "notebooks" / "01_write.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    # the notebook gets the config the runner resolved and recorded (overrides applied once), not the overrides
    assert injected and f'config_path = "{run_dir / "config.yaml"}"' in injected[0].source
    assert "overrides = {}" in injected[0].source and str(run_dir) in injected[0].source
    assert (run_dir / "config.yaml").read_text().startswith("name: demo")


def test_resume_skips_unchanged_and_force_reruns(project):
    runner(project).run()
    again = runner(project).run()
    assert [o.status for o in again] == ["skipped", "skipped"]
    # a changed config re-runs the first stage; the second re-runs because its input changed
    changed = runner(project, overrides=["seed=4"]).run()
    assert [o.status for o in changed] == ["ok", "ok"]
    forced = runner(project, overrides=["seed=4"], force=True).run("02")
    assert [(o.stage, o.status) for o in forced] == [("02_read", "ok")]
    # a deleted output makes its stage run again
    (project / "runs" / "demo" / "data" / "b.txt").unlink()
    assert [o.status for o in runner(project, overrides=["seed=4"]).run()] == ["skipped", "ok"]


def test_failure_names_notebook_cell_and_line_once_and_stops(project):
    notebook(project / "notebooks" / "01_write.ipynb", "x = 1",
             "def check(n):\n    raise ValueError('bad seed file')\n\ny = 2\ncheck(y)")
    lines = []
    with pytest.raises(StageFailed) as e:
        runner(project, log=lines.append).run()
    msg = str(e.value)
    # the cell (index 4 counts the injected parameters cell), the statement that raised, the error once
    assert msg.splitlines()[0] == "stage 01_write failed in cell 4 (In [4]), line 5: check(y)"
    assert msg.count("ValueError: bad seed file") == 1
    assert msg.splitlines()[-1] == f"  executed notebook: {project / 'runs' / 'demo' / 'notebooks' / '01_write.ipynb'}"
    assert not any("bad seed file" in line for line in lines), "the runner leaves printing the error to its caller"
    assert "ValueError: bad seed file" in (project / "runs" / "demo" / "run.log").read_text()
    m = read_json(project / "runs" / "demo" / "manifest.json")
    assert m["stages"]["01_write"]["status"] == "failed" and "02_read" not in m["stages"]
    assert (project / "runs" / "demo" / "notebooks" / "01_write.ipynb").exists()


def test_a_missing_input_names_the_stage_that_writes_it(project):
    notebook(project / "notebooks" / "01_write.ipynb", "pass",
             description="# 01\n\n**Reads**: nothing.\n**Writes**: `data/a.txt`, `models/<name>/adapter/`.")
    with pytest.raises(StageFailed) as e:
        runner(project).run("02")
    msg = str(e.value)
    assert "FileNotFoundError" in msg and "line 2: a = (Path(run_dir) / 'data' / 'a.txt').read_text()" in msg
    assert "data/a.txt is missing: stage 01_write writes it; run that stage first (--stages 01)" in msg


def test_declared_outputs_and_their_writers():
    from jinstruct.paths import notebooks_dir
    from jinstruct.run.runner import declared_outputs, discover, writer_of

    notebooks = discover(notebooks_dir())
    assert "data/train.jsonl" in declared_outputs(notebooks_dir() / "03_filtering.ipynb")
    assert writer_of("data/train.jsonl", notebooks) == "03_filtering"
    assert writer_of("seeds/ja_seed_tasks.jsonl", notebooks) == "01_seed_editing"
    assert writer_of("data/generated.jsonl", notebooks) == "02_generation"
    assert writer_of("models/tiny-sft/adapter/adapter_config.json", notebooks) == "04_qlora_training"
    assert writer_of("answers/tiny-sft.jsonl", notebooks) == "05_answering"
    assert writer_of("nowhere/x.txt", notebooks) is None


def test_progress_of_a_stage_reaches_the_log(project):
    notebook(project / "notebooks" / "01_write.ipynb",
             "from jinstruct import progress\nimport time\n"
             "with progress.bar(total=5, desc='demo', unit='rec') as bar:\n"
             "    for _ in range(5):\n        time.sleep(0.05)\n        bar.update(1)")
    lines = []
    runner(project, log=lines.append).run("01")
    done = [line for line in lines if line.startswith("[01_write] demo: 100%")]
    assert len(done) == 1 and "5/5" in done[0] and "rec/s]" in done[0], lines
    assert done[0] in (project / "runs" / "demo" / "run.log").read_text()
    # the executed notebook keeps the bar's final state as text, not a widget at 0%
    executed = nbformat.read(project / "runs" / "demo" / "notebooks" / "01_write.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    bars = [o for o in outputs if o.output_type == "display_data"]
    assert len(bars) == 1 and list(bars[0].data) == ["text/plain"]
    assert bars[0].data["text/plain"].startswith("demo: 100%") and "5/5" in bars[0].data["text/plain"]
    assert not any(o.output_type == "stream" and o.name == "stderr" for o in outputs)
    # the kernel's own log (not the notebook's output) goes to run.log, never to the terminal
    assert not any("Kernel is running over TCP" in line for line in lines)


def test_no_secret_reaches_notebook_log_or_manifest(project, monkeypatch):
    secret = "sk-test-9f8e7d6c5b4a3210"
    monkeypatch.setenv("MY_API_KEY", secret)
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    notebook(project / "notebooks" / "02_read.ipynb",
             "import os\nprint(os.environ['MY_API_KEY'], os.environ['HF_TOKEN'])\n"
             "raise RuntimeError('failed with ' + os.environ['MY_API_KEY'])")
    with pytest.raises(StageFailed) as e:
        runner(project).run()
    assert secret not in str(e.value) and "***" in str(e.value)
    run_dir = project / "runs" / "demo"
    for f in run_dir.rglob("*"):
        if f.is_file():
            text = f.read_text(encoding="utf-8")
            assert secret not in text and "hf_abcdefghijklmnop" not in text, f


def test_stage_selection():
    paths = [Path(f"{i:02d}_x.ipynb") for i in range(1, 10)]
    assert [p.name[:2] for p in select(paths, "01-03,05")] == ["01", "02", "03", "05"]
    assert select(paths, None) == paths
    with pytest.raises(ValueError):
        select(paths, "x")
    with pytest.raises(ValueError):
        select(paths, "12")


def test_sweep_grid_expands_in_order(project):
    from jinstruct.run.sweep import expand, load_sweep

    spec_path = project / "sweep.yaml"
    spec_path.write_text(
        f"name: sw\nconfig: {project / 'cfg.yaml'}\nnotebooks: {project / 'notebooks'}\n"
        "set: {seeds.english_limit: 2}\ngrid:\n  seed: [1, 2]\n  seeds.english: [sample, official]\n")
    runs = expand(load_sweep(spec_path))
    assert [r.name for r in runs] == ["sw-01", "sw-02", "sw-03", "sw-04"]
    assert [(r.overrides["seed"], r.overrides["seeds.english"]) for r in runs] == [
        (1, "sample"), (1, "official"), (2, "sample"), (2, "official")]
    assert all(r.overrides["seeds.english_limit"] == 2 for r in runs)


def test_a_small_sweep_runs_each_grid_point(project):
    from jinstruct.run.sweep import execute, load_sweep

    spec_path = project / "sweep.yaml"
    spec_path.write_text(f"name: sw\nconfig: {project / 'cfg.yaml'}\nnotebooks: {project / 'notebooks'}\n"
                         "grid:\n  seed: [1, 2]\n")
    done = execute(load_sweep(spec_path), jobs=2, runs_dir=project / "runs", log=lambda m: None)
    assert [r.status for r in done] == ["ok", "ok"]
    sweep = project / "runs" / "sw"
    assert (sweep / "sw-02" / "data" / "b.txt").read_text() == "seed=2 read"
    assert read_json(sweep / "sw-01" / "manifest.json")["config"]["seed"] == 1
    summary = (sweep / "summary.md").read_text()
    assert summary.count("| ok ") == 2
    assert [r["status"] for r in read_json(sweep / "sweep.json")["runs"]] == ["ok", "ok"]


def test_cli_run_reports_failure(project, capsys):
    from jinstruct.__main__ import main

    rc = main(["run", "--config", str(project / "cfg.yaml"), "--set", "nokey=1",
               "--notebooks", str(project / "notebooks"), "--runs-dir", str(project / "runs")])
    assert rc == 1 and "nokey" in capsys.readouterr().err
    notebook(project / "notebooks" / "01_write.ipynb", "raise ValueError('bad seed file')")
    rc = main(["run", "--config", str(project / "cfg.yaml"),
               "--notebooks", str(project / "notebooks"), "--runs-dir", str(project / "runs")])
    out, err = capsys.readouterr()
    assert rc == 1 and (out + err).count("ValueError: bad seed file") == 1 and err.startswith("error: stage 01_write failed")


def test_a_rerun_that_reuses_its_files_keeps_them_as_outputs(project):
    # 01 writes a.txt only when it is missing (as training reuses an adapter); forced to re-run, it writes nothing,
    # yet a.txt stays its output and 02, whose input did not change, is skipped
    notebook(project / "notebooks" / "01_write.ipynb",
             "from pathlib import Path\nout = Path(run_dir) / 'data' / 'a.txt'\nout.parent.mkdir(exist_ok=True)\n"
             "if not out.exists():\n    out.write_text('once')")
    runner(project).run()
    again = runner(project, force=True).run("01")
    assert [o.status for o in again] == ["ok"]
    m = read_json(project / "runs" / "demo" / "manifest.json")
    assert list(m["stages"]["01_write"]["outputs"]) == ["data/a.txt"]
    assert [o.status for o in runner(project).run()] == ["skipped", "skipped"]


@pytest.mark.parametrize("how", [["-p", "overrides", '{"filter.rouge_threshold": 0.6}'],
                                 ["-y", '{"overrides": {"filter.rouge_threshold": 0.6}}']], ids=["-p json", "-y dict"])
def test_papermill_overrides_as_papermill_users_pass_them(tmp_path, how):
    import subprocess
    import sys

    from jinstruct.paths import configs_dir

    nb = notebook(tmp_path / "03_x.ipynb",
                  "from jinstruct.run import Stage\n"
                  "st = Stage.open('03_x', config_path, run_dir, overrides)\n"
                  "print('threshold', st.cfg.filter.rouge_threshold, 'run', st.run_dir.name)")
    out = tmp_path / "out.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(nb), str(out), "-p", "config_path", str(configs_dir() / "tiny.yaml"),
           "-p", "run_dir", str(tmp_path / "run"), *how, "--log-level", "ERROR"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = [o.text for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code" for o in c.outputs
               if o.output_type == "stream"]
    assert printed == ["threshold 0.6 run run\n"]
