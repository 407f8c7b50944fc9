"""A synchronous form for every async node, so `graph.invoke` and `graph.stream` work as well as
their async forms.

LangGraph runs an async-only node through the async API alone ("No synchronous function
provided"). The sync form runs the same coroutine on one event loop that this process keeps for
it in a background thread: services bound to a loop (the knowledge client's MCP session, the
model's HTTP client) are then opened once and shared by every sync run, not once per node.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from typing import Any, Callable, Coroutine

from langgraph._internal._runnable import RunnableCallable
from langgraph.graph import StateGraph

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _node_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="sync-graph-nodes", daemon=True).start()
        return _loop


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` on the node loop and wait for it. The caller's context variables go with it:
    `interrupt()` and callbacks find the run's config there."""
    loop = _node_loop()
    context = contextvars.copy_context()
    done: asyncio.Future | Any = None
    ready = threading.Event()

    def start() -> None:
        nonlocal done
        done = loop.create_task(coro, context=context)
        ready.set()

    loop.call_soon_threadsafe(start)
    ready.wait()
    return asyncio.run_coroutine_threadsafe(_wait(done), loop).result()


async def _wait(task: asyncio.Task) -> Any:
    return await task


def sync_form(afunc: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    @functools.wraps(afunc)  # same signature: LangGraph injects the same arguments (runtime, ...)
    def run(*args: Any, **kwargs: Any) -> Any:
        return run_coroutine(afunc(*args, **kwargs))

    return run


def add_sync_forms(builder: StateGraph) -> None:
    """Give each async-only node of `builder` its sync form (its async form is unchanged)."""
    for spec in builder.nodes.values():
        node = spec.runnable
        if isinstance(node, RunnableCallable) and node.func is None and node.afunc is not None:
            spec.runnable = RunnableCallable(
                sync_form(node.afunc), node.afunc, name=node.name, tags=node.tags, trace=node.trace, recurse=node.recurse,
            )
