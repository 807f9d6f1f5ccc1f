"""kill -9 of the runner's process group at several points of a generation stage and an answering + judging stage,
against the fake endpoint served on a local port: the kernel dies with the runner (no request after the kill), each
resume takes over the stale lock, the manifest keeps the files a killed attempt completed, and the end result is the
uninterrupted run's, with no record lost and only requests in flight at a kill sent twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from fake_openai import serve_fake, server_stats

from jinstruct.io import read_json, sha256_file

pytestmark = pytest.mark.slow

CONCURRENCY = 4
PARAMS = "config_path = None\nrun_dir = None\noverrides = {}\n"
GENERATE = """
import time
from pathlib import Path
from jinstruct import generate, paths
from jinstruct.run import Stage
st = Stage.open("01_generate", config_path, run_dir, overrides)
st.path(st.layout.japanese_seeds).write_bytes(paths.resolve_path(st.cfg.seeds.japanese).read_bytes())
stats = generate.run_generation(st.cfg.generate, st)
st.close()
(Path(run_dir) / "01.done").touch()
time.sleep(2)  # the rest of the notebook (figures): a kill here finds generated.jsonl complete
"""
ANSWER_AND_JUDGE = """
from jinstruct import answer, judge
from jinstruct.run import Stage
st = Stage.open("02_answer_judge", config_path, run_dir, overrides)
questions, references = answer.load_benchmark(st.cfg.answer.benchmark, st.cfg.answer.per_category)
reports = {spec.model_id: answer.answer_model(spec, questions, st) for spec in st.cfg.answer.models}
result = judge.run_judging(st.cfg.judge, st.client(st.cfg.judge.endpoint), questions, references, st.layout.answers,
                           st.dir(st.layout.judgments), seed=st.cfg.seed,
                           superseded_dir=st.layout.superseded / "judgments")
