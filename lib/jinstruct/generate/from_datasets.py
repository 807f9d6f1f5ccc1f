"""Recipe `from_datasets` (arXiv 2309.03412): instruction data made from existing datasets through task templates.

Each source is a Hugging Face dataset (name, config, split, pinned revision, optionally `data_files` inside the
repository) or a local JSON Lines / CSV file, read one row at a time and turned by a named task template
(`templates/from_datasets.yaml`: extractive QA, NLI, sentiment, multiple choice, translation both ways,
summarisation, word definition, and `instruction` for data already in instruction / input / output form) into an
instruction record. A template has several Japanese phrasings; each row gets the one a hash of the seed, the template
and the row's values picks, so the output is a function of the config alone, and two equal rows make equal records
(which the duplicate check then drops) whichever source they come from.

    stats = build(sources, load_templates(), run / "data" / "generated.jsonl", seed=0)

Each record: `id` (fd-<source>-<row>), `instruction`, `input`, `output`, `recipe` ("from_datasets"), `source`
({dataset, config, split, revision, row}: `row` is the row's 0-based position in the split, or in the file;
a local file's `revision` is its sha256), `license` (the source's, as the config states it), `template` and
`phrasing` (which template and which of its phrasings made it), `model` (null: no LLM wrote it).

Per source: `limit` caps the records it gives, `fraction` keeps each row with that probability (a hash of the seed,
the source and the row decides, so the sample is the same on every run and needs no memory). Exact duplicates
(same instruction, input and output, across all sources) are dropped.

Bounded memory, whatever the row count: hub datasets stream through `datasets` (`streaming=True`); local files are
read line by line with the standard library's json and csv readers (by hand rather than with `datasets`' JSON
builder so that a bad row is reported with its line number, which Arrow's block reader does not know); the
exact-duplicate check keeps the digests of the records written so far in a temporary SQLite table (its page cache is
bounded) instead of a Python set that would grow by ~100 bytes a record; records are written to a temporary file
that replaces `generated.jsonl` once complete. Nothing is resumed: the build calls no LLM, so a killed build is
simply run again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jinstruct import paths
from jinstruct.io import DataError, atomic_file, sha256_file

if TYPE_CHECKING:
    from jinstruct.llm import Estimate

RECIPE = "from_datasets"
TEMPLATES_FILE = ("generate", "templates", "from_datasets.yaml")
PROJECT_LICENSE = "Apache-2.0"  # the project's own miniature datasets (data/datasets/)


# ----- templates --------------------------------------------------------------------------------------------------


class Phrasing(BaseModel):
    """One way to ask: Jinja2 templates over the template's slots."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    instruction: str
    input: str = ""
    output: str


