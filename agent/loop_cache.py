"""One object per event loop and key, shared by the graphs this process runs.

Async clients (an MCP session, an HTTP connection pool) belong to the event loop that opened them,
and the API server may run graphs on several loops (BG_JOB_ISOLATED_LOOPS). An entry holds its loop,
so the loop's id is not reused while the entry lives; entries of closed loops are dropped.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class LoopCache:
    def __init__(self) -> None:
        self._entries: dict[tuple, tuple[asyncio.AbstractEventLoop | None, Any]] = {}
        self._lock = threading.Lock()  # graphs on different loops run in different threads

    def get(self, loop: asyncio.AbstractEventLoop | None, key: tuple) -> Any | None:
        with self._lock:
            for k in [k for k, (lp, _) in self._entries.items() if lp is not None and lp.is_closed()]:
                del self._entries[k]  # what it held died with its loop
            entry = self._entries.get((id(loop), *key))
            return entry[1] if entry else None

    def put(self, loop: asyncio.AbstractEventLoop | None, key: tuple, value: Any) -> Any:
        """Store `value` unless another thread stored one first; return the stored one."""
        with self._lock:
            return self._entries.setdefault((id(loop), *key), (loop, value))[1]

    def values(self) -> list[tuple[asyncio.AbstractEventLoop | None, Any]]:
        with self._lock:
            return list(self._entries.values())