st.report_errors(result.errors, "judgments recorded as errors")
st.close()
"""


def notebook(path: Path, code: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)


def project(tmp: Path, url: str) -> list[str]:
    (tmp / "notebooks").mkdir(parents=True)
    notebook(tmp / "notebooks" / "01_generate.ipynb", GENERATE)
    notebook(tmp / "notebooks" / "02_answer_judge.ipynb", ANSWER_AND_JUDGE)
    endpoint = {"base_url": url, "api_key_env": None, "concurrency": CONCURRENCY, "timeout_s": 20.0}
    cfg = {
        "name": "killed",
        "llm": {"cache": str(tmp / "cache.sqlite3"),
                "endpoints": {"fake": {**endpoint, "model": "fake-model"}, "other": {**endpoint, "model": "other"}}},
        "seeds": {"endpoint": "fake"},
        "generate": {"recipe": "self_instruct", "endpoint": "fake",
                     "self_instruct": {"target": 60, "max_tokens": 1000}},
        "answer": {"per_category": 2, "max_new_tokens": 48,
                   "models": [{"model_id": "api-a", "endpoint": "fake"}, {"model_id": "api-b", "endpoint": "other"}]},
        "judge": {"endpoint": "fake", "name": "fake-judge", "baseline": "api-b", "mode": "json", "max_tokens": 64,
                  "max_attempts": 2, "bootstrap_rounds": 50},
    }
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return [sys.executable, "-m", "jinstruct", "run", "--config", str(tmp / "cfg.yaml"),
            "--notebooks", str(tmp / "notebooks"), "--runs-dir", str(tmp / "runs")]


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # its own process group, as a shell job
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def children(pid: int) -> list[int]:
    """The kernels of runner `pid`: its children, or processes jupyter_client started for it (JPY_PARENT_PID)."""
    out = []
    for p in Path("/proc").iterdir():
        try:
            if not p.name.isdigit():
                continue
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid or f"JPY_PARENT_PID={pid}".encode() in (p / "environ").read_bytes().split(b"\0"):
                out.append(int(p.name))
        except (OSError, IndexError, ValueError):
            pass
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_until(proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 240
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the runner ended (rc {proc.returncode}) or hung before {what}")
        time.sleep(0.02)


def kill_group(proc: subprocess.Popen[bytes], url: str) -> dict[str, Any]:
    """kill -9 the runner's process group; what followed: how long its kernel outlived it, requests arriving after."""
    kernels = children(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    t0 = time.monotonic()
    proc.wait()
    while any(alive(k) for k in kernels) and time.monotonic() - t0 < 5:
        time.sleep(0.005)
    outlived = time.monotonic() - t0
    at_kill = server_stats(url)["calls"]
    time.sleep(1.5)
    return {"kernels": kernels, "kernel_outlived_s": round(outlived, 3),
            "calls_after_kill": server_stats(url)["calls"] - at_kill}


def records(path: Path, drop: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{k: v for k, v in json.loads(x).items() if k not in drop}
            for x in path.read_text(encoding="utf-8").splitlines()]


def outputs(run: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        "generated": records(run / "data" / "generated.jsonl", ("request_id",)),
        "answers": records(run / "answers" / "api-a.jsonl", ("tstamp",)) + records(run / "answers" / "api-b.jsonl",
                                                                                   ("tstamp",)),
        # judgments are appended as games settle, in the order replies arrive: compared as sets of games
        "pair": sorted(records(run / "judgments" / "fake-judge_pair.jsonl", ("tstamp",)),
                       key=lambda r: (str(r["question_id"]), r["turn"], r["model_1"], r["model_2"])),
        "single": sorted(records(run / "judgments" / "fake-judge_single.jsonl", ("tstamp",)),
                         key=lambda r: (str(r["question_id"]), r["turn"], r["model"])),
    }


def account(stats: dict[str, Any]) -> dict[str, int]:
    return {"sent": stats["calls"], "distinct": stats["distinct"],
            "paid_twice": sum(1 for n in stats["charged"].values() if n > 1)}


def test_killing_the_runner_group_at_several_points_then_resuming_gives_the_uninterrupted_result(tmp_path):
    with serve_fake(delay_s=0.1, tasks=True) as url:
        cmd = project(tmp_path / "clean", url)
        subprocess.run(cmd, check=True, timeout=600, capture_output=True)
        clean = server_stats(url)
    clean_out = outputs(tmp_path / "clean" / "runs" / "killed")

    with serve_fake(delay_s=0.1, tasks=True) as url:
        work = tmp_path / "killed"
        cmd = project(work, url)
        run = work / "runs" / "killed"
        log = work / "runner.log"
        kills = []

        # 1: in the middle of generation
        proc = start(cmd, log)
        wait_until(proc, lambda: server_stats(url)["calls"] >= 8, "generation was under way")
        kills.append(kill_group(proc, url))
        # 2: generation done, the notebook not yet: generated.jsonl is complete and the next attempt leaves it as is
        proc = start(cmd, log)
        wait_until(proc, lambda: (run / "01.done").exists(), "generation ended")
        (run / "01.done").unlink()
        kills.append(kill_group(proc, url))
        generated_sha = sha256_file(run / "data" / "generated.jsonl")
        # 3: in the middle of answering and judging
        proc = start(cmd, log)
        at_02 = []
        wait_until(proc, lambda: (run / "01.done").exists(), "stage 01 ended")
        at_02.append(server_stats(url)["calls"])
        wait_until(proc, lambda: server_stats(url)["calls"] >= at_02[0] + 40, "judging was under way")
        kills.append(kill_group(proc, url))
        # 4: to the end
        proc = start(cmd, log)
        assert proc.wait(timeout=600) == 0, log.read_text()
        killed = server_stats(url)

    text = log.read_text()
    print(f"\nuninterrupted: {account(clean)}; killed 3 times and resumed: {account(killed)}; "
          f"requests after each kill: {[k['calls_after_kill'] for k in kills]}; "
          f"kernel outlived the runner by (s): {[k['kernel_outlived_s'] for k in kills]}")
    for k in kills:
        # the kernel dies with the runner (before: ipykernel's parent poller noticed up to a second later)
        assert k["kernels"] and k["kernel_outlived_s"] < 0.3, k
        assert k["calls_after_kill"] <= CONCURRENCY, "nothing sent after the kill but what was on the wire"
    assert text.count("took over the lock of a runner that is gone") == 3
    assert not (run / "run.lock").exists()

    out = outputs(run)
    assert out == clean_out, "the same records as the uninterrupted run"
    assert len(out["generated"]) == 60 and len(out["answers"]) == 32 and len(out["pair"]) == 16
    assert len(out["single"]) == 32, "no record lost"
    # only requests in flight at a kill (answered by the endpoint, never by the dead client) are paid twice
    assert account(clean)["paid_twice"] == 0 and account(killed)["paid_twice"] <= 3 * CONCURRENCY

    manifest = read_json(run / "manifest.json")["stages"]
    assert [s["status"] for s in manifest.values()] == ["ok", "ok"]
    assert manifest["01_generate"]["outputs"]["data/generated.jsonl"]["sha256"] == generated_sha, \
        "what the killed attempt completed stays the stage's output"
    assert len(manifest["02_answer_judge"]["llm"]["attempts"]) >= 2, "the ledger keeps every attempt"
    # the ledgers book every call the endpoint saw, but those on the wire when the client was killed
    booked = sum(s["llm"]["calls"] for s in manifest.values())
    assert 0 <= killed["calls"] - booked <= 3 * CONCURRENCY
    clean_manifest = read_json(tmp_path / "clean" / "runs" / "killed" / "manifest.json")["stages"]
    assert sum(s["llm"]["calls"] for s in clean_manifest.values()) == clean["calls"]
