"""Reading and writing the run folder's files: JSON Lines with clear errors, atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def _where(path: str, line: int | None, field: str | None, problem: str) -> str:
    where = path + (f", line {line}" if line is not None else "")
    what = f"field '{field}': " if field else ""
    return f"{where}: {what}{problem}"


class DataError(ValueError):
    """Bad input: the message names the file, the line and the field."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, field: str | None, problem: str):
        self.path, self.line, self.field, self.problem = str(path), line, field, problem
        super().__init__(_where(self.path, line, field, problem))


class DataWarning(UserWarning):
    """Input that is read, but probably not as its author meant (a spreadsheet formula kept as text, a line cut off
    by a kill): the message names the file, the line and the field."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, field: str | None, problem: str):
        self.path, self.line, self.field, self.problem = str(path), line, field, problem
        super().__init__(_where(self.path, line, field, problem))


def _current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (/proc), else set and restored at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` through a temporary file and a rename, so readers never see half a file.

    The file gets the mode a plain `open(path, "w")` would give it: an existing file's mode, else 0666 less the
    umask (a temporary file alone would be 0600, unreadable by the rest of a group sharing the run folder)."""
    path = Path(path)
    with atomic_file(path, "wb") as f:
        f.write(data)
    return path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], mode: Literal["w", "wb"] = "w") -> Iterator[Any]:
    """A file written in place of `path` through a temporary file and a rename (text in UTF-8, or bytes with "wb"):
    readers see the old file or the whole new one, and an error leaves the old one. Its mode is what a plain
    `open(path, "w")` would give (an existing file's, else 0666 less the umask; a temporary file alone is 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        perms = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        perms = 0o666 & ~_current_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, perms)
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_lines(path: str | os.PathLike[str]) -> Iterator[Callable[[Any], None]]:
    """Write a JSON Lines file one object at a time, atomically (see `atomic_file`).

        with atomic_lines(path) as write:
            for record in records:
                write(record)
    """
    with atomic_file(path) as f:
        yield lambda obj: f.write(dumps(obj) + "\n")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def dumps(obj: Any) -> str:
    """One JSON line, Japanese kept readable."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON file (UTF-8, a byte-order mark accepted)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, None, f"invalid JSON: {e.msg}") from None


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Any]) -> Path:
    """Write all records at once, atomically."""
    return atomic_write_text(path, "".join(dumps(r) + "\n" for r in records))


def append_jsonl(path: str | os.PathLike[str], records: Iterable[Any]) -> None:
    """Append records and fsync: for append-only logs that a killed run resumes from.

    A line cut off by a kill is dropped by `read_jsonl(..., tolerate_torn_tail=True)`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for r in records:
            f.write(dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())


def iter_jsonl(path: str | os.PathLike[str], tolerate_torn_tail: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-empty line; a bad line is a DataError naming it. A UTF-8 byte-order
    mark (Windows editors write one) is accepted."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    with path.open("rb") as f:
        lines = f.read().removeprefix(b"\xef\xbb\xbf").split(b"\n")
    torn = tolerate_torn_tail and lines and lines[-1] != b""
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            if torn and i == len(lines):
                return
            raise DataError(path, i, None, f"not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise DataError(path, i, None, f"expected a JSON object, got {type(obj).__name__}")
        yield i, obj


def read_jsonl(path: str | os.PathLike[str], tolerate_torn_tail: bool = False) -> list[dict[str, Any]]:
    return [obj for _, obj in iter_jsonl(path, tolerate_torn_tail)]


def validation_error(path: str | os.PathLike[str], line: int | None, err: ValidationError) -> DataError:
    """Turn pydantic's error into one that names the file, the line and the first bad field."""
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    return DataError(path, line, field, first["msg"])


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