class TaskTemplate(BaseModel):
    """A named task template: the slots a row fills and the phrasings that turn them into a record."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = ""
    slots: list[str] = Field(min_length=1)
    optional: list[str] = Field(default_factory=list)
    labels: dict[str, str] | None = None  # canonical label name -> the word that answers it
    phrasings: list[Phrasing] = Field(min_length=1)


def load_templates(extra: str | os.PathLike[str] | None = None) -> dict[str, TaskTemplate]:
    """The shipped templates, plus (added or replacing by name) those of an `extra` YAML file of the same form."""
    templates = _read_templates(paths.package_file(*TEMPLATES_FILE))
    if extra is not None:
        templates |= _read_templates(paths.resolve_path(extra))
    return templates


def _read_templates(path: Path) -> dict[str, TaskTemplate]:
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        line = e.problem_mark.line + 1 if getattr(e, "problem_mark", None) else None
        raise DataError(path, line, None, f"not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise DataError(path, None, None, "expected a mapping of template names to templates")
    out = {}
    for name, body in raw.items():
        try:
            out[str(name)] = TaskTemplate.model_validate(body)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in (name, *first["loc"]))
            raise DataError(path, None, where, first["msg"]) from None
    return out


class _Compiled:
    """A template with its phrasings compiled once (strict: an unknown slot in a phrasing is an error)."""

    def __init__(self, name: str, template: TaskTemplate):
        from jinja2 import Environment, StrictUndefined, TemplateError

        env = Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
        self.name, self.template = name, template
        try:
            self.phrasings = [tuple(env.from_string(t) for t in (p.instruction, p.input, p.output))
                              for p in template.phrasings]
        except TemplateError as e:
            raise ValueError(f"template {name!r}: {e}") from None

    def render(self, k: int, slots: Mapping[str, Any]) -> tuple[str, str, str]:
        return tuple(t.render(slots).strip() for t in self.phrasings[k])  # type: ignore[return-value]


# ----- sources ------------------------------------------------------------------------------------------------------


class Source(BaseModel):
    """One dataset to convert: where its rows come from, the template that maps them, and how many to take."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[\w.-]+$")  # names the records (fd-<name>-<row>) and the card's rows
    template: str
    # a Hugging Face dataset ...
    dataset: str | None = None
    config: str | None = None
    split: str = "train"
    revision: str | None = None  # a commit sha (or tag): required for a hub dataset
    data_files: str | list[str] | dict[str, str | list[str]] | None = None  # files inside the repository
    # ... or a local file (a path from the project root)
    path: str | None = None
    format: Literal["jsonl", "csv"] | None = None  # None: from the file's suffix
    license: str  # the source's licence, as its card states it (e.g. CC-BY-SA-4.0)
    fields: dict[str, str | list[str]] = Field(default_factory=dict)  # slot -> column ("a.b.0"), or a list of them
    label_names: list[str] | None = None  # integer labels -> the template's label names, in order
    limit: int | None = Field(default=None, ge=0)  # at most this many records from this source
    fraction: float = Field(default=1.0, gt=0, le=1)  # keep each row with this probability (seeded hash)

    @model_validator(mode="after")
    def _one_origin(self) -> Source:
        if (self.dataset is None) == (self.path is None):
            raise ValueError(f"source {self.name!r}: give either dataset (Hugging Face) or path (a local file)")
        if self.dataset is not None and not self.revision:
            raise ValueError(f"source {self.name!r}: pin the dataset's revision (a commit sha) for a reproducible build")
        if self.path is not None and self.file_format not in ("jsonl", "csv"):
            raise ValueError(f"source {self.name!r}: {self.path}: a .jsonl or .csv file, or set format")
        return self

    @property
    def file_format(self) -> str:
        if self.format:
            return self.format
        suffix = Path(self.path or "").suffix.lower()
        return {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}.get(suffix, suffix)

    @property
    def label(self) -> str:
        """The dataset as the card and the records name it: the hub name, or the local path as configured."""
        return self.dataset or str(self.path)


def shipped_sources() -> list[Source]:
    """The project's own miniature datasets (`data/datasets/`, Apache-2.0): the offline default."""
    specs = [("nli_ja", "nli", "nli_ja.jsonl"), ("sentiment_ja", "sentiment", "sentiment_ja.jsonl"),
             ("commonsense_ja", "multiple_choice", "commonsense_ja.jsonl"),
             ("reading_ja", "extractive_qa", "reading_ja.jsonl"),
             ("translation_en_ja", "translation_en_ja", "translation_en_ja.jsonl"),
             ("translation_ja_en", "translation_ja_en", "translation_en_ja.jsonl"),
             ("summaries_ja", "summarization", "summaries_ja.jsonl"),
             ("definitions_ja", "definition", "definitions_ja.jsonl")]
    return [Source(name=n, template=t, path=f"data/datasets/{f}", license=PROJECT_LICENSE) for n, t, f in specs]


@dataclass
class _Row:
    index: int  # 0-based position in the split or file
    line: int | None  # the file's line (local files)
    data: Mapping[str, Any]


def _local_rows(path: Path, fmt: str) -> Iterator[_Row]:
    """A local file's rows, one at a time (see the module docstring for why not `datasets`)."""
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    with path.open("r", encoding="utf-8", newline="" if fmt == "csv" else None) as f:
        if fmt == "csv":
            reader = csv.DictReader(f)
            for i, row in enumerate(reader):
                yield _Row(i, reader.line_num, row)
            return
        index = 0
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise DataError(path, line_no, None, f"not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(path, line_no, None, f"expected a JSON object, got {type(obj).__name__}")
            yield _Row(index, line_no, obj)
            index += 1


def _hub_rows(src: Source) -> Iterator[_Row]:
    from datasets import load_dataset

    ds = load_dataset(src.dataset, src.config, split=src.split, revision=src.revision, data_files=src.data_files,
                      streaming=True)
    for i, row in enumerate(ds):
        yield _Row(i, None, row)


def _column(row: Mapping[str, Any], path: str) -> Any:
    """`a.b.0`: key a, then key b, then item 0; KeyError naming the path when it is not there."""
    value: Any = row
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, Sequence) and not isinstance(value, str) and part.lstrip("-").isdigit() \
                and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, (list, tuple)) and (not value or any(_blank(v) for v in value)))


@dataclass
class SourceStats:
    """What one source gave."""

    name: str
    dataset: str
    template: str
    license: str
    revision: str
    rows: int = 0  # rows read
    sampled_out: int = 0  # left out by `fraction`
    blank: int = 0  # a slot (or a rendered field) empty
    duplicates: int = 0  # an exact duplicate of an earlier record
    records: int = 0  # written


