"""Seed tasks in self-instruct's format, and the English seeds the Japanese ones start from.

A seed task is one JSON line: `id, name, instruction, instances[{input, output}], is_classification`, read as
self-instruct wrote it. `load_seed_tasks` checks every line and names the file, the line and the field of the
first problem (a missing output, an empty instruction, `is_classification: "yes"`, a repeated id, an unknown key).

English seeds come from one of two places, chosen by the caller and never swapped behind their back:
- `"official"`: the 175 seed tasks of self-instruct (Wang et al., 2023), downloaded once from GitHub into the
  cache and checked against a pinned checksum and line count;
- `"sample"`: a 12-task English sample written for this project (`data/seeds/en_seed_sample.jsonl`), which
  works offline and is what the tests and the tiny config use.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from jinstruct import paths
from jinstruct.download import ChecksumError, DownloadError, fetch_checked  # noqa: F401 (errors re-exported)
from jinstruct.io import DataError, iter_jsonl, validation_error, write_jsonl
from jinstruct.paths import DATA_DIR

SEEDS_DIR = DATA_DIR / "seeds"
ENGLISH_SAMPLE = SEEDS_DIR / "en_seed_sample.jsonl"
JAPANESE_SEEDS = SEEDS_DIR / "ja_seed_tasks.jsonl"

OFFICIAL_URL = "https://raw.githubusercontent.com/yizhongw/self-instruct/main/data/seed_tasks.jsonl"
OFFICIAL_LINES = 175
# UNVERIFIED PIN. It could not be taken from a download (no internet where this was written); it comes from
# stored copies of public repositories:
# - a copy of self-instruct's `data/seed_tasks.jsonl` in a derivative repository (zhixhan/BigFIles) is kept in
#   git-lfs, whose pointer gives sha256 bad6475845f2...5882 and a size of 111109 bytes;
# - the same 175 tasks as kept by tatsu-lab/stanford_alpaca (`seed_tasks.jsonl`, ASCII, one task per line) are
#   110934 characters: exactly 175 fewer, one per line. That copy was most likely saved with CRLF line
#   endings, and GitHub's original has LF.
# So the checksum is taken over the file with every line ending written as CRLF (`content_sha256`): the same for
# an LF and a CRLF copy, different for any other change. The line count (175) and the loader check the rest. If
# the pin proves wrong, pass the right one as `sha256=` (or `sha256=None` to rely on those checks alone).
OFFICIAL_SHA256 = "bad6475845f217ee94627ed1168fb1d96999f03d8d913e8ae034e86e2f4d5882"
OFFICIAL_CACHE_NAME = "self_instruct_seed_tasks.jsonl"


class Instance(BaseModel):
    """One worked example of a task: the input (often empty) and the expected output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str
    output: str


