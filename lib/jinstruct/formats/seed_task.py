"""Seed tasks in self-instruct's format: the contract every recipe and notebook 01 reads and writes.

A seed task is one JSON line: `id, name, instruction, instances[{input, output}], is_classification`, read as
self-instruct wrote it. `load_seed_tasks` checks every line and names the file, the line and the field of the
first problem (a missing output, an empty instruction, `is_classification: "yes"`, a repeated id, an unknown key).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from jinstruct.io import DataError, iter_jsonl, validation_error, write_jsonl

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
