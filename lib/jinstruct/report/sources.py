"""What a report is drawn from: run folders and sweep folders, each run with its grid coordinates.

A sweep folder is known by its `sweep.json` (written by `jinstruct.run.sweep`), a run folder by its
`manifest.json`. A run given on its own has one coordinate, `run`, its name. Axes keep the sweep file's order of
values, which the figures follow (1K, 5K, 52K left to right).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jinstruct.formats.layout import RunLayout, SweepLayout
from jinstruct.formats.sweep import Comparison, load_sweep_record
from jinstruct.io import DataError
from jinstruct.paths import resolve_path

RUN_AXIS = "run"
# the axes the paper's figures are drawn along, by name (a sweep file names its axes so)
BASE, SOURCE, SIZE = "base", "source", "size"


@dataclass(frozen=True)
class RunRef:
    name: str
    path: Path
    coordinates: dict[str, str]
    status: str | None = None  # the sweep's record of it; None for a run given on its own
    seconds: float | None = None  # wall time the sweep measured
    from_run: str | None = None

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.path)


@dataclass
class Sources:
    runs: list[RunRef]
    axes: dict[str, list[str]]  # axis -> values in order
    comparisons: list[Comparison] = field(default_factory=list)
    sweeps: list[Path] = field(default_factory=list)

    def label(self, run: RunRef) -> str:
        """The run's cell in the grid, e.g. `llm-jp-13b / self_instruct / 5K`, leaving out axes with one value (its
        name when given on its own)."""
        varying = [a for a, values in self.axes.items() if len(values) > 1] or list(self.axes)
        values = [run.coordinates.get(a, "") for a in varying]
        return " / ".join(v for v in values if v) or run.name


def _text(value: object) -> str:
    return str(value)


def open_sources(paths: Sequence[str | os.PathLike[str]]) -> Sources:
    """Runs and sweeps named on the command line (or in notebook 09's parameters), in that order."""
    if not paths:
        raise ValueError("no runs or sweeps given")
    runs: list[RunRef] = []
    axes: dict[str, list[str]] = {}
    comparisons: list[Comparison] = []
    sweeps: list[Path] = []
    for given in paths:
        path = resolve_path(given)
        sweep = SweepLayout(path)
        if sweep.record.exists():
            record = load_sweep_record(sweep.record)
            sweeps.append(path)
            for axis, values in record.axes.items():
                known = axes.setdefault(axis, [])
                known.extend(v for v in map(_text, values) if v not in known)
            comparisons.extend(c for c in record.compare if c not in comparisons)
            runs.extend(RunRef(name=r.name, path=sweep.run(r.name).root,
                               coordinates={k: _text(v) for k, v in r.coordinates.items()}, status=r.status,
                               seconds=r.seconds, from_run=r.from_run) for r in record.runs)
        elif RunLayout(path).manifest.exists():
            axes.setdefault(RUN_AXIS, []).append(path.name)
            runs.append(RunRef(name=path.name, path=path, coordinates={RUN_AXIS: path.name}))
        else:
            raise DataError(path, None, None, "neither a sweep folder (sweep.json) nor a run folder (manifest.json)")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"a run is given twice: {sorted({n for n in names if names.count(n) > 1})}")
    return Sources(runs=runs, axes=axes, comparisons=comparisons, sweeps=sweeps)


def default_out(sources: Sources, given: Sequence[str | os.PathLike[str]]) -> Path:
    """Where figures go without `--out`: a single sweep's or run's `figures/`, else the project's `figures/`."""
    if len(given) == 1:
        path = resolve_path(given[0])
        return SweepLayout(path).figures if sources.sweeps else RunLayout(path).figures
    return resolve_path("figures")
