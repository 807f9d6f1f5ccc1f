"""The library's progress bar: what it reports to the runner, how the runner reads and shows it."""

from __future__ import annotations

import io
import json
from pathlib import Path

from jinstruct import progress
from jinstruct.run.follow import ProgressFollower


def test_a_bar_reports_its_state_and_its_end(tmp_path: Path, monkeypatch):
    events_path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(events_path))
    with progress.bar(total=500, desc="filtering", unit="rec", initial=100, file=io.StringIO()) as bar:
        assert isinstance(bar, progress.TerminalBar)  # not in a kernel
        for _ in range(400):
            bar.update(1)
    events, offset = progress.read_events(events_path)
    assert offset == events_path.stat().st_size
    assert len(events) <= 3, "throttled: at most one report a second, and the end"
    last = events[-1]
    assert last["done"] and (last["n"], last["total"], last["initial"], last["unit"]) == (500, 500, 100, "rec")
    assert last["desc"] == "filtering" and len({e["id"] for e in events}) == 1
    with progress.bar(total=3, disable=True) as quiet:
        quiet.update(3)
    assert progress.read_events(events_path, offset) == ([], offset)


def test_no_report_without_the_runner(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    with progress.bar(total=2, file=io.StringIO()) as bar:
        bar.update(2)
    assert not list(tmp_path.iterdir())


def test_reading_stops_at_a_line_still_being_written(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    whole = json.dumps({"id": "a", "n": 1})
    path.write_text(whole + "\n" + '{"id": "a", "n"', encoding="utf-8")
    events, offset = progress.read_events(path)
    assert events == [{"id": "a", "n": 1}] and offset == len(whole) + 1
    with path.open("a", encoding="utf-8") as f:
        f.write(': 2}\n')
    assert progress.read_events(path, offset)[0] == [{"id": "a", "n": 2}]
    assert progress.read_events(tmp_path / "none.jsonl", 7) == ([], 7)


def test_a_line_says_count_rate_and_time_left():
    line = progress.describe({"desc": "self_instruct", "unit": "inst", "n": 18, "total": 40, "initial": 0,
                              "elapsed": 5.0})
    assert line.startswith("self_instruct:  45%|") and "18/40" in line and "3.60inst/s" in line
    assert "[00:05<00:06," in line  # 22 left at 3.6 a second
    resumed = progress.describe({"desc": "x", "unit": "rec", "n": 30, "total": 40, "initial": 20, "elapsed": 5.0})
    assert "2.00rec/s" in resumed, "the rate counts this session's work, not what a resumed run found done"


def test_the_follower_logs_each_bar_as_it_moves_and_when_it_ends(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    both, file_only = [], []
    follower = ProgressFollower(path, "03_filtering", both.append, file_only.append, live=None, log_every_s=0.0)
    rows = [{"id": "b", "desc": "filtering", "unit": "rec", "n": n, "total": 4, "initial": 0, "elapsed": n,
             "done": n == 4} for n in (1, 2, 4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]), encoding="utf-8")
    follower.poll()  # a moving bar: its latest state only
    assert len(both) <= 1 and all("2/4" in line for line in both)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(rows[2]) + "\n")
    follower.poll()
    assert both[-1].startswith("[03_filtering] filtering: 100%|") and "4/4" in both[-1]
    live = io.StringIO()
    terminal = ProgressFollower(path, "03_filtering", both.append, file_only.append, live=live)
    path.write_text(json.dumps({**rows[0], "id": "c"}) + "\n", encoding="utf-8")
    terminal.poll()
    assert live.getvalue().startswith("\r[03_filtering] filtering:  25%|") and live.getvalue().endswith("\x1b[K")
