"""Following a running stage's progress: a live line in the terminal, and lines in `run.log`.

The stage's kernel is another process; its progress bars (`jinstruct.progress.bar`) append their state to a file
the runner names (`$JINSTRUCT_PROGRESS`). `ProgressFollower` reads that file in a thread while the notebook runs and
shows each bar as one line, `[02_generation] self_instruct:  45%|████▌     | 18/40 [00:05<00:06, 3.20inst/s]`
(count, rate, time left):

- in a terminal, the line is redrawn in place as the bar moves, and written for good when the bar ends;
- in `run.log` (`tail -f runs/<name>/run.log`), a bar's line is written every `log_every_s` and when it ends;
- elsewhere (output to a file or a pipe, as in a sweep's `runner.out`), the same lines as `run.log`.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from jinstruct.progress import describe, read_events


class ProgressFollower:
    def __init__(self, path: Path, stage: str, log: Callable[[str], None], log_file: Callable[[str], None],
                 live: TextIO | None = None, poll_s: float = 0.5, log_every_s: float = 10.0):
        """log: a line for the terminal and run.log; log_file: run.log only; live: the terminal to redraw a line
        in (None: no live line, periodic lines through `log` instead)."""
        self.path, self.stage = Path(path), stage
        self.log, self.log_file, self.live = log, log_file, live
        self.poll_s, self.log_every_s = poll_s, log_every_s
        self._offset = 0
        self._logged_at: dict[str, float] = {}
        self._live_shown = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress {stage}", daemon=True)

    def __enter__(self) -> ProgressFollower:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # what the stage wrote last
        self._clear_live()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def poll(self) -> None:
        events, self._offset = read_events(self.path, self._offset)
        latest: dict[str, dict[str, Any]] = {}
        for event in events:
            if event.get("done"):
                latest.pop(event["id"], None)
                self._finished(event)
            else:
                latest[event["id"]] = event
        for event in latest.values():
            self._moving(event)

    def line(self, event: dict[str, Any], ncols: int = 100) -> str:
        prefix = f"[{self.stage}] "
        return prefix + describe(event, ncols=max(40, ncols - len(prefix)))

    def _finished(self, event: dict[str, Any]) -> None:
        self._clear_live()
        self._logged_at.pop(event["id"], None)
        self.log(self.line(event))

    def _moving(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        due = now - self._logged_at.setdefault(event["id"], now) >= self.log_every_s
        if due:
            self._logged_at[event["id"]] = now
        if self.live is not None:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.live.write("\r" + self.line(event, width)[:width] + "\x1b[K")
            self.live.flush()
            self._live_shown = True
            if due:
                self.log_file(self.line(event))
        elif due:
            self.log(self.line(event))

    def _clear_live(self) -> None:
        if self.live is not None and self._live_shown:
            self.live.write("\r\x1b[K")
            self.live.flush()
            self._live_shown = False
