"""Sweeps: a grid of overrides expanded into runs, each a full runner call, on this machine or as Slurm jobs.

A sweep file (YAML):

    name: size-sweep            # the sweep's folder runs/<name>/; its runs are runs/<name>/<name>-NN/
    config: configs/tiny.yaml   # the base config
    stages: 01-04               # optional, as for `run --stages`
    set: {train.models: [...]}  # optional overrides common to every run
    grid:                       # every combination becomes one run
      generate.filter.rouge_threshold: [0.6, 0.7]   # an axis of values for one dotted key
      source:                                       # a named axis: each value is a label and its overrides
        self_instruct: {generate.recipe: self_instruct}
        translated: {generate.recipe: translate}
    reuse_generated: true       # (default) runs that differ only in data size share one generation (below)
    compare:                    # grid cells to compare, with a paired bootstrap (default: along `source`)
      - {a: {source: self_instruct}, b: {source: translated}}
    slurm: {partition: gpu, gpus_per_node: 1, cpus_per_task: 8, mem_gb: 64, timeout_min: 1440}

Data sizes are never generated twice: runs whose generation settings (seed, seeds, recipe and its settings, the
endpoints they use) are equal except for the recipe's size share one generation. The largest of them generates;
every other takes the first N records of its data (`generate.from_run`, see `jinstruct.generate.reuse`) and starts
once the source's generation stage has ended well (the source goes on to train meanwhile).

`execute` runs each grid point as `python -m jinstruct run ...` in its own process: `jobs` at a time on this
machine (`executor="local"`), or each as a Slurm job through submitit (`executor="slurm"`, with the `slurm:`
section's partition, GPUs, CPUs, memory and time). It records every run's coordinates, status, time and job id in
`runs/<name>/sweep.json` as it goes, and at the end writes the results summary (`jinstruct.report`).
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator
from tabulate import tabulate

from jinstruct import paths
from jinstruct.formats.layout import RunLayout, SweepLayout
from jinstruct.formats.sweep import Comparison, SweepRecord, SweepRunRecord, write_sweep_record
from jinstruct.generate.recipes import chosen, size
from jinstruct.io import DataError, read_json
from jinstruct.paths import resolve_path
from jinstruct.report.summary import write_summary
from jinstruct.run.config import ConfigError, Strict, read_yaml, validate
from jinstruct.run.schema import RunConfig, load_config

SOURCE_AXIS = "source"  # the axis compared by default (self-instruct vs translated data)
POLL_S = 2.0  # how often a run waiting for its data source looks at the source's manifest


class SlurmSection(Strict):
    """What each run asks of Slurm with `--executor slurm` (submitit's parameters)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 64
    timeout_min: int = 24 * 60
    setup: list[str] = Field(default_factory=list)  # shell lines before each job (module load, activate the env)
    additional: dict[str, Any] = Field(default_factory=dict)  # any other #SBATCH option, e.g. {exclude: node1}


class SweepSpec(Strict):
    name: str
    config: str
    stages: str | None = None
    notebooks: str | None = None  # folder of numbered notebooks (default: notebooks/)
    set: dict[str, Any] = Field(default_factory=dict)
    # an axis is a list of values of one dotted key, or a mapping of labels to overrides
    grid: dict[str, list[Any] | dict[str, dict[str, Any]]]
    reuse_generated: bool = True
    compare: list[Comparison] = Field(default_factory=list)
    slurm: SlurmSection = Field(default_factory=SlurmSection)

    @field_validator("grid", mode="before")
    @classmethod
    def _labels_are_text(cls, grid: Any) -> Any:
        """YAML reads a label such as `1000:` as a number; labels are names, so they become text."""
        if isinstance(grid, dict):
            return {k: {str(label): o for label, o in v.items()} if isinstance(v, dict) else v for k, v in grid.items()}
        return grid

    def axes(self) -> dict[str, list[Any]]:
        """Each axis and its values (labels for a named axis), in the file's order."""
        return {k: list(v) for k, v in self.grid.items()}

    def comparisons(self) -> list[Comparison]:
        """`compare`, or by default every other value of the `source` axis against its first one."""
        if self.compare:
            return list(self.compare)
        values = self.axes().get(SOURCE_AXIS, [])
        return [Comparison(a={SOURCE_AXIS: values[0]}, b={SOURCE_AXIS: v}) for v in values[1:]]


@dataclass
class SweepRun:
    name: str
    overrides: dict[str, Any]
    coordinates: dict[str, Any] = field(default_factory=dict)
    from_run: str | None = None
    status: str = "pending"
    seconds: float = 0.0
    message: str = ""
    job_id: str | None = None
    argv: list[str] = field(default_factory=list)

    def record(self) -> SweepRunRecord:
        return SweepRunRecord(name=self.name, coordinates=self.coordinates, overrides=self.overrides,
                              from_run=self.from_run, status=self.status, seconds=round(self.seconds, 1),
                              message=self.message, job_id=self.job_id)  # type: ignore[arg-type]


def load_sweep(path: str | Path) -> SweepSpec:
    data, root = read_yaml(Path(path))
    spec: SweepSpec = validate(SweepSpec, data, str(path), root)
    axes = spec.axes()
    for key, values in axes.items():
        if not values:
            raise ConfigError(f"{path}: key 'grid.{key}': needs at least one value")
    for i, c in enumerate(spec.compare):
        for side, coords in (("a", c.a), ("b", c.b)):
            for axis, value in coords.items():
                if axis not in axes:
                    raise ConfigError(f"{path}: key 'compare.{i}.{side}.{axis}': not an axis of the grid "
                                      f"(axes: {', '.join(axes)})")
                if str(value) not in {str(v) for v in axes[axis]}:
                    raise ConfigError(f"{path}: key 'compare.{i}.{side}.{axis}': {value!r} is not a value of the "
                                      f"axis (values: {', '.join(map(str, axes[axis]))})")
    return spec


def expand(spec: SweepSpec) -> list[SweepRun]:
    """One run per combination of the grid's values, in a stable order (the last axis varies fastest)."""
    keys = list(spec.grid)
    choices = [list(v.items()) if isinstance(v, dict) else [(x, {k: x}) for x in v] for k, v in spec.grid.items()]
    runs = []
    for i, combo in enumerate(itertools.product(*choices), start=1):
        overrides = dict(spec.set)
        for _, axis_overrides in combo:
            overrides.update(axis_overrides)
        coordinates = {k: label for k, (label, _) in zip(keys, combo)}
        runs.append(SweepRun(name=f"{spec.name}-{i:02d}", overrides=overrides, coordinates=coordinates))
    return runs


# ---- sharing one generation between data sizes -------------------------------------------------------------


def generation_key(cfg: RunConfig) -> str:
    """What decides a run's generated data, except its size: equal keys mean one is a prefix of the other."""
    recipe, recipe_cfg = chosen(cfg.generate)
    settings = recipe_cfg.model_dump(mode="json")
    settings.pop(recipe.size_field)
    endpoints = {cfg.seeds.endpoint, cfg.generate.endpoint}
    return json.dumps({
        "seed": cfg.seed, "seeds": cfg.seeds.model_dump(mode="json"), "recipe": recipe.name, "settings": settings,
        "endpoint": cfg.generate.endpoint,
        "endpoints": {e: cfg.llm.endpoints[e].model_dump(mode="json") for e in sorted(endpoints)
                      if e in cfg.llm.endpoints},
    }, sort_keys=True, ensure_ascii=False)


def plan_reuse(spec: SweepSpec, runs: list[SweepRun]) -> list[SweepRun]:
    """Set `from_run` (and the `generate.from_run` override) of every run whose data is a prefix of another's: in
    each group of equal `generation_key`, the run with the largest size (the first of them) generates."""
    groups: dict[str, list[tuple[float, SweepRun]]] = {}
    for run in runs:
        cfg = load_config(resolve_path(spec.config), run.overrides)
        if cfg.generate.from_run:  # the sweep file already says where its data comes from
            run.from_run = cfg.generate.from_run
            continue
        n = size(cfg.generate)
        groups.setdefault(generation_key(cfg), []).append((float("inf") if n is None else float(n), run))
    for members in groups.values():
        source = max(members, key=lambda m: m[0])[1]  # max keeps the first of equal sizes
        for _, run in members:
            if run is not source:
                run.from_run = source.name
                run.overrides = {**run.overrides, "generate.from_run": source.name}
    return runs


def data_ready(run_dir: Path) -> bool:
    """A stage of the run wrote its `data/generated.jsonl` and ended well (the manifest says so): runs taking
    a prefix of it may start, while the source goes on training."""
    layout = RunLayout(run_dir)
    if not layout.manifest.exists():
        return False
    generated = layout.relative(layout.generated)
    stages = read_json(layout.manifest).get("stages", {})
    return any(s.get("status") == "ok" and generated in s.get("outputs", {}) for s in stages.values())


def in_dependency_order(runs: list[SweepRun]) -> list[SweepRun]:
    """Every run after the run it takes data from, sources first, otherwise in grid order. Started in this order
    by a first-in-first-out pool, a run waiting for its source never waits for a run that has not started."""
    by_name = {r.name: r for r in runs}
    sources = {r.from_run for r in runs if r.from_run}

    def depth(run: SweepRun, seen: tuple[str, ...] = ()) -> int:
        if run.name in seen:
            raise ConfigError(f"generate.from_run makes a cycle: {' -> '.join((*seen, run.name))}")
        source = by_name.get(run.from_run or "")
        return 0 if source is None else 1 + depth(source, (*seen, run.name))

    return sorted(runs, key=lambda r: (depth(r), r.name not in sources))


# ---- launching ---------------------------------------------------------------------------------------------


def run_command(argv: list[str], out: str) -> int:
    """Run one grid point's runner, its output to `out`; returns the exit code. Also what a Slurm job executes."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        return subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, text=True).returncode


Launcher = Callable[[SweepRun, Path], int]


def local_launcher(run: SweepRun, out: Path) -> int:
    return run_command(run.argv, str(out))


class SubmititLauncher:
    """Each run as a job through submitit: `cluster="slurm"` on a Slurm cluster, `"local"` (submitit's
    LocalExecutor, a detached process per job) to try the same path on one machine."""

    def __init__(self, section: SlurmSection, folder: Path, cluster: Literal["slurm", "local"] = "slurm"):
        import submitit

        if cluster == "slurm" and shutil.which("srun") is None:
            raise ConfigError("--executor slurm: Slurm is not installed here (no srun on PATH); run the sweep on the "
                              "cluster's login node, or use --executor local")
        self.on_submit: Callable[[SweepRun], Any] = lambda run: None  # the sweep records the job id
        self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        params: dict[str, Any] = {
            "timeout_min": section.timeout_min, "gpus_per_node": section.gpus_per_node,
            "cpus_per_task": section.cpus_per_task, "mem_gb": section.mem_gb, "nodes": 1, "tasks_per_node": 1,
            "slurm_partition": section.partition, "slurm_account": section.account, "slurm_qos": section.qos,
            "slurm_constraint": section.constraint,
            "slurm_additional_parameters": section.additional or None,
            "slurm_setup": section.setup or None, "local_setup": section.setup or None,
        }
        self.executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
        self._lock = threading.Lock()

    def __call__(self, run: SweepRun, out: Path) -> int:
        with self._lock:  # the job name is a parameter of the shared executor
            self.executor.update_parameters(name=run.name)
            job = self.executor.submit(run_command, run.argv, str(out))
        run.job_id = str(job.job_id)
        self.on_submit(run)
        return int(job.result())


def _yaml_value(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True, allow_unicode=True, width=float("inf")).strip().removesuffix("...").strip()


def _argv(spec: SweepSpec, run: SweepRun, force: bool, runs_dir: Path) -> list[str]:
    argv = [sys.executable, "-m", "jinstruct", "--root", str(paths.project_root()), "run",
            "--config", str(resolve_path(spec.config)), "--name", run.name, "--runs-dir", str(runs_dir)]
    for k, v in run.overrides.items():
        argv += ["--set", f"{k}={_yaml_value(v)}"]
    if spec.stages:
        argv += ["--stages", spec.stages]
    if spec.notebooks:
        argv += ["--notebooks", str(resolve_path(spec.notebooks))]
    if force:
        argv.append("--force")
    return argv


def sweep_dir(spec: SweepSpec, runs_dir: Path | None = None) -> Path:
    return (runs_dir or paths.runs_dir()) / spec.name


def execute(spec: SweepSpec, jobs: int | None = 1, force: bool = False, runs_dir: Path | None = None,
            executor: Literal["local", "slurm"] = "local", launcher: Launcher | None = None,
            log: Callable[[str], Any] = print) -> list[SweepRun]:
    """Run every grid point, `jobs` at a time (None: all at once), each in its own process (or Slurm job); a failed
    run does not stop the others, but the runs that take its data are marked failed without running. Returns the
    runs with their status; `runs/<name>/sweep.json` records them and `summary.csv`/`.md` give their results."""
    layout = SweepLayout(sweep_dir(spec, runs_dir))
    layout.root.mkdir(parents=True, exist_ok=True)
    runs = expand(spec)
    if spec.reuse_generated:
        plan_reuse(spec, runs)
    if launcher is None:
        launcher = SubmititLauncher(spec.slurm, layout.jobs) if executor == "slurm" else local_launcher
    for run in runs:
        run.argv = _argv(spec, run, force, layout.root)
    record_lock = threading.Lock()
    finished = {r.name: threading.Event() for r in runs}
    by_name = {r.name: r for r in runs}

    def save() -> None:
        with record_lock:
            write_sweep_record(layout.record, SweepRecord(
                name=spec.name, config=spec.config, executor=executor, axes=spec.axes(),
                compare=spec.comparisons(), runs=[r.record() for r in runs]))

    if isinstance(launcher, SubmititLauncher):
        launcher.on_submit = lambda run: save()

    def one(run: SweepRun) -> SweepRun:
        try:
            source = by_name.get(run.from_run or "")
            if source is not None:
                # the source started before this run (dependency order), so one of the two comes
                source_dir = layout.run(source.name).root
                while not finished[source.name].wait(POLL_S) and not data_ready(source_dir):
                    pass
                if not data_ready(source_dir):
                    why = "failed" if source.status != "ok" else "ended without generated data (no stage 02?)"
                    run.status, run.message = "failed", f"its data source {source.name} {why}"
                    log(f"[{run.name}] not run: {run.message}")
                    return run
            run.status = "running"
            save()
            log(f"[{run.name}] start {run.coordinates}" + (f" (data from {run.from_run})" if run.from_run else ""))
            t0 = time.perf_counter()
            out = layout.run(run.name).runner_output
            try:
                code = launcher(run, out)
            except Exception as e:  # noqa: BLE001 - a lost job (killed, timed out) fails this run only
                code, run.message = -1, f"{type(e).__name__}: {e}"
            run.seconds = time.perf_counter() - t0
            run.status = "ok" if code == 0 else "failed"
            if not run.message:
                tail = out.read_text(encoding="utf-8").strip().splitlines() if out.exists() else []
                run.message = tail[-1] if tail else ""
            log(f"[{run.name}] {run.status} in {run.seconds:.0f}s")
            return run
        finally:
            save()
            finished[run.name].set()

    save()
    ordered = in_dependency_order(runs)
    with ThreadPoolExecutor(max_workers=max(1, jobs or len(runs))) as pool:
        list(pool.map(one, ordered))
    try:
        write_summary(layout.root)
    except (DataError, ValueError) as e:  # the runs are done and recorded; say why their summary is not
        log(f"summary of {spec.name}: error: {e}")
    return runs


def status_table(runs: list[SweepRun]) -> str:
    """Each run's coordinates, data source, status and seconds (Markdown)."""
    keys = list(dict.fromkeys(k for r in runs for k in r.coordinates))
    rows = [[r.name, *(str(r.coordinates.get(k, "")) for k in keys), r.from_run or "", r.status, round(r.seconds)]
            for r in runs]
    return tabulate(rows, headers=["run", *keys, "data from", "status", "seconds"], tablefmt="pipe",
                    disable_numparse=True) + "\n"
