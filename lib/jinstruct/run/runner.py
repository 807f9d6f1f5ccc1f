"""Run the numbered notebooks in order with papermill, keep each executed notebook, and resume.

`python -m jinstruct run --config FILE [--set k=v ...] [--stages 01-06] [--name RUN] [--force] [--retry-errors]
[--reset-budget]`

Each notebook gets `config_path`, `run_dir` and `overrides` as papermill parameters and keeps its executed copy under
`runs/<name>/notebooks/`. A stage whose fingerprint (resolved config, notebook source, and the files that earlier
stages of the run wrote) is unchanged since it succeeded is skipped; `--force` runs it again.

A run holds `run.lock` while it runs (a second runner on the same run refuses and names the holder), and its kernels
die with it. A stage's ledger is never deleted: its LLM spend, and its `budget_usd`, count every attempt
(`--reset-budget` starts a fresh budget). A stage's outputs are every file its completed work produced since its last
success, over all the attempts it took. A stage that reports errors left in its outputs (judgments recorded as
errors) ends "ok with N errors"; `--retry-errors` runs such stages again with `judge.retry_errors`.

While a stage runs, its progress bars show in the terminal and in `run.log` (`jinstruct.run.follow`); its kernel runs
as `jinstruct.run.kernel` sets it up. A failed stage is reported once, naming the executed notebook, the cell and
the line that failed, and, when the error names a file of the run folder that is missing, the stage that writes it
(from the `**Writes**:` line of each notebook's description).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat

from jinstruct import paths, progress
from jinstruct.formats.layout import RunLayout
from jinstruct.io import atomic_write_text, read_json, sha256_file
from jinstruct.llm.ledger import load_ledger, reset_budget
from jinstruct.run import manifest as mf
from jinstruct.run.config import dump_config, parse_override
from jinstruct.run.follow import ProgressFollower
from jinstruct.run.kernel import stage_kernel
from jinstruct.run.lock import HELD_BY_ENV, RunLock
from jinstruct.run.schema import load_config

STAGE_RE = re.compile(r"^(\d\d)_[\w-]+\.ipynb$")
# jupyter_client interrupts a kernel before it shuts it down; a kernel busy with a message at that moment logs this
SHUTDOWN_INTERRUPT = "KeyboardInterrupt caught in kernel"


class StageFailed(RuntimeError):
    """A notebook raised; the message names the executed notebook, the failing cell and line, and the stage that
    writes a missing input."""


@dataclass
class StageOutcome:
    stage: str
    status: str  # ok | ok with N errors | skipped | failed
    seconds: float


def succeeded(entry: dict[str, Any]) -> bool:
    """The manifest entry of a stage that ran to its end ("ok", or "ok with N errors")."""
    return str(entry.get("status", "")).startswith("ok")


def stage_status(errors: int) -> str:
    return "ok" if not errors else f"ok with {errors} error{'s' if errors != 1 else ''}"


def read_errors(path: Path) -> int:
    """The errors a stage reported (`Stage.report_errors`), 0 when it reported none."""
    return int(read_json(path).get("errors", 0)) if path.exists() else 0


def attempt_baseline(run_dir: Path, prev: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """The run folder as it was before the stage's current work began: when its last attempt did not end (killed)
    or failed, as it was before that attempt, so that what the earlier attempts wrote counts as this stage's output."""
    if not succeeded(prev) and "baseline" in prev:
        return {rel: (int(v[0]), int(v[1])) for rel, v in prev["baseline"].items()}
    return mf.snapshot(run_dir)


def discover(notebooks_dir: Path | None = None) -> list[Path]:
    """The numbered notebooks (`NN_name.ipynb`) in order (default: the project's `notebooks/`)."""
    notebooks_dir = notebooks_dir if notebooks_dir is not None else paths.notebooks_dir()
    return sorted(p for p in notebooks_dir.glob("*.ipynb") if STAGE_RE.match(p.name))


def stage_numbers(spec: str) -> set[int]:
    """The stage numbers of "01-06", "02", "01,03,05-06"."""
    wanted: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"--stages {spec!r}: expected numbers and ranges such as 01-06 or 02,04")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        wanted.update(range(lo, hi + 1))
    return wanted


def select(notebooks: list[Path], spec: str | None) -> list[Path]:
    """Keep the notebooks named by `spec`: "01-06", "02", "01,03,05-06"; None keeps all."""
    if not spec:
        return notebooks
    wanted = stage_numbers(spec)
    chosen = [p for p in notebooks if int(p.name[:2]) in wanted]
    if not chosen:
        raise ValueError(f"--stages {spec!r} selects none of: {', '.join(p.stem for p in notebooks)}")
    return chosen


