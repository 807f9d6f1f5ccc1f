"""Sweeps: a grid of overrides expanded into runs, each a full runner call.

A sweep file (YAML):

    name: size-sweep            # runs are named <name>-<NN>
    config: configs/tiny.yaml   # the base config
    stages: 01-04               # optional, as for `run --stages`
    set: {train.max_steps: 4}   # optional overrides common to every run
    grid:                       # every combination becomes one run
      generate.recipe: [self_instruct, translate]
      generate.self_instruct.target: [20, 40]
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from jinstruct.paths import resolve_path
from jinstruct.run.config import ConfigError, Strict, read_yaml, validate
from tabulate import tabulate

from jinstruct.io import atomic_write_text


class SweepSpec(Strict):
    name: str
    config: str
    stages: str | None = None
    notebooks: str | None = None  # folder of numbered notebooks (default: notebooks/)
    set: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]]


@dataclass
class SweepRun:
    name: str
    overrides: dict[str, Any]
    status: str = "pending"
    seconds: float = 0.0
    message: str = ""
    argv: list[str] = field(default_factory=list)


def load_sweep(path: str | Path) -> SweepSpec:
    data, root = read_yaml(Path(path))
    spec: SweepSpec = validate(SweepSpec, data, str(path), root)
    for key, values in spec.grid.items():
        if not values:
            raise ConfigError(f"{path}: key 'grid.{key}': needs at least one value")
    return spec


def expand(spec: SweepSpec) -> list[SweepRun]:
    """One run per combination of the grid's values, in a stable order."""
    keys = list(spec.grid)
    runs = []
    for i, combo in enumerate(itertools.product(*(spec.grid[k] for k in keys)), start=1):
        overrides = {**spec.set, **dict(zip(keys, combo))}
        runs.append(SweepRun(name=f"{spec.name}-{i:02d}", overrides=overrides))
    return runs


def _argv(spec: SweepSpec, run: SweepRun, force: bool, runs_dir: Path | None) -> list[str]:
    argv = [sys.executable, "-m", "jinstruct", "run", "--config", str(resolve_path(spec.config)), "--name", run.name]
    for k, v in run.overrides.items():
        argv += ["--set", f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"]
    if spec.stages:
        argv += ["--stages", spec.stages]
    if spec.notebooks:
        argv += ["--notebooks", str(resolve_path(spec.notebooks))]
    if force:
        argv.append("--force")
    if runs_dir is not None:
        argv += ["--runs-dir", str(runs_dir)]
    return argv


def execute(spec: SweepSpec, jobs: int = 1, force: bool = False, runs_dir: Path | None = None,
            log=print) -> list[SweepRun]:
    """Run every grid point, `jobs` at a time, each in its own process; a failed run does not stop the others."""
    runs = expand(spec)
    base = runs_dir or resolve_path("runs")

    def one(run: SweepRun) -> SweepRun:
        run.argv = _argv(spec, run, force, runs_dir)
        log(f"[{run.name}] start {run.overrides}")
        t0 = time.perf_counter()
        (base / run.name).mkdir(parents=True, exist_ok=True)
        with (base / run.name / "runner.out").open("w", encoding="utf-8") as out:
            proc = subprocess.run(run.argv, stdout=out, stderr=subprocess.STDOUT, text=True)
        run.seconds = time.perf_counter() - t0
        run.status = "ok" if proc.returncode == 0 else "failed"
        tail = (base / run.name / "runner.out").read_text(encoding="utf-8").strip().splitlines()
        run.message = tail[-1] if tail else ""
        log(f"[{run.name}] {run.status} in {run.seconds:.0f}s")
        return run

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        done = list(pool.map(one, runs))
    atomic_write_text(base / f"{spec.name}-summary.md", summary_table(done))
    return done


def summary_table(runs: list[SweepRun]) -> str:
    keys = sorted({k for r in runs for k in r.overrides})
    rows = [[r.name, *(str(r.overrides.get(k, "")) for k in keys), r.status, round(r.seconds)] for r in runs]
    return tabulate(rows, headers=["run", *keys, "status", "seconds"], tablefmt="pipe", disable_numparse=True) + "\n"
