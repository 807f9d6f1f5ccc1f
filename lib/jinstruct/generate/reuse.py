"""Smaller data sizes from a larger run's data: the first N records of its `data/generated.jsonl`, never regenerated.

The paper trains on 1K, 5K and 52K instructions of one source. Generating 1K and 5K again would pay for what the
52K run already made, and would not even give a nested sample. With `generate.from_run: <run>`, stage 02 copies the
first N records of that run's generated data (N: the recipe's size, `self_instruct.target` or
`translate.english_limit`) into this run and calls no LLM. For self-instruct the prefix is exactly what a run with
the smaller target keeps, since generation is in request order and a request's demonstrations depend only on its
index (and on earlier records); for the translated baseline it is the first N records that translated.

`from_run` is a run name, found beside this run (the folders of one sweep sit together), or a path to a run folder.
The source must have made the same recipe and at least N records; anything else is an error that names the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from jinstruct.formats.layout import RunLayout
from jinstruct.generate.self_instruct import load_generated
from jinstruct.io import DataError, sha256_file, write_jsonl
from jinstruct.paths import resolve_path


@dataclass(frozen=True)
class PrefixStats:
    """What `take_prefix` copied."""

    source: Path  # the source run's generated.jsonl
    source_sha256: str
    source_records: int
    taken: int

    def table(self) -> pd.DataFrame:
        rows = {"source": str(self.source), "source sha256": self.source_sha256[:12],
                "source records": self.source_records, "records taken": self.taken, "requests sent": 0}
        return pd.DataFrame({"value": list(rows.values())}, index=pd.Index(list(rows), name="what"))

    def __str__(self) -> str:
        return f"took the first {self.taken:,} of {self.source_records:,} records of {self.source} (no LLM call)"


def source_run(from_run: str | os.PathLike[str], run_dir: str | os.PathLike[str]) -> Path:
    """The source run's folder: a bare name is a sibling of `run_dir`; anything with a slash resolves from the
    project root (or is absolute)."""
    text = str(from_run)
    if "/" not in text and os.sep not in text:
        return Path(run_dir).resolve().parent / text
    return resolve_path(text)


def take_prefix(source: str | os.PathLike[str], out: str | os.PathLike[str], n: int | None,
                recipe: str) -> PrefixStats:
    """Write the first `n` records (all when None) of the source run's generated data to `out`."""
    src_run = Path(source)
    path = RunLayout(src_run).generated
    if not path.exists():
        raise DataError(path, None, None, f"generate.from_run: run {src_run.name!r} has no generated data; "
                                          "run its stage 02 first (a sweep runs it before this run)")
    records = load_generated(path)
    for i, r in enumerate(records[: n if n is not None else len(records)], start=1):
        if r.get("recipe") != recipe:
            raise DataError(path, i, "recipe", f"generate.from_run: the source made {r.get('recipe')!r} records, "
                                               f"this run's recipe is {recipe!r}")
    if n is not None and len(records) < n:
        raise DataError(path, None, None, f"generate.from_run: {len(records):,} records, fewer than the "
                                          f"{n:,} this run takes; the source must be the larger run")
    out = Path(out)
    own_state = out.with_name(out.stem + ".state.json")
    if own_state.exists():
        raise DataError(own_state, None, None, "generate.from_run: this run generated data of its own (its checkpoint "
                                               "is here); it is never overwritten: use another run name")
    taken = records if n is None else records[:n]
    write_jsonl(out, taken)
    return PrefixStats(source=path, source_sha256=sha256_file(path), source_records=len(records), taken=len(taken))