@dataclass
class BuildStats:
    """What `build` did, per source and overall."""

    sources: list[SourceStats] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def records(self) -> int:
        return sum(s.records for s in self.sources)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.sources)

    def table(self) -> pd.DataFrame:
        """One row per source (and a total): rows read, left out, duplicates, records written, licence."""
        counts = ["rows", "sampled_out", "blank", "duplicates", "records"]
        columns = ["name", "dataset", "template", "license", "revision", *counts]
        frame = pd.DataFrame([vars(s) for s in self.sources], columns=columns).set_index("name")
        total = frame[counts].sum().to_frame("total").T
        return pd.concat([frame, total]).fillna("")


class _Seen:
    """Digests of the records written so far, in a temporary SQLite table: exact, and bounded in memory."""

    def __init__(self, folder: Path):
        self._dir = tempfile.TemporaryDirectory(dir=folder, prefix=".from_datasets-")
        self._db = sqlite3.connect(Path(self._dir.name) / "seen.sqlite", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE seen (digest BLOB PRIMARY KEY) WITHOUT ROWID")
        self._db.execute("BEGIN")

    def add(self, *parts: str) -> bool:
        """True if (parts) was not seen before (and remember it)."""
        digest = hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=16).digest()
        return self._db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (digest,)).rowcount == 1

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()


def _draw(seed: int, salt: str, name: str, item: int | str) -> int:
    """A 64-bit number decided by (seed, salt, name, item) alone."""
    key = f"{seed}\x00{salt}\x00{name}\x00{item}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


class _Converter:
    """Turns one source's rows into records."""

    def __init__(self, src: Source, template: _Compiled, seed: int):
        self.src, self.template, self.seed = src, template, seed
        t = template.template
        unknown = set(src.fields) - set(t.slots) - set(t.optional)
        if unknown:
            raise ValueError(f"source {src.name!r}: fields {sorted(unknown)} are not slots of template "
                             f"{template.name!r} ({', '.join(t.slots + t.optional)})")

    @cached_property
    def where(self) -> str:
        src = self.src
        if src.path is not None:
            return str(paths.resolve_path(src.path))
        return f"{src.dataset}@{src.revision} ({src.config or 'default'}, {src.split})"

    def _error(self, row: _Row, slot: str | None, problem: str) -> DataError:
        if self.src.path is not None:
            return DataError(self.where, row.line, slot, problem)
        return DataError(self.where, None, slot, f"row {row.index}: {problem}")

    def slots(self, row: _Row) -> dict[str, Any] | None:
        """The template's slots from the row; None when a required one is blank."""
        t = self.template.template
        out: dict[str, Any] = {}
        for slot in (*t.slots, *t.optional):
            column = self.src.fields.get(slot, slot)
            try:
                value = ([_column(row.data, c) for c in column] if isinstance(column, list)
                         else _column(row.data, column))
            except KeyError as e:
                if slot in t.optional and slot not in self.src.fields:
                    value = ""
                else:
                    raise self._error(row, slot, f"the row has no column {e.args[0]!r} "
                                                 f"(map it with fields: {{{slot}: <column>}})") from None
            if slot in t.slots and _blank(value):
                return None
            out[slot] = "" if value is None else value
        if t.labels is not None and "label" in out:
            out["label"] = self.label_word(row, out["label"])
        return out

    def label_word(self, row: _Row, value: Any) -> str:
        labels = self.template.template.labels or {}
        if isinstance(value, bool):
            raise self._error(row, "label", f"a boolean label ({value}) is ambiguous: map it with label_names")
        if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
            names = self.src.label_names
            if names is None:
                raise self._error(row, "label", f"integer label {value}: give the source's label_names "
                                                f"(its names in order, among {', '.join(labels)})")
            if not 0 <= int(value) < len(names):
                raise self._error(row, "label", f"label {value} is out of range for label_names {names}")
            value = names[int(value)]
        if value in labels:
            return labels[value]
        if value in labels.values():
            return str(value)
        raise self._error(row, "label", f"label {value!r} is none of {', '.join(labels)}")

    def record(self, row: _Row, revision: str) -> dict[str, Any] | None:
        slots = self.slots(row)
        if slots is None:
            return None
        content = json.dumps(slots, ensure_ascii=False, sort_keys=True, default=str)
        k = _draw(self.seed, "phrasing", self.template.name, content) % len(self.template.phrasings)
        try:
            instruction, input_, output = self.template.render(k, slots)
        except Exception as e:  # noqa: BLE001 - jinja's errors (undefined slot, bad index) named with the row
            raise self._error(row, None, f"template {self.template.name!r} phrasing {k}: {e}") from None
        if not instruction or not output:
            return None
        src = self.src
        return {"id": f"fd-{src.name}-{row.index:07d}", "instruction": instruction, "input": input_,
                "output": output, "recipe": RECIPE,
                "source": {"dataset": src.label, "config": src.config, "split": src.split if src.dataset else None,
                           "revision": revision, "row": row.index},
                "license": src.license, "template": self.template.name, "phrasing": k, "model": None}


