"""Runtime context: what a run needs besides its state.

The context is passed per run (`graph.invoke(..., context=Context(...))`). Its
plain fields can come from JSON (Studio, the API server); the services it
resolves (knowledge client, chat model) are created once per process and
configuration, and can be injected directly by tests and the terminal.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported lazily: the knowledge client pulls in the MCP stack
    from agent.knowledge.client import KnowledgeClient


@dataclass
class Context:
    offline: bool = True
    model: str | None = None
    base_url: str | None = None
    knowledge_url: str | None = None
    knowledge_transport: str | None = None
    today: str | None = None  # ISO date stamped on decisions; fixed by evals for stable bytes
    # Injected services (not JSON): when unset, resolved from the settings above.
    knowledge_client: Any = field(default=None, repr=False)
    chat_model: Any = field(default=None, repr=False)

    def date(self) -> str:
        return self.today or dt.date.today().isoformat()


_shared_clients: dict[tuple, "KnowledgeClient"] = {}


def knowledge_client(ctx: Context | None) -> "KnowledgeClient":
    """The context's knowledge client, or one shared per configuration in this process."""
    if ctx is not None and ctx.knowledge_client is not None:
        return ctx.knowledge_client
    from agent.knowledge.client import KnowledgeClient, KnowledgeConfig

    config = KnowledgeConfig.load()
    if ctx is not None and ctx.knowledge_url:
        config = config.model_copy(update={"url": ctx.knowledge_url, "transport": ctx.knowledge_transport or "streamable_http"})
    key = (config.transport, config.url)
    if key not in _shared_clients:
        _shared_clients[key] = KnowledgeClient(config)
    return _shared_clients[key]


def get_context(runtime: Any) -> Context:
    """The run's Context, whatever form the caller gave it in (object, dict or none)."""
    ctx = getattr(runtime, "context", None)
    if isinstance(ctx, Context):
        return ctx
    if isinstance(ctx, dict):
        known = {k: v for k, v in ctx.items() if k in Context.__dataclass_fields__}
        return Context(**known)
    return Context()
