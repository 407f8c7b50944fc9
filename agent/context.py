"""Runtime context: what a run needs besides its state.

The context is passed per run (`graph.invoke(..., context=Context(...))`). Its
plain fields can come from JSON (Studio, the API server); the services it
resolves (knowledge client, chat model) are created once per process and
configuration, and can be injected directly by tests and the terminal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic.json_schema import SkipJsonSchema

# Imported with the graph, not inside knowledge_client(): that runs in async nodes, and a first
# import there reads files on the API server's event loop (the dev server rejects blocking calls).
from agent.knowledge.client import KnowledgeClient, KnowledgeConfig
from agent.sidecar import ProjectError


@dataclass
class Context:
    # The project folder this run works on. The terminal always sets it (--project); over the
    # API it is optional: a run without it works on the folder its thread was started with.
    project_dir: str | None = None
    # One rule for every entry point (terminal, API server, Python): a configured OPENAI_API_KEY
    # means model mode unless offline is asked for (True). None and False both follow the key.
    offline: bool | None = None
    model: str | None = None
    base_url: str | None = None
    knowledge_url: str | None = None
    knowledge_transport: str | None = None
    today: str | None = None  # ISO date stamped on decisions; fixed by evals for stable bytes
    # Model calls: attempts after the first on timeouts/429/5xx, the first backoff in seconds
    # (doubled each time), and the per-call timeout. Tests set the backoff to 0.
    llm_retries: int = 2
    llm_backoff: float = 0.5
    llm_timeout: float = 60.0
    # Injected services (not JSON): when unset, resolved from the settings above.
    # Objects, not settings: hidden from the JSON schema Studio turns into a form.
    knowledge_client: Annotated[Any, SkipJsonSchema()] = field(default=None, repr=False)
    chat_model: Annotated[Any, SkipJsonSchema()] = field(default=None, repr=False)

    def date(self) -> str:
        return self.today or dt.date.today().isoformat()


# A client's MCP session (for stdio, its child process) belongs to the event loop that opened it, and
# the API server may run graphs on several loops (BG_JOB_ISOLATED_LOOPS): so one client per loop and
# configuration. A client moved between loops would drop its session and start another child each time.
_shared_clients: dict[tuple, tuple[asyncio.AbstractEventLoop | None, KnowledgeClient]] = {}
_shared_lock = threading.Lock()  # graphs on different loops run in different threads


def knowledge_client(ctx: Context | None) -> KnowledgeClient:
    """The context's knowledge client, or one shared per event loop and configuration in this process."""
    if ctx is not None and ctx.knowledge_client is not None:
        return ctx.knowledge_client
    config = KnowledgeConfig.load()
    if ctx is not None and ctx.knowledge_url:
        config = config.model_copy(update={"url": ctx.knowledge_url, "transport": ctx.knowledge_transport or "streamable_http"})
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    key = (id(loop), config.transport, config.url)
    with _shared_lock:
        for k in [k for k, (lp, _) in _shared_clients.items() if lp is not None and lp.is_closed()]:
            del _shared_clients[k]  # its session ended with its loop
        if key not in _shared_clients:  # the entry holds its loop, so the id is not reused meanwhile
            _shared_clients[key] = (loop, KnowledgeClient(config))
        return _shared_clients[key][1]


def chat_model(ctx: Context | None) -> Any:
    """The run's chat model (a BaseChatModel), or None for the offline path; see agent.llm."""
    from agent.llm import resolve_chat_model  # agent.llm imports this module

    return resolve_chat_model(ctx)


def project_folder(state: Mapping[str, Any], ctx: Context | None) -> str:
    """The folder this run reads and writes, as an absolute path.

    The run's own folder (`Context.project_dir`) wins over the one stored in the thread's
    state: a project copied or moved since the thread started is worked on where it is now,
    and never through a path an earlier run (or another working directory) left behind.
    """
    given = ctx.project_dir if ctx is not None else None
    folder = given or state.get("project_dir")
    if not folder:
        raise ProjectError(
            'No project folder given: start the run with {"project_dir": "<folder with sidecar.yaml>"}.'
        )
    path = Path(folder).expanduser().absolute()
    if not given and not path.is_dir():
        raise ProjectError(
            f"Project folder not found: {path}. If the project was moved or copied, give its "
            "folder as `project_dir` in the run's context."
        )
    return str(path)


def get_context(runtime: Any) -> Context:
    """The run's Context, whatever form the caller gave it in (object, dict or none)."""
    ctx = getattr(runtime, "context", None)
    if isinstance(ctx, Context):
        return ctx
    if isinstance(ctx, dict):
        known = {k: v for k, v in ctx.items() if k in Context.__dataclass_fields__}
        return Context(**known)
    return Context()
