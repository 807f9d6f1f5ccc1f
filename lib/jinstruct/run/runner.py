"""Run the numbered notebooks in order with papermill, keep each executed notebook, and resume.

`python -m jinstruct run --config FILE [--set k=v ...] [--stages 01-06] [--name RUN] [--force]`

Each notebook gets `config_path`, `run_dir` and `overrides` as papermill parameters and keeps its executed copy under
`runs/<name>/notebooks/`. A stage whose fingerprint (resolved config, notebook source, and the files that earlier
stages of the run wrote) is unchanged since it succeeded is skipped; `--force` runs it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat

from jinstruct import paths
from jinstruct.formats.layout import RunLayout
from jinstruct.io import atomic_write_text, read_json, sha256_file
from jinstruct.run import manifest as mf
from jinstruct.run.config import dump_config, parse_override
from jinstruct.run.schema import load_config

STAGE_RE = re.compile(r"^(\d\d)_[\w-]+\.ipynb$")


class StageFailed(RuntimeError):
    """A notebook raised; the message names the executed notebook and the failing cell."""


@dataclass
class StageOutcome:
    stage: str
    status: str  # ok | skipped | failed
    seconds: float


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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Runner:
    def __init__(self, config_path: str | Path, overrides: list[str] | None = None, name: str | None = None,
                 notebooks_dir: Path | None = None, runs_dir: Path | None = None, force: bool = False,
                 kernel_name: str | None = None, log=print):
        self.config_path = Path(config_path).resolve()
        self.overrides = overrides_dict(overrides)
        self.cfg = load_config(self.config_path, self.overrides)
        self.name = name or self.cfg.name
        self.run_dir = ((runs_dir or paths.runs_dir()) / self.name).resolve()
        self.layout = RunLayout(self.run_dir)
        self.notebooks_dir = notebooks_dir if notebooks_dir is not None else paths.notebooks_dir()
        self.root = paths.project_root()
        self.force = force
        self.kernel_name = kernel_name
        self._log = log
        self.secrets = mf.secret_values()

    def log(self, msg: str) -> None:
        msg = mf.redact(msg, self.secrets)
        self._log(msg)
        with self.layout.log.open("a", encoding="utf-8") as f:
            f.write(f"{_now()} {msg}\n")

    def run(self, stages: str | None = None) -> list[StageOutcome]:
        notebooks = select(discover(self.notebooks_dir), stages or self.cfg.stages)
        self.run_dir.mkdir(parents=True, exist_ok=True)
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
        if (not self.force and prev.get("status") == "ok" and prev.get("fingerprint") == fp
                and outputs_intact(self.run_dir, prev)):
            self.log(f"[{stage}] unchanged since {prev.get('end')}: skipped (--force runs it again)")
            return StageOutcome(stage, "skipped", 0.0)

        executed = self.layout.executed_notebook(nb.name)
        entry: dict[str, Any] = {"notebook": nb.name,
                                 "executed": self.layout.relative(executed), "fingerprint": fp,
                                 "start": _now(), "status": "running"}
        manifest["stages"][stage] = entry
        mf.save(self.run_dir, manifest)
        ledger = self.layout.ledger(stage)
        ledger.unlink(missing_ok=True)
        before = mf.snapshot(self.run_dir)
        self.log(f"[{stage}] running {nb.name}")
        t0 = time.perf_counter()
        error: Exception | None = None
        try:
            self._execute(nb, executed)
        except Exception as e:  # noqa: BLE001 - reported below with the notebook and cell
            error = e
        seconds = time.perf_counter() - t0
        # a re-run that reuses files it wrote before (an adapter already trained, answers already there) still owns
        # them: they stay among its outputs, so later stages see the same inputs
        kept = {rel: {"sha256": sha256_file(self.run_dir / rel), "size": (self.run_dir / rel).stat().st_size}
                for rel in prev.get("outputs", {}) if (self.run_dir / rel).exists()}
        outputs = dict(sorted({**kept, **mf.written_files(self.run_dir, before)}.items()))
        entry.update({"end": _now(), "seconds": round(seconds, 2), "outputs": outputs})
        if ledger.exists():
            entry["llm"] = read_json(ledger)
        entry["status"] = "failed" if error else "ok"
        mf.save(self.run_dir, manifest)
        if error is not None:
            raise StageFailed(self._failure_message(stage, executed, error)) from None
        self.log(f"[{stage}] ok in {seconds:.1f}s, wrote {len(entry['outputs'])} file(s)")
        return StageOutcome(stage, "ok", seconds)

    def _execute(self, nb: Path, executed: Path) -> None:
        import papermill as pm

        # the notebook reads the config this runner resolved and recorded (overrides applied once, here)
        params = {"config_path": str(self.layout.config), "run_dir": str(self.run_dir), "overrides": {}}
        # notebooks paired by jupytext carry no kernelspec: they run on this Python's kernel
        kernel = self.kernel_name or nbformat.read(nb, as_version=4).metadata.get("kernelspec", {}).get("name")
        tmpdir = Path(tempfile.mkdtemp(prefix="jinstruct-nb-"))
        tmp_out = tmpdir / nb.name
        try:
            os.environ[paths.ROOT_ENV] = str(self.root)  # the kernel resolves the project as this runner did
            pm.execute_notebook(str(nb), str(tmp_out), parameters=params, cwd=str(nb.parent),
                                kernel_name=kernel or "python3", language="python", progress_bar=False, log_output=False)
        finally:
            # executed notebooks are kept with every secret value scrubbed; papermill wrote to a temp folder
            if tmp_out.exists():
                atomic_write_text(executed, mf.redact(tmp_out.read_text(encoding="utf-8"), self.secrets))
            shutil.rmtree(tmpdir, ignore_errors=True)

    def _failure_message(self, stage: str, executed: Path, error: Exception) -> str:
        from papermill.exceptions import PapermillExecutionError

        where = ""
        if isinstance(error, PapermillExecutionError):
            first_line = next((ln for ln in error.source.splitlines() if ln.strip()), "")
            where = (f" in cell {error.cell_index} of the executed notebook (In [{error.exec_count}]:"
                     f" {first_line.strip()[:80]!r}):"
                     f" {error.ename}: {error.evalue}")
        else:
            where = f": {type(error).__name__}: {error}"
        msg = f"stage {stage} failed{where}\n  executed notebook: {executed}"
        self.log(msg)
        return mf.redact(msg, self.secrets)


def run(config_path: str | Path, overrides: list[str] | None = None, stages: str | None = None,
        name: str | None = None, force: bool = False, **kwargs: Any) -> list[StageOutcome]:
    return Runner(config_path, overrides, name=name, force=force, **kwargs).run(stages)