class SeedTask(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    instruction: str
    instances: list[Instance] = Field(min_length=1)
    is_classification: StrictBool

    @field_validator("id", "name", "instruction")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    def record(self) -> dict[str, object]:
        """The JSON object self-instruct writes, keys in its order."""
        return self.model_dump(mode="json")




def load_seed_tasks(path: str | os.PathLike[str]) -> list[SeedTask]:
    """Read a seed task file; a bad line is a DataError naming the file, the line and the field."""
    tasks: list[SeedTask] = []
    first_line: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        try:
            task = SeedTask.model_validate(obj)
        except ValidationError as e:
            raise validation_error(path, line, e) from None
        if task.id in first_line:
            raise DataError(path, line, "id", f"duplicate id {task.id!r} (first on line {first_line[task.id]})")
        first_line[task.id] = line
        tasks.append(task)
    if not tasks:
        raise DataError(path, None, None, "no seed tasks in the file")
    return tasks


def write_seed_tasks(path: str | os.PathLike[str], tasks: Iterable[SeedTask]) -> Path:
    """Write seed tasks as JSON Lines (Japanese kept readable), atomically; ids must be unique."""
    tasks = list(tasks)
    seen: set[str] = set()
    for t in tasks:
        if t.id in seen:
            raise ValueError(f"duplicate seed task id {t.id!r}")
        seen.add(t.id)
    return write_jsonl(path, (t.record() for t in tasks))


def content_sha256(data: bytes) -> str:
    """sha256 of `data` with every line ending written as CRLF, so LF and CRLF copies of a file hash alike."""
    return hashlib.sha256(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")).hexdigest()


def _verify(data: bytes, source: str, sha256: str | None, lines: int | None) -> None:
    if sha256 is not None and (got := content_sha256(data)) != sha256:
        raise ChecksumError(
            f"{source}: checksum mismatch: expected sha256 {sha256}, got {got} ({len(data)} bytes). "
            "The file is not the pinned self-instruct seed set (changed upstream, or a proxy altered it). "
            "Check it, then pass sha256=<the new value> to accept it, or use the English sample (source='sample')."
        )
    if lines is not None and (n := len([ln for ln in data.splitlines() if ln.strip()])) != lines:
        raise ChecksumError(f"{source}: expected {lines} seed tasks (one per line), found {n}")


def fetch_official_seeds(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    url: str = OFFICIAL_URL,
    sha256: str | None = OFFICIAL_SHA256,
    expected_lines: int | None = OFFICIAL_LINES,
    timeout_s: float = 60.0,
    http: httpx.Client | None = None,
) -> Path:
    """The official 175 English seed tasks as a verified local file, downloaded once into `cache_dir`.

    A file already in the cache (downloaded before, or put there by hand where there is no internet) is
    checked the same way as a download. A download that fails the checks is not kept. `http` is an httpx
    client to use instead of a default one (a proxy, custom certificates).
    """
    folder = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "seeds"
    fresh = not (folder / OFFICIAL_CACHE_NAME).exists()
    target = fetch_checked(url, folder / OFFICIAL_CACHE_NAME,
                           lambda data, source: _verify(data, source, sha256, expected_lines),
                           what="the official seed tasks", timeout_s=timeout_s, http=http)
    try:
        load_seed_tasks(target)
    except DataError:
        if fresh:  # a bad download is not kept; a file someone put there is theirs
            target.unlink()
        raise
    return target


def english_seeds(
    source: Literal["sample", "official"] = "sample",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    http: httpx.Client | None = None,
) -> list[SeedTask]:
    """The English seed tasks from `source` (the first `limit` of them).

    "official" downloads (or reads from the cache) the 175 self-instruct seeds and fails loudly when it
    cannot: it never falls back to the sample. "sample" is the small English set shipped with the project.
    """
    if source == "sample":
        tasks = load_seed_tasks(ENGLISH_SAMPLE)
    elif source == "official":
        tasks = load_seed_tasks(fetch_official_seeds(cache_dir, http=http))
    else:
        raise ValueError(f"unknown English seed source {source!r}: use 'sample' or 'official'")
    return tasks[:limit] if limit is not None else tasks


def task_fields(task: SeedTask) -> Iterator[tuple[str, str]]:
    """(field path, text) for the instruction and each instance's input and output, in sheet order."""
    yield "instruction", task.instruction
    for i, inst in enumerate(task.instances):
        yield f"instances.{i}.input", inst.input
        yield f"instances.{i}.output", inst.output


def with_fields(task: SeedTask, fields: Mapping[str, str]) -> SeedTask:
    """`task` with the texts in `fields` (field path -> text, paths as in `task_fields`) replaced, validated."""
    texts = dict(task_fields(task))
    unknown = set(fields) - set(texts)
    if unknown:
        raise KeyError(f"task {task.id!r} has no field(s) {sorted(unknown)}")
    texts.update(fields)
    instances = [
        {"input": texts[f"instances.{i}.input"], "output": texts[f"instances.{i}.output"]}
        for i in range(len(task.instances))
    ]
    return SeedTask.model_validate({**task.record(), "instruction": texts["instruction"], "instances": instances})


def kind_counts(tasks: Sequence[SeedTask]) -> dict[str, int]:
    """How many tasks are classification, have an empty input everywhere, or have an input (self-instruct's split)."""
    classification = sum(t.is_classification for t in tasks)
    empty = sum(not t.is_classification and all(not i.input.strip() for i in t.instances) for t in tasks)
    return {"tasks": len(tasks), "classification": classification, "empty input": empty,
            "with input": len(tasks) - classification - empty}


def by_id(tasks: Sequence[SeedTask]) -> dict[str, SeedTask]:
    """Tasks keyed by id (ids are unique in a loaded file)."""
    return {t.id: t for t in tasks}
