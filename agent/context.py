"""Runtime context: what a run needs besides its state.

The context is passed per run (`graph.invoke(..., context=Context(...))`). Its
plain fields can come from JSON (Studio, the API server); the services it
resolves (knowledge client, chat model) are created once per process and
configuration, and can be injected directly by tests and the terminal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic.json_schema import SkipJsonSchema

# Imported with the graph, not inside knowledge_client(): that runs in async nodes, and a first
# import there reads files on the API server's event loop (the dev server rejects blocking calls).
from agent.knowledge.client import KnowledgeClient, KnowledgeConfig
from agent.loop_cache import LoopCache, running_loop
from agent.sidecar import ProjectError


@dataclass
class Context:
    project_dir: str | None = field(default=None, metadata={"description": "The project folder this run works on (the terminal always sets it); unset over the API: the folder the thread was started with."})
    # One rule for every entry point (terminal, API server, Python): a configured OPENAI_API_KEY
    # means model mode unless offline is asked for (True). None and False both follow the key.
    offline: bool | None = field(default=None, metadata={"description": "true: run without a language model (the rules only). Unset or false: a model when OPENAI_API_KEY is set."})
    model: str | None = field(default=None, metadata={"description": "Chat model name at the endpoint (default: $TRAINING_PIPELINE_MODEL, else gpt-4o-mini)."})
    base_url: str | None = field(default=None, metadata={"description": "OpenAI-compatible endpoint URL (default: $OPENAI_BASE_URL, else OpenAI)."})
    knowledge_url: str | None = field(default=None, metadata={"description": "Knowledge MCP server URL; unset: the configured server, else the embedded one over stdio."})
    knowledge_transport: str | None = field(default=None, metadata={"description": "Transport for knowledge_url: streamable_http (default) or sse."})
    today: str | None = field(default=None, metadata={"description": "ISO date stamped on decisions (default: today); fixed by evals for stable bytes."})
    # Model calls: attempts after the first on timeouts/429/5xx, the first backoff in seconds
    # (doubled each time), and the per-call timeout. Tests set the backoff to 0.
    llm_retries: int = field(default=2, metadata={"description": "Model call retries after the first attempt, on timeouts, 429 and 5xx."})
    llm_backoff: float = field(default=0.5, metadata={"description": "Seconds before the first retry of a model call; doubled each time."})
    llm_timeout: float = field(default=60.0, metadata={"description": "Seconds one model call may take."})
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