def iter_rows(src: Source) -> Iterator[_Row]:
    """A source's rows in order, streamed."""
    if src.path is not None:
        return _local_rows(paths.resolve_path(src.path), src.file_format)
    return _hub_rows(src)


def build(
    sources: Sequence[Source],
    templates: Mapping[str, TaskTemplate],
    out_path: str | os.PathLike[str],
    *,
    seed: int = 0,
    dedup: bool = True,
    progress: bool = True,
) -> BuildStats:
    """Convert every source, in order, into `out_path` (replaced atomically once complete); see the module docstring."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique: {names}")
    compiled = {}
    for src in sources:
        if src.template not in templates:
            raise ValueError(f"source {src.name!r}: no template {src.template!r} (have: {', '.join(templates)})")
        compiled.setdefault(src.template, _Compiled(src.template, templates[src.template]))
    converters = [_Converter(src, compiled[src.template], seed) for src in sources]

    stats = BuildStats()
    t0 = time.perf_counter()
    seen = _Seen(out_path.parent) if dedup else None
    try:
        with atomic_file(out_path) as out:
            for conv in converters:
                stats.sources.append(_convert(conv, out, seen, seed, progress))
    finally:
        if seen is not None:
            seen.close()
    stats.wall_s = time.perf_counter() - t0
    return stats


def _convert(conv: _Converter, out: Any, seen: _Seen | None, seed: int, progress: bool) -> SourceStats:
    src = conv.src
    revision = f"sha256:{sha256_file(paths.resolve_path(src.path))}" if src.path is not None else str(src.revision)
    st = SourceStats(src.name, src.label, src.template, src.license, revision)
    if src.limit == 0:
        return st
    threshold = int(src.fraction * 2**64)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=src.name, unit="row", total=None, dynamic_ncols=True, mininterval=1.0)
    try:
        for row in iter_rows(src):
            st.rows += 1
            if bar is not None and st.rows % 1000 == 0:
                bar.update(1000)
            if src.fraction < 1 and _draw(seed, "sample", src.name, row.index) >= threshold:
                st.sampled_out += 1
                continue
            rec = conv.record(row, revision)
            if rec is None:
                st.blank += 1
                continue
            if seen is not None and not seen.add(rec["instruction"], rec["input"], rec["output"]):
                st.duplicates += 1
                continue
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            st.records += 1
            if src.limit is not None and st.records >= src.limit:
                break
    finally:
        if bar is not None:
            bar.update(st.rows - bar.n)
            bar.close()
    return st


def _no_calls() -> Estimate:
    from jinstruct.llm import Estimate

    return Estimate(model="(none: from_datasets calls no LLM)", requests=0, cached=0, to_send=0, prompt_tokens=0,
                    completion_tokens=0, max_completion_tokens=0, cost_usd=0.0, max_cost_usd=0.0, priced=True)


class FromDatasets:
    """Recipe `from_datasets`: existing datasets turned into instruction records by task templates (2309.03412)."""

    name = "from_datasets"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        sources: list[Source] = Field(default_factory=shipped_sources, min_length=1)  # default: data/datasets/
        templates: str | None = None  # a YAML file of extra (or replacing) templates, same form as the shipped one
        dedup: bool = True  # drop exact duplicates (instruction, input and output) across all sources

    @staticmethod
    def describe(cfg: FromDatasets.Config) -> str:
        parts = [f"{s.name} ({s.template}{f', <= {s.limit:,}' if s.limit is not None else ''})" for s in cfg.sources]
        return f"convert {len(cfg.sources)} dataset(s) with task templates: " + ", ".join(parts)

    @staticmethod
    def estimate(cfg: FromDatasets.Config, endpoint: str, stage: Any) -> Estimate:
        return _no_calls()

    @staticmethod
    def run(cfg: FromDatasets.Config, endpoint: str, stage: Any) -> BuildStats:
        return build(cfg.sources, load_templates(cfg.templates), stage.layout.generated, seed=stage.cfg.seed,
                     dedup=cfg.dedup)
