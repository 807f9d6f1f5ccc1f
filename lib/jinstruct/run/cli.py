"""`python -m jinstruct run` and `sweep`: the pipeline's notebooks in order, or a grid of runs."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from jinstruct.run.config import ConfigError
from jinstruct.run.lock import RunLocked
from jinstruct.run.runner import StageFailed, run
from jinstruct.formats.layout import SweepLayout
from jinstruct.run.sweep import execute, load_sweep, status_table, sweep_dir


def _exit_on_sigterm() -> None:
    """SIGTERM ends the runner as Ctrl-C does: the kernel is shut down and the run lock released on the way out."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def _run(args: argparse.Namespace) -> int:
    _exit_on_sigterm()
    try:
        run(args.config, args.set, stages=args.stages, name=args.name, force=args.force,
            retry_errors=args.retry_errors, reset_budget=args.reset_budget,
            **({"runs_dir": Path(args.runs_dir)} if args.runs_dir else {}),
            **({"notebooks_dir": Path(args.notebooks)} if args.notebooks else {}))
    except (ConfigError, StageFailed, RunLocked, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _sweep(args: argparse.Namespace) -> int:
    try:
        spec = load_sweep(args.file)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    runs_dir = Path(args.runs_dir) if args.runs_dir else None
    jobs = args.jobs if args.jobs is not None else (None if args.executor == "slurm" else 1)
    try:
        runs = execute(spec, jobs=jobs, force=args.force, runs_dir=runs_dir, executor=args.executor)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(status_table(runs))
    layout = SweepLayout(sweep_dir(spec, runs_dir))
    if layout.summary_md.exists():
        print(layout.summary_md.read_text(encoding="utf-8"))
        print(f"summary: {layout.summary_csv}  (figures: python -m jinstruct figures {layout.root})")
    return 0 if all(r.status == "ok" for r in runs) else 1


def register_run(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run the numbered notebooks in order with papermill")
    r.add_argument("--config", required=True, help="a YAML file under configs/")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value by dotted key, e.g. generate.self_instruct.target=5000 (repeatable)")
    r.add_argument("--stages", help="which notebooks: 01-06, 02, 01,03 (default: the config's `stages`, else all)")
    r.add_argument("--name", help="run name (default: the config's name); results land in runs/<name>/")
    r.add_argument("--force", action="store_true", help="re-run stages even when unchanged")
    r.add_argument("--retry-errors", action="store_true",
                   help="re-run the stages that ended 'ok with N errors', re-sending the judgments recorded as errors")
    r.add_argument("--reset-budget", action="store_true",
                   help="give each stage run a fresh budget_usd (by default a budget counts every attempt)")
    r.add_argument("--runs-dir", help="where run folders go (default: <project>/runs/)")
    r.add_argument("--notebooks", help="folder of numbered notebooks (default: <project>/notebooks/)")
    r.set_defaults(func=_run)


def register_sweep(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sweep", help="expand a grid of overrides into runs and execute them")
    s.add_argument("file", help="a sweep YAML (see jinstruct.run.sweep)")
    s.add_argument("--jobs", type=int, help="runs at a time (default: 1 on this machine, all as Slurm jobs)")
    s.add_argument("--executor", choices=["local", "slurm"], default="local",
                   help="local: processes on this machine; slurm: one Slurm job per run through submitit, "
                        "with the sweep file's slurm: section")
    s.add_argument("--force", action="store_true")
    s.add_argument("--runs-dir", help="where the sweep's folder goes (default: <project>/runs/)")
    s.set_defaults(func=_sweep)