def overrides_dict(overrides: list[str] | None) -> dict[str, Any]:
    return dict(parse_override(o) for o in overrides or [])


def fingerprint(resolved_config: str, notebook: Path, upstream: dict[str, str]) -> str:
    blob = json.dumps({"config": resolved_config, "notebook": sha256_file(notebook), "inputs": upstream},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def upstream_outputs(manifest: dict[str, Any], stage: str) -> dict[str, str]:
    """sha256 of every file the stages before `stage` wrote, as the manifest records them."""
    out: dict[str, str] = {}
    for name, entry in sorted(manifest.get("stages", {}).items()):
        if name < stage:
            out.update({rel: f["sha256"] for rel, f in entry.get("outputs", {}).items()})
    return out


def outputs_intact(run_dir: Path, entry: dict[str, Any]) -> bool:
    return all((run_dir / rel).exists() and sha256_file(run_dir / rel) == f["sha256"]
               for rel, f in entry.get("outputs", {}).items())


_WRITES = re.compile(r"\*\*Writes\*\*(.*)", re.DOTALL)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def declared_outputs(notebook: Path) -> list[str]:
    """The run-folder paths a notebook says it writes: the backticked paths after `**Writes**` in its first markdown
    cell, `<name>` placeholders as `*` (e.g. `models/*/adapter/`)."""
    nb = nbformat.read(notebook, as_version=4)
    first = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    m = _WRITES.search(first)
    found = re.findall(r"`([^`\s]+)`", m.group(1)) if m else []
    return [re.sub(r"<[^>]+>", "*", p) for p in found if "/" in p]


def writer_of(rel: str, notebooks: list[Path]) -> str | None:
    """The stage whose notebook declares it writes `rel` (a path inside the run folder), or None."""
    for nb in notebooks:
        for pattern in declared_outputs(nb):
            if pattern.endswith("/") and (rel.startswith(pattern) or fnmatch.fnmatch(rel, pattern + "*")):
                return nb.stem
            if fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(rel, pattern + "/*"):
                return nb.stem
    return None


def failing_line(error: Any) -> tuple[int | None, str]:
    """The line number (within its cell) and text of the line that raised, from a papermill execution error's
    traceback (IPython's `Cell In[N], line L` of the failing cell's own frame)."""
    text = _ANSI.sub("", "\n".join(error.traceback or []))
    hits = [int(line) for count, line in re.findall(r"Cell In\[(\d+)\], line (\d+)", text)
            if error.exec_count is None or int(count) == error.exec_count]
    if not hits:
        return None, ""
    lines = error.source.splitlines()
    number = hits[0]  # the cell's statement that was running (frames of functions it called come after)
    return number, lines[number - 1].strip() if 0 < number <= len(lines) else ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Runner:
    def __init__(self, config_path: str | Path, overrides: list[str] | None = None, name: str | None = None,
                 notebooks_dir: Path | None = None, runs_dir: Path | None = None, force: bool = False,
                 kernel_name: str | None = None, log: Callable[[str], None] = print, retry_errors: bool = False,
                 reset_budget: bool = False, live: bool | None = None):
        """log: where the runner's lines go besides run.log (default: the terminal). live: redraw each progress bar
        in place on the terminal (default: when `log` is print and stdout is a terminal)."""
        self.config_path = Path(config_path).resolve()
        self.overrides = overrides_dict(overrides)
        self.cfg = load_config(self.config_path, self.overrides)
        self.name = name or self.cfg.name
        self.run_dir = ((runs_dir or paths.runs_dir()) / self.name).resolve()
        self.layout = RunLayout(self.run_dir)
        self.notebooks_dir = notebooks_dir if notebooks_dir is not None else paths.notebooks_dir()
        self.root = paths.project_root()
        self.force = force
        self.retry_errors = retry_errors
        self.reset_budget = reset_budget
        self.kernel_name = kernel_name
        self._log = log
        if live is None:
            live = log is print and sys.stdout.isatty()
        self.live = sys.stdout if live else None
        self.notebooks: list[Path] = []
        self.secrets = mf.secret_values()

    def log(self, msg: str) -> None:
        """A line for the terminal (or the `log` given) and run.log."""
        msg = mf.redact(msg, self.secrets)
        self._log(msg)
        self.log_file(msg)

    def log_file(self, msg: str) -> None:
        """A line for run.log only."""
        msg = mf.redact(msg, self.secrets)
        self.layout.log.parent.mkdir(parents=True, exist_ok=True)
        with self.layout.log.open("a", encoding="utf-8") as f:
            f.write(f"{_now()} {msg}\n")

    def run(self, stages: str | None = None) -> list[StageOutcome]:
        self.notebooks = discover(self.notebooks_dir)
        notebooks = select(self.notebooks, stages or self.cfg.stages)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.layout.lock) as lock:
            if lock.stale:
                self.log(f"run {self.name}: took over the lock of a runner that is gone (pid {lock.stale.get('pid')}"
                         f" on {lock.stale.get('host')}, started {lock.stale.get('started')})")
            os.environ[HELD_BY_ENV] = str(self.layout.lock)  # the kernels run under this lock
            try:
                return self._run_locked(notebooks)
            finally:
                os.environ.pop(HELD_BY_ENV, None)

    def _run_locked(self, notebooks: list[Path]) -> list[StageOutcome]:
        resolved = dump_config(self.cfg)
        atomic_write_text(self.layout.config, resolved)
        manifest = mf.load(self.run_dir)
        manifest.update({"name": self.name, "config_file": str(self.config_path), "overrides": self.overrides,
                         "config": self.cfg.model_dump(mode="json"), "environment": mf.environment()})
        manifest.setdefault("stages", {})
        mf.save(self.run_dir, manifest)
        self.log(f"run {self.name}: {len(notebooks)} stage(s) -> {self.run_dir}")
        outcomes = []
        for nb in notebooks:
            outcomes.append(self._stage(nb, resolved, manifest))
        total = sum(o.seconds for o in outcomes)
        self.log(f"run {self.name}: done in {total:.1f}s ({', '.join(f'{o.stage} {o.status}' for o in outcomes)})")
        return outcomes

    def _stage(self, nb: Path, resolved: str, manifest: dict[str, Any]) -> StageOutcome:
        stage = nb.stem
        fp = fingerprint(resolved, nb, upstream_outputs(manifest, stage))
        prev = manifest["stages"].get(stage, {})
        retry = self.retry_errors and bool(prev.get("errors"))
        if (not self.force and not retry and succeeded(prev) and prev.get("fingerprint") == fp
                and outputs_intact(self.run_dir, prev)):
            self.log(f"[{stage}] unchanged since {prev.get('end')} ({prev.get('status')}): skipped "
                     "(--force runs it again" + (", --retry-errors re-sends its errors)" if prev.get("errors") else ")"))
            return StageOutcome(stage, "skipped", 0.0)

        executed = self.layout.executed_notebook(nb.name)
        before = attempt_baseline(self.run_dir, prev)
        entry: dict[str, Any] = {"notebook": nb.name,
                                 "executed": self.layout.relative(executed), "fingerprint": fp,
                                 "start": _now(), "status": "running", "baseline": before}
        manifest["stages"][stage] = entry
        mf.save(self.run_dir, manifest)
        ledger = self.layout.ledger(stage)
        if self.reset_budget:
            reset_budget(ledger)
            self.log(f"[{stage}] budget reset: budget_usd counts from here")
        self.layout.errors_report(stage).unlink(missing_ok=True)
        self.log(f"[{stage}] running {nb.name}")
        t0 = time.perf_counter()
        error: Exception | None = None
        try:
            self._execute(nb, executed, stage, {"judge.retry_errors": True} if self.retry_errors else {})
        except Exception as e:  # noqa: BLE001 - reported below with the notebook and cell
            error = e
        seconds = time.perf_counter() - t0
        entry.update({"end": _now(), "seconds": round(seconds, 2),
                      "outputs": self._outputs(prev, before)})
        record = load_ledger(ledger)
        if record is not None:
            entry["llm"] = record.model_dump(mode="json")
        errors = read_errors(self.layout.errors_report(stage))
        entry["status"] = "failed" if error else stage_status(errors)
        entry["errors"] = errors
        if error is None:
            entry.pop("baseline")  # done: the next attempt starts from the folder as it is
        mf.save(self.run_dir, manifest)
        if error is not None:
            raise StageFailed(self._failure_message(stage, executed, error)) from None
        self.log(f"[{stage}] {entry['status']} in {seconds:.1f}s, wrote {len(entry['outputs'])} file(s)")
        return StageOutcome(stage, entry["status"], seconds)

    def _outputs(self, prev: dict[str, Any], before: dict[str, tuple[int, int]]) -> dict[str, Any]:
        """Every file the stage's work produced since `before` (over its attempts), plus the files of its last run
        that it reused: a re-run that reuses files it wrote before (an adapter already trained, answers already
        there) still owns them, so later stages see the same inputs."""
        kept = {rel: {"sha256": sha256_file(self.run_dir / rel), "size": (self.run_dir / rel).stat().st_size}
                for rel in prev.get("outputs", {}) if (self.run_dir / rel).exists()}
        return dict(sorted({**kept, **mf.written_files(self.run_dir, before)}.items()))

    def _execute(self, nb: Path, executed: Path, stage: str, overrides: dict[str, Any] | None = None) -> None:
        import papermill as pm

        # the notebook reads the config this runner resolved and recorded (overrides applied once, here; the only
        # ones passed on are this attempt's own, as --retry-errors)
        params = {"config_path": str(self.layout.config), "run_dir": str(self.run_dir), "overrides": overrides or {}}
        kernel = self.kernel_name or nbformat.read(nb, as_version=4).metadata.get("kernelspec", {}).get("name")
        tmpdir = Path(tempfile.mkdtemp(prefix="jinstruct-nb-"))
        tmp_out = tmpdir / nb.name
        bars = tmpdir / "progress.jsonl"
        env = {paths.ROOT_ENV: str(self.root),  # the kernel resolves the project as this runner did
               progress.PROGRESS_ENV: str(bars), **progress.THIRD_PARTY_BARS_OFF}
        manager = stage_kernel(tmpdir, env)
        try:
            with ProgressFollower(bars, stage, self.log, self.log_file, live=self.live):
                pm.execute_notebook(str(nb), str(tmp_out), parameters=params, cwd=str(nb.parent),
                                    kernel_manager_class=manager,
                                    kernel_name=kernel or "python3", language="python", progress_bar=False,
                                    log_output=False)
        finally:
            # executed notebooks are kept with every secret value scrubbed; papermill wrote to a temp folder
            if tmp_out.exists():
                atomic_write_text(executed, mf.redact(tmp_out.read_text(encoding="utf-8"), self.secrets))
            kernel_log = tmpdir / "kernel.log"
            if kernel_log.exists():
                for line in kernel_log.read_text(encoding="utf-8", errors="replace").splitlines():
                    if line.strip() and not line.rstrip(".").endswith(SHUTDOWN_INTERRUPT):
                        self.log_file(f"[{stage}] kernel: {line}")
            shutil.rmtree(tmpdir, ignore_errors=True)

    def _failure_message(self, stage: str, executed: Path, error: Exception) -> str:
        from papermill.exceptions import PapermillExecutionError

        shown = str(executed)
        if isinstance(error, PapermillExecutionError):
            number, line = failing_line(error)
            where = f"cell {error.cell_index} (In [{error.exec_count}])"
            if number is not None:
                where += f", line {number}: {line[:120]}"
            msg = (f"stage {stage} failed in {where}\n  {error.ename}: {error.evalue}\n"
                   f"  executed notebook: {shown}")
            for rel in self._missing_inputs(f"{error.evalue}\n{_ANSI.sub('', ''.join(error.traceback or []))}"):
                writer = writer_of(rel, self.notebooks)
                if writer is not None and writer != stage:
                    msg += f"\n  {rel} is missing: stage {writer} writes it; run that stage first (--stages {writer[:2]})"
        else:
            msg = f"stage {stage} failed: {type(error).__name__}: {error}\n  executed notebook: {shown}"
        self.log_file(msg)  # the terminal gets it once, from whoever catches StageFailed
        return mf.redact(msg, self.secrets)

    def _missing_inputs(self, text: str) -> list[str]:
        """Paths inside the run folder named in `text` that do not exist (in order, once each)."""
        root = str(self.run_dir)
        found = re.findall(re.escape(root) + r"/([^\s'\"`:,;()\[\]]+)", text)
        return [rel for rel in dict.fromkeys(p.rstrip(".") for p in found) if not (self.run_dir / rel).exists()]


def run(config_path: str | Path, overrides: list[str] | None = None, stages: str | None = None,
        name: str | None = None, force: bool = False, **kwargs: Any) -> list[StageOutcome]:
    return Runner(config_path, overrides, name=name, force=force, **kwargs).run(stages)
