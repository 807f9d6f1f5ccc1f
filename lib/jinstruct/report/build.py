"""Every figure that applies to some runs, each with the table it is drawn from, and `python -m jinstruct figures`.

    python -m jinstruct figures runs/tiny-paper-grid                 # into runs/tiny-paper-grid/figures/
    python -m jinstruct figures runs/a runs/b --out figures/         # several runs or sweeps together

A figure applies when its data exists: the data-size curve needs a `size` axis with two sizes or more, the
comparisons a `compare` (or `source`) axis, the ratings a run judged on all pairs of three or more models,
the agreement figure notebook 07's summary, the task figure notebook 08's. Each is saved as `<name>.pdf` and
`<name>.png` with `<name>.csv` beside it; the summary goes beside them as `summary.csv` and `summary.md`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from jinstruct.io import DataError, atomic_write_text
from jinstruct.plotting import save_figures
from jinstruct.report import figures as fg
from jinstruct.report import tables as tb
from jinstruct.report.sources import default_out
from jinstruct.report.summary import Report, summary_markdown


@dataclass
class Drawn:
    name: str
    figure: Figure
    table: pd.DataFrame
    what: str  # one line on what it shows


def _win_rates(r: Report) -> Drawn | None:
    table = tb.win_rates(r)
    if table.empty:
        return None
    return Drawn("win_rates", fg.win_rate_figure(table, r.axes), table,
                 "adjusted win rate against the baseline per base model and data source, 95% CI")


def _size_curve(r: Report) -> Drawn | None:
    table = tb.win_rates(r)
    sizes = r.axes.get(fg.SIZE, [])
    if table.empty or len(sizes) < 2:
        return None
    return Drawn("size_curve", fg.size_curve_figure(table, r.axes), table,
                 "adjusted win rate over the data size, one line per data source")


def _significance(r: Report) -> Drawn | None:
    table = r.significance()
    if table.empty or table["difference"].isna().all():
        return None
    return Drawn("significance", fg.significance_figure(table), table,
                 "difference of adjusted win rates of each compared pair, paired bootstrap 95% CI")


def _win_tie_loss(r: Report) -> Drawn | None:
    table = tb.category_counts(r)
    if table.empty:
        return None
    return Drawn("win_tie_loss_by_category", fg.category_win_tie_loss_figure(table), table,
                 "shares of games won, tied and lost against the baseline per category")


def _scores(r: Report) -> Drawn | None:
    table = tb.category_scores(r)
    if table.empty:
        return None
    return Drawn("scores_by_category", fg.category_score_figure(table), table,
                 "mean 1-10 single-answer score per category and cell")


def _diagnostics(r: Report) -> Drawn | None:
    games = tb.judge_games(r)
    if games.empty:
        return None
    return Drawn("judge_diagnostics", fg.judge_diagnostics_figure(games, tb.diagnostics(games)), games,
                 "position consistency, first-position share and answer length against the verdict")


def _ratings(r: Report) -> Drawn | None:
    table = tb.ratings(r)
    if table.empty:
        return None
    return Drawn("ratings", fg.ratings_figure(table), table, "Bradley-Terry ratings (Elo scale) with 95% CI")


def _agreement(r: Report) -> Drawn | None:
    table = tb.agreement(r)
    if table.empty:
        return None
    return Drawn("agreement", fg.agreement_figure(table), table, "judge-human and human-human agreement, 95% CI")


def _tasks(r: Report) -> Drawn | None:
    table = tb.tasks(r)
    if table.empty:
        return None
    return Drawn("tasks", fg.tasks_figure(table), table, "task-evaluation results per task and model, 95% CI")


FIGURES: list[Callable[[Report], Drawn | None]] = [
    _win_rates, _size_curve, _significance, _win_tie_loss, _scores, _diagnostics, _ratings, _agreement, _tasks]


def draw(report: Report) -> list[Drawn]:
    """Every figure that applies to the report's runs, in the paper's order."""
    return [d for make in FIGURES if (d := make(report)) is not None]


def save_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """A figure's table as CSV (UTF-8), atomically."""
    return atomic_write_text(path, table.to_csv(index=False))


def save_drawn(drawn: Drawn, out: Path, prefix: str = "") -> list[Path]:
    """`<out>/<prefix><name>.pdf`, `.png` and `.csv`."""
    stem = out / f"{prefix}{drawn.name}"
    return [*save_figures(drawn.figure, stem), save_table(drawn.table, stem.with_name(stem.name + ".csv"))]


def save_report(report: Report, folder: str | os.PathLike[str], drawn: list[Drawn] | None = None,
                prefix: str = "") -> list[Drawn]:
    """Save the figures (drawn now unless given) and the summary (`summary.csv`, `summary.md`) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = report.summary()
    save_table(summary, folder / f"{prefix}summary.csv")
    atomic_write_text(folder / f"{prefix}summary.md",
                      summary_markdown(summary, report.significance(), list(report.axes)))
    drawn = draw(report) if drawn is None else drawn
    for d in drawn:
        save_drawn(d, folder, prefix)
    return drawn


def write_report(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str] | None = None,
                 rounds: int | None = None) -> tuple[Path, list[Drawn]]:
    """Draw and save every figure that applies, and the summary beside them; returns the folder and the figures."""
    report = Report.open(paths, rounds=rounds)
    folder = Path(out) if out is not None else default_out(report.sources, paths)
    return folder, save_report(report, folder)


def _figures(args: argparse.Namespace) -> int:
    try:
        folder, drawn = write_report(args.sources, args.out, args.rounds)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for d in drawn:
        print(f"{folder / d.name}.pdf|png|csv  {d.what}")
    print(f"{folder / 'summary.md'}  one row per run and model")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("figures", help="the paper's tables and figures from runs or sweeps")
    p.add_argument("sources", nargs="+", metavar="RUN_OR_SWEEP", help="run folders (runs/NAME) or sweep folders")
    p.add_argument("--out", help="where to write (default: the sweep's or run's figures/, or figures/ for several)")
    p.add_argument("--rounds", type=int, help="bootstrap rounds (default: each run's judge.bootstrap_rounds)")
    p.set_defaults(func=_figures)
