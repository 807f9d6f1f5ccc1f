"""`runs/<sweep>/sweep.json`: what a sweep ran, in the words the reports read.

The sweep command (`jinstruct.run.sweep`) writes it when it starts and after each run ends; the reports
(`jinstruct.report`) read it to find the runs and their grid coordinates, so neither needs the other's code.

    {"name": "tiny-paper-grid", "config": "configs/tiny.yaml", "executor": "local",
     "axes": {"base": ["tiny"], "source": ["self_instruct", "translated"], "size": ["8", "16"]},
     "compare": [{"a": {"source": "self_instruct"}, "b": {"source": "translated"}}],
     "runs": [{"name": "tiny-paper-grid-01", "coordinates": {"base": "tiny", "source": "self_instruct", "size": "8"},
               "overrides": {...}, "from_run": "tiny-paper-grid-02", "status": "ok", "seconds": 61.2,
               "message": "...", "job_id": null}, ...]}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jinstruct.io import DataError, read_json, validation_error, write_json

Status = Literal["pending", "running", "ok", "failed"]


class Comparison(BaseModel):
    """Two sets of grid cells to compare: every cell matching `a` against the cell matching `b` that agrees with it
    on every axis neither names (e.g. a={source: self_instruct}, b={source: translated}: the same base and size)."""

    model_config = ConfigDict(extra="forbid")

    a: dict[str, Any]
    b: dict[str, Any]

    def label(self) -> str:
        def side(c: dict[str, Any]) -> str:
            return ", ".join(f"{k}={v}" for k, v in c.items())

        return f"{side(self.a)} vs {side(self.b)}"


class SweepRunRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    coordinates: dict[str, Any]  # axis -> the value (or label) of this run
    overrides: dict[str, Any] = Field(default_factory=dict)
    from_run: str | None = None  # the run whose generated data this run takes a prefix of
    status: Status = "pending"
    seconds: float = 0.0
    message: str = ""
    job_id: str | None = None  # the Slurm (or submitit) job


class SweepRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    config: str
    executor: str = "local"
    axes: dict[str, list[Any]]  # axis -> its values in the sweep file's order
    compare: list[Comparison] = Field(default_factory=list)
    runs: list[SweepRunRecord]


def load_sweep_record(path: str | os.PathLike[str]) -> SweepRecord:
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, None, "file not found (not a sweep folder?)")
    try:
        return SweepRecord.model_validate(read_json(path))
    except ValidationError as e:
        raise validation_error(path, None, e) from None


def write_sweep_record(path: str | os.PathLike[str], record: SweepRecord) -> Path:
    return write_json(path, record)
