"""Runtime context: what a run needs besides its state.

The context is passed per run (`graph.invoke(..., context=Context(...))`). Its
plain fields can come from JSON (Studio, the API server); the services it
resolves (knowledge client, chat model) are created once per process and
configuration, and can be injected directly by tests and the terminal.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic.json_schema import SkipJsonSchema

# Imported with the graph, not inside knowledge_client(): that runs in async nodes, and a first
# import there reads files on the API server's event loop (the dev server rejects blocking calls).
from agent.knowledge.client import KnowledgeClient, KnowledgeConfig
from agent.loop_cache import LoopCache, running_loop


@dataclass
class Context:
    offline: bool = True
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


# A client's MCP session (for stdio, its child process) belongs to the event loop that opened it:
# a client moved between loops would drop its session and start another child each time.
_shared_clients = LoopCache()


def knowledge_client(ctx: Context | None) -> KnowledgeClient:
    """The context's knowledge client, or one shared per event loop and configuration in this process."""
    if ctx is not None and ctx.knowledge_client is not None:
        return ctx.knowledge_client
    config = KnowledgeConfig.load()
    if ctx is not None and ctx.knowledge_url:
        config = config.model_copy(update={"url": ctx.knowledge_url, "transport": ctx.knowledge_transport or "streamable_http"})
    loop, key = running_loop(), (config.transport, config.url)
    client = _shared_clients.get(loop, key)
    return client if client is not None else _shared_clients.put(loop, key, KnowledgeClient(config))


def get_context(runtime: Any) -> Context:
    """The run's Context, whatever form the caller gave it in (object, dict or none)."""
    ctx = getattr(runtime, "context", None)
    if isinstance(ctx, Context):
        return ctx
    if isinstance(ctx, dict):
        known = {k: v for k, v in ctx.items() if k in Context.__dataclass_fields__}
        return Context(**known)
    return Context()
