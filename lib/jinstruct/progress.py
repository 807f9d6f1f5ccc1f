"""The library's one progress bar: live in JupyterLab, final in an executed notebook, followed by the runner.

    with progress.bar(total=len(records), desc="filtering", unit="rec") as bar:
        for rec in records:
            ...
            bar.update(1)

`bar` returns a tqdm. In a Jupyter kernel it is a text bar in one output that is updated in place (by display id):
JupyterLab shows it live, and papermill saves its last update, so an executed notebook shows each bar's final
count, rate and time (tqdm's widget bars are saved as their first frame, `0%`, and need a browser to draw at all).
Elsewhere it is tqdm's terminal bar on stderr.

When `$JINSTRUCT_PROGRESS` names a file (the runner sets it for each stage's kernel), every bar also appends its
state there as a JSON line, at most every `REPORT_EVERY_S` and when it closes: `{"id", "desc", "unit", "n",
"total", "initial", "elapsed", "done"}`. The runner follows the file and shows each bar in the terminal and in
`run.log` (`jinstruct.run.runner`). Written by hand because tqdm writes only to a text stream; the two subclasses
override its `display` and `close` alone.

Third-party bars (Hugging Face's weight loading and dataset maps) are widgets in a kernel; in a notebook run without
a person (papermill) they would be saved at 0%, so `quiet_third_party_bars` turns them off there.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
from typing import Any

from tqdm.std import tqdm

PROGRESS_ENV = "JINSTRUCT_PROGRESS"
REPORT_EVERY_S = 1.0
# Hugging Face's own progress bars (hub downloads, transformers' weight loading, datasets' maps), read at import
THIRD_PARTY_BARS_OFF = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}

_ids = itertools.count(1)
_write_lock = threading.Lock()


def _shell() -> Any:
    """The IPython shell when this runs inside a Jupyter kernel, else None."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    shell = ipython.get_ipython()
    return shell if shell is not None and hasattr(shell, "kernel") else None


def in_kernel() -> bool:
    """Whether this runs inside a Jupyter kernel (JupyterLab, papermill, VS Code)."""
    return _shell() is not None


def interactive() -> bool:
    """Whether a person's frontend runs this kernel: JupyterLab sends `allow_stdin` with each cell (it can answer
    `input()`), papermill (nbclient) never does."""
    shell = _shell()
    return shell is not None and bool(getattr(shell.kernel, "_allow_stdin", False))


def quiet_third_party_bars() -> None:
    """Turn off Hugging Face's bars for this process (in a notebook run by papermill they would be saved at 0%)."""
    for key, value in THIRD_PARTY_BARS_OFF.items():
        os.environ.setdefault(key, value)
    if "transformers" in sys.modules:  # imported before: its switch was read at import
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()


class _Reporting(tqdm):
    """Appends the bar's state to `$JINSTRUCT_PROGRESS` (when set) as it draws and when it closes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._report_path = os.environ.get(PROGRESS_ENV) or None
        self._report_id = f"{os.getpid()}-{next(_ids)}"
        self._reported_at = float("-inf")
        self._initial = int(kwargs.get("initial") or 0)
        super().__init__(*args, **kwargs)

    def _report(self, done: bool) -> None:
        if self._report_path is None or self.disable:
            return
        now = time.monotonic()
        if not done and now - self._reported_at < REPORT_EVERY_S:
            return
        self._reported_at = now
        event = {"id": self._report_id, "desc": self.desc.rstrip(": "), "unit": self.unit, "n": self.n,
                 "total": self.total, "initial": self._initial,
                 "elapsed": round(self.format_dict["elapsed"], 3), "done": done}
        with _write_lock, open(self._report_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event, ensure_ascii=False) + "\n")

    def display(self, msg: str | None = None, pos: int | None = None) -> Any:
        self._report(done=False)
        return super().display(msg, pos)

    def close(self) -> None:
        self._report(done=True)
        self._report_path = None  # the last word: nothing after it
        super().close()


class TerminalBar(_Reporting):
    """tqdm's terminal bar (stderr), reporting to the runner."""


class _Discard:
    def write(self, _: str) -> None:
        pass

    def flush(self) -> None:
        pass


class NotebookBar(_Reporting):
    """A text bar in one notebook output, redrawn in place through its display id."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._handle: Any = None
        kwargs.update(file=_Discard(), dynamic_ncols=False, ncols=kwargs.get("ncols") or 100, ascii=False)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        self._report(done=False)
        from IPython.display import display

        bundle = {"text/plain": str(self) if msg is None else msg}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
        return True


def bar(total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0, disable: bool = False,
        **kwargs: Any) -> tqdm:
    """The progress bar for this context (a notebook output, or the terminal), reporting to the runner."""
    cls = NotebookBar if in_kernel() else TerminalBar
    mininterval = kwargs.pop("mininterval", 0.5 if cls is NotebookBar else 0.1)
    return cls(total=total, desc=desc, unit=unit, initial=initial, disable=disable, mininterval=mininterval,
               **kwargs)


def read_events(path: str | os.PathLike[str], offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete JSON lines of a progress file from byte `offset` on, and the offset after them."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
    events = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return events, offset + end


def describe(event: dict[str, Any], ncols: int = 100) -> str:
    """One line for a progress event, tqdm's way: `desc: 45%|████▌     | 18/40 [00:05<00:06, 3.20inst/s]` (count,
    rate over the whole bar, time left)."""
    elapsed = float(event.get("elapsed") or 0.0)
    done_here = int(event["n"]) - int(event.get("initial") or 0)
    rate = done_here / elapsed if elapsed > 0 and done_here > 0 else None
    return tqdm.format_meter(int(event["n"]), event.get("total"), elapsed, ncols=ncols, prefix=event.get("desc") or "",
                             unit=event.get("unit") or "it", rate=rate, initial=int(event.get("initial") or 0))
