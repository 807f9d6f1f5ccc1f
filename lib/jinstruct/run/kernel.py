"""The kernel a runner starts dies with the runner.

jupyter_client starts each kernel in a session of its own, so killing the runner (or its process group) left the
kernel running until ipykernel's parent poller noticed, up to a second later, still sending requests and writing to
the cache. On Linux the kernel is started with the parent-death signal set to SIGKILL (prctl PR_SET_PDEATHSIG):
whatever ends the runner, kill -9 of its process group included, ends the kernel at the same moment. Elsewhere the
parent poller remains the fallback.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from jupyter_client.manager import AsyncKernelManager

PR_SET_PDEATHSIG = 1


def _die_with(parent: int, prctl: Any) -> Callable[[], None]:
    def preexec() -> None:  # in the child, between fork and exec
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the runner died before the signal was set
            os._exit(1)
    return preexec


class TiedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernel receives SIGKILL when the runner's process ends (Linux)."""

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        if sys.platform.startswith("linux") and "preexec_fn" not in kw:
            kw["preexec_fn"] = _die_with(os.getpid(), ctypes.CDLL(None, use_errno=True).prctl)
        await super()._async_launch_kernel(kernel_cmd, **kw)
