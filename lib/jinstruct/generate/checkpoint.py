"""A JSON Lines output written one line per input item, checkpointed so that a killed sub-stage resumes where it was.

The sub-stages of the `human_instructions` recipe each map a streamed input to a streamed output, one line per item,
in input order. `CheckpointedLines` appends the lines and, at most every `flush_every_s` seconds, fsyncs them and
writes an atomic checkpoint `<name>.state.json`: the settings the output was made with, how many lines and bytes
are final, and whether the output is complete. Resuming truncates the file to the checkpointed size (what a killed
run wrote after it is dropped; the LLM answers behind it are in the cache, so nothing is paid twice) and says how
many input items to skip. Nothing is read back into memory.

Written here rather than with `jinstruct.io` or `generate.self_instruct.ResumableOutput`, which read whole files
into memory: fine for 52K records, not for 450K instructions x 6 responses with their judgements (gigabytes).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jinstruct.io import DataError, dumps, read_json, write_json


def state_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(p.stem + ".state.json")


def read_state(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The checkpoint of an output (None when there is none)."""
    sp = state_path(path)
    if not sp.exists():
        return None
    state = read_json(sp)
    if not isinstance(state, dict) or not {"params", "lines", "bytes"} <= state.keys():
        raise DataError(sp, None, None, "not a checkpoint (needs params, lines, bytes)")
    return state


def _canonical(params: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(dict(params), ensure_ascii=False, sort_keys=True))


def is_complete(path: str | os.PathLike[str], params: Mapping[str, Any]) -> bool:
    """The output exists, is finished and was made with `params`."""
    state = read_state(path)
    return bool(state and state.get("complete") and state["params"] == _canonical(params) and Path(path).exists())


def stream_jsonl(path: str | os.PathLike[str], limit: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each line, read one line at a time (the first `limit` lines when given, e.g. the
    checkpointed ones); a bad line is a DataError naming the file and the line."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            if limit is not None and n > limit:
                return
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise DataError(path, n, None, f"not valid JSON ({e})") from None
            if not isinstance(obj, dict):
                raise DataError(path, n, None, f"expected a JSON object, got {type(obj).__name__}")
            yield n, obj


def final_lines(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The checkpointed lines of an output (what a finished or interrupted sub-stage has made)."""
    state = read_state(path)
    limit = int(state["lines"]) if state is not None else None
    for _, obj in stream_jsonl(path, limit):
        yield obj


class CheckpointedLines:
    """Append-only JSON Lines with a checkpoint. `open()` returns the number of lines already final (0 for a new
    output, when the settings changed, or with `resume=False`: an output made with other settings is started again,
    its LLM answers coming from the cache)."""

    def __init__(self, path: str | os.PathLike[str], params: Mapping[str, Any], flush_every_s: float = 5.0):
        self.path = Path(path)
        self.state_path = state_path(self.path)
        self.params = _canonical(params)
        self.flush_every_s = flush_every_s
        self.lines = 0
        self.bytes = 0
        self.restarted = False  # open() found an output made with other settings and started again
        self._buffer: list[bytes] = []
        self._flushed_at = time.monotonic()

    def open(self, resume: bool = True) -> int:
        state = read_state(self.path)
        if state is None and self.path.exists() and self.path.stat().st_size > 0:
            raise DataError(self.path, None, None, f"exists without its checkpoint {self.state_path.name}: it was not "
                            "written by a resumable sub-stage; move it away")
        if state is not None and (state["params"] != self.params or not resume):
            self.restarted = state["params"] != self.params
            state = None
        if state is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(b"")
            self.lines = self.bytes = 0
            self._checkpoint(False)
            return 0
        self.lines, self.bytes = int(state["lines"]), int(state["bytes"])
        size = self.path.stat().st_size if self.path.exists() else -1
        if size < self.bytes:
            raise DataError(self.path, None, None, f"has {size} bytes, its checkpoint counts {self.bytes}: the file was "
                            "truncated or changed after it was written; delete it and its .state.json to start again")
        if size > self.bytes:  # written after the last checkpoint (a kill): drop it
            os.truncate(self.path, self.bytes)
        if state.get("complete"):
            self._checkpoint(False)
        return self.lines

    def write(self, obj: Mapping[str, Any]) -> None:
        """Add one line; written by the next flush (due at most `flush_every_s` from now)."""
        self._buffer.append((dumps(obj) + "\n").encode("utf-8"))
        if time.monotonic() - self._flushed_at >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        self._flushed_at = time.monotonic()
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        with self.path.open("ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.lines += len(self._buffer)
        self.bytes += len(data)
        self._buffer = []
        self._checkpoint(False)

    def finish(self) -> None:
        """Flush and mark the output complete."""
        self.flush()
        self._checkpoint(True)

    def _checkpoint(self, complete: bool) -> None:
        write_json(self.state_path, {"params": self.params, "lines": self.lines, "bytes": self.bytes,
                                     "complete": complete,
                                     "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

