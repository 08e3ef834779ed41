"""Notebook kernels on a shared node: ZeroMQ over IPC (Unix sockets in a private folder), not TCP.

jupyter_client's default transport is TCP on 127.0.0.1 without encryption: on a login node or a
shared compute node anyone else logged in can connect to the kernel's ports (every notebook
papermill runs prints "Kernel is running over TCP without encryption ... susceptible to
eavesdropping"). With transport `ipc` the kernel's sockets are files in a folder only this user
can enter (mode 0700), so the operating system keeps the others out.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from jupyter_client.manager import AsyncKernelManager


class IPCKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels listen on Unix sockets in a fresh 0700 folder (short path:
    a socket path must fit in 108 bytes, which a cluster's $HOME-based runtime dir may not)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ipc_dir = tempfile.mkdtemp(prefix="fedlib-kernel-")  # created 0700
        self.transport = "ipc"
        self.ip = os.path.join(self._ipc_dir, "k")

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self._ipc_dir, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources


def papermill_kwargs() -> dict[str, Any]:
    """What `papermill.execute_notebook` passes on to nbclient to start kernels over IPC."""
    return {"kernel_manager_class": IPCKernelManager}
