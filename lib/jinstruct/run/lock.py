"""The run lock: one runner per run folder at a time.

`runs/<name>/run.lock` is held with `flock` for as long as the runner runs and names its holder (pid, host, start,
command). A second runner on the same run refuses with a message naming the holder; a notebook opened by hand on a
locked run refuses too, unless it is the runner's own kernel. The operating system drops a flock when its holder
dies however it dies (kill -9 included), so a lock left by a dead runner is stale by construction: the next runner
takes it over and says whose it was. Written by hand because the lock must also name its holder and survive the
unlink race of lock files (checked by inode after locking); the standard library's fcntl does the locking.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

HELD_BY_ENV = "JINSTRUCT_RUN_LOCK"  # set by the runner for its kernels: the lock they run under


class RunLocked(RuntimeError):
    """Another process holds the run's lock; the message names it."""


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process (no holder recorded)"
    return (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
            f" ({holder.get('command', '?')})")


def _read_holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536)
    try:
        holder = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


class RunLock:
    """`with RunLock(path): ...` holds the lock at `path`; `stale` then names a dead holder it took over, if any."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.stale: dict[str, Any] | None = None
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunLocked(f"run folder {self.path.parent} is in use by {_describe(holder)}: wait for that run "
                                f"to end or stop it; its lock is {self.path}") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder released and removed the file between our open and our lock: try again
        previous = _read_holder(fd)
        self.stale = previous or None
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me) + "\n").encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking: a waiter that got the old file re-checks the inode
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_unlocked(path: str | os.PathLike[str]) -> None:
    """Refuse (RunLocked) when another process holds the lock at `path`, unless this process runs under it (a
    runner's kernel)."""
    path = Path(path)
    if not path.exists() or os.environ.get(HELD_BY_ENV) == str(path):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"run folder {path.parent} is being run by {_describe(_read_holder(fd))}: a notebook "
                            "opened by hand would write into it at the same time; wait for that run to end, or "
                            "open another run folder (run_dir)") from None
    finally:
        os.close(fd)
