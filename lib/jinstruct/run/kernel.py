"""The Jupyter kernel a stage's notebook runs in: local sockets, its own environment, its own log.

papermill (through nbclient) starts a kernel per notebook. By default that kernel listens on TCP ports without
encryption, says so on the terminal ("Kernel is running over TCP without encryption"), and writes its own log
lines (an interrupt at shutdown: "KeyboardInterrupt caught in kernel") to the runner's terminal. This kernel manager,
handed to papermill, instead

- talks over IPC sockets (Unix domain sockets in the stage's temporary folder) where the platform has them, which
  only this user can reach: the transport ipykernel itself recommends;
- starts the kernel with extra environment variables (the project root, the progress file, third-party bars off);
- sends the kernel process's own stdout and stderr to a log file, which the runner copies into `run.log`. What the
  notebook's code prints still lands in the notebook, as always.

The kernel also dies with the runner. jupyter_client starts each kernel in a session of its own, so killing the
runner (or its process group) left the kernel running until ipykernel's parent poller noticed, up to a second later,
still sending requests and writing to the cache. On Linux the kernel is started with the parent-death signal set to
SIGKILL (prctl PR_SET_PDEATHSIG): whatever ends the runner, kill -9 of its process group included, ends the kernel
at the same moment. Elsewhere the parent poller remains the fallback.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from jupyter_client.manager import AsyncKernelManager

PR_SET_PDEATHSIG = 1


def _die_with(parent: int, prctl: Any) -> Callable[[], None]:
    def preexec() -> None:  # in the child, between fork and exec
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the runner died before the signal was set
            os._exit(1)
    return preexec


class StageKernelManager(AsyncKernelManager):
    """Set up by `stage_kernel` (papermill's client makes the instance, and shuts the kernel down after the run)."""

    stage_env: Mapping[str, str] = {}
    workdir: Path | None = None

    def __init__(self, **kwargs: Any):
        if os.name == "posix" and self.workdir is not None:
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", str(self.workdir / "kernel"))
        super().__init__(**kwargs)
        self._log: IO[bytes] | None = None

    async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
        if self.workdir is not None:
            self._log = open(self.workdir / "kernel.log", "ab")  # noqa: SIM115 - closed at shutdown
            kw.setdefault("stdout", self._log)
            kw.setdefault("stderr", self._log)
        kw["env"] = {**os.environ, **kw.get("env", {}), **self.stage_env}
        await super().start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        if sys.platform.startswith("linux") and "preexec_fn" not in kw:
            kw["preexec_fn"] = _die_with(os.getpid(), ctypes.CDLL(None, use_errno=True).prctl)
        await super()._async_launch_kernel(kernel_cmd, **kw)

    async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:  # type: ignore[override]
        try:
            await super().shutdown_kernel(now=now, restart=restart)
        finally:
            if self._log is not None and not restart:
                self._log.close()
                self._log = None


def stage_kernel(workdir: Path, env: Mapping[str, str]) -> type[StageKernelManager]:
    """The kernel manager class for one stage (papermill's `kernel_manager_class`): IPC sockets under `workdir` (TCP
    on Windows), the kernel's own log in `workdir/kernel.log`, `env` added to its environment."""
    return type("StageKernelManager", (StageKernelManager,), {"stage_env": dict(env), "workdir": Path(workdir)})
