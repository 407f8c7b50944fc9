"""Knowledge client: runs catalog queries against a Knowledge MCP server and records what came back.

Any server that speaks the knowledge-mcp contract works: the embedded one over
stdio (the default), or a remote one over streamable HTTP or SSE. A failing
query never raises: its QueryRecord carries an `error` the user can act on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from mcp.types import CallToolResult
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.knowledge.catalog import FILTER_LIMIT, SEARCH_LIMIT, CatalogQuery
from agent.knowledge.connection import KnowledgeError, Session, StatusLog, explain_open_failure, is_disconnect
from agent.knowledge.models import MAX_ITEMS, EmptyItem, KnowledgeItem, QueryRecord, normalize
from agent.knowledge.ranking import select
from agent.knowledge.spawn import DEFAULT_IDLE_EXIT_S, StartedServer, embedded_command, server_environment
from agent.redact import redact_text, redact_url
from agent.sanitize import sanitize, sanitize_data

TOP_N = 5
_TRANSPORT_ALIASES = {"streamable-http": "streamable_http", "http": "streamable_http"}


class KnowledgeConfig(BaseModel):
    """Which Knowledge MCP server to use. Nothing configured: the embedded one over stdio."""

    model_config = ConfigDict(extra="forbid")

    transport: Literal["stdio", "streamable_http", "sse"] = "stdio"
    url: str | None = None
    api_key: str | None = None
    timeout_s: float = Field(default=15, gt=0, le=600)
    command: list[str] = Field(default_factory=embedded_command, min_length=1)
    # A stdio server we start leaves after this long without a call (0: never); we reconnect on
    # the next call. It keeps servers from outliving event loops that closed without cleanup.
    idle_exit_s: float = Field(default=DEFAULT_IDLE_EXIT_S, ge=0)

    @field_validator("transport", mode="before")
    @classmethod
    def _alias(cls, v: Any) -> Any:
        return _TRANSPORT_ALIASES.get(v, v) if isinstance(v, str) else v

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return shlex.split(v) if isinstance(v, str) else v

    @classmethod
    def load(cls, file: Path | None = None) -> "KnowledgeConfig":
        """Settings from a YAML file (top level or under `knowledge:`), then the environment:
        KNOWLEDGE_MCP_URL, KNOWLEDGE_MCP_TRANSPORT, KNOWLEDGE_MCP_API_KEY, KNOWLEDGE_MCP_TIMEOUT.
        A URL without a transport means streamable HTTP."""
        data: dict[str, Any] = {}
        if file is not None:
            loaded = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{file}: expected a mapping of knowledge settings")
            data = dict(loaded.get("knowledge", loaded))
        env = os.environ
        if env.get("KNOWLEDGE_MCP_URL"):
            data["url"] = env["KNOWLEDGE_MCP_URL"]
            if "transport" not in data or data["transport"] == "stdio":
                data["transport"] = "streamable_http"
        if env.get("KNOWLEDGE_MCP_TRANSPORT"):
            data["transport"] = env["KNOWLEDGE_MCP_TRANSPORT"]
        if env.get("KNOWLEDGE_MCP_API_KEY"):
            data["api_key"] = env["KNOWLEDGE_MCP_API_KEY"]
        if env.get("KNOWLEDGE_MCP_TIMEOUT"):
            data["timeout_s"] = env["KNOWLEDGE_MCP_TIMEOUT"]
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ValueError(redact_text(f"invalid knowledge settings: {e}")) from None

    @property
    def target(self) -> str:
        """Where the server is, for messages: never with the URL's credentials."""
        return redact_text(" ".join(self.command)) if self.transport == "stdio" else (redact_url(self.url) or "(no URL)")


class KnowledgeClient:
    """One session per client, opened on first use; `async with` or `await aclose()` to end it."""

    def __init__(self, config: KnowledgeConfig | None = None, top_n: int = TOP_N, started: StartedServer | None = None):
        self.config = config or KnowledgeConfig()
        self.top_n = top_n
        # An embedded server started early (agent.knowledge.spawn): the first session opens over it.
        self._started = started
        self._session: Session | None = None
        self._open_failure: str | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._authors: dict[str, list[str]] | None = None
        self._closing: set[asyncio.Task[None]] = set()  # sessions being shut down in the background
        self._prefetched: dict[CatalogQuery, asyncio.Task[QueryRecord]] = {}

    async def __aenter__(self) -> "KnowledgeClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._drop_prefetched()  # first: one may be opening a session
        session, closing = self._session, set(self._closing)
        self._session = None
        if self._started is not None:  # started early, never used
            started, self._started = self._started, None
            await started.stop()
        if self._loop is not asyncio.get_running_loop():
            return  # those belonged to a loop that is gone; asyncio.run closed them on its way out
        if session is not None:
            closing.add(asyncio.create_task(session.close()))
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)

    # -- public API ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the session now (for stdio, start the server process), so that its start-up runs
        beside the caller's own; a failure is left for the first query to report."""
        try:
            await self._open()
        except KnowledgeError:
            pass

    async def run(self, queries: list[CatalogQuery]) -> list[QueryRecord]:
        """Run the queries concurrently; one record per query, in the same order."""
        self._open_failure = None  # each batch gets one fresh attempt at a server that failed before
        return list(await asyncio.gather(*(self._prefetched_or_run(q) for q in queries)))

    def prefetch(self, queries: list[CatalogQuery]) -> None:
        """Start these queries now, for a `run` to come: the terminal chat asks for what its first
        question shows while it loads the graph, and the server answers on the other core.
        `run` takes a prefetched record that succeeded, and runs a failed one again."""
        for q in queries:
            if q not in self._prefetched:
                self._prefetched[q] = asyncio.ensure_future(self._run_one(q))

    async def _drop_prefetched(self) -> None:
        """Cancel the queries asked for ahead and never used (those of this event loop)."""
        prefetched, self._prefetched = list(self._prefetched.values()), {}
        here = [t for t in prefetched if t.get_loop() is asyncio.get_running_loop()]
        for task in here:
            task.cancel()
        await asyncio.gather(*here, return_exceptions=True)

    async def _prefetched_or_run(self, q: CatalogQuery) -> QueryRecord:
        early = self._prefetched.pop(q, None)
        if early is not None and early.get_loop() is asyncio.get_running_loop():
            record = await early
            if record.error is None:
                return record
        return await self._run_one(q)

    async def ask(self, text: str, stage: str = "menu", limit: int = 5) -> QueryRecord:
        """Free search for a question the user asked, ranked for that question."""
        self._open_failure = None
        text = text.strip()
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        args = {"query": text, "limit": min(max(limit * 2, 10), 100)}  # a pool to choose from, within the server's cap
        start = time.perf_counter()
        record = {"query_id": f"{stage}.ask.{digest}", "section": stage, "endpoint": "search_knowledge",
                  "arguments": args, "ref": f"search_knowledge:{text}"}
        if not text:
            return QueryRecord(**record, error="nothing to search for: the question is empty")
        try:
            items = select(await self._items("search_knowledge", args), text, limit)
            items = await self._with_authors(items)
        except Exception as e:  # noqa: BLE001 - a query never raises
            return QueryRecord(**record, error=_message(e), latency_ms=_ms(start))
        return QueryRecord(**record, items=items, result_ids=[i.id for i in items], latency_ms=_ms(start))

    # -- one catalog query ----------------------------------------------------------------------

    async def _run_one(self, q: CatalogQuery) -> QueryRecord:
        start = time.perf_counter()
        base = {"query_id": q.id, "section": q.stage, "endpoint": q.endpoint, "arguments": q.arguments, "ref": q.ref}
        try:
            items = await (self._filter(q) if q.is_filter else self._search(q))
            items = await self._with_authors(select(items, q.rank_text, self.top_n))
        except Exception as e:  # noqa: BLE001 - a query never raises
            return QueryRecord(**base, error=_message(e), latency_ms=_ms(start))
        # Name the calls whose items were kept, when they are not the seed's own call.
        others = [v for v in dict.fromkeys(i.via for i in items) if v and v != q.ref]
        return QueryRecord(**base, items=items, result_ids=[i.id for i in items],
                           fallback=", ".join(others) or None, latency_ms=_ms(start))

    async def _search(self, q: CatalogQuery) -> list[KnowledgeItem]:
        items = await self._items("search_knowledge", q.arguments)
        if items or not q.fallback_query:
            return items
        return await self._items("search_knowledge", {"query": q.fallback_query, "limit": SEARCH_LIMIT})

    async def _filter(self, q: CatalogQuery) -> list[KnowledgeItem]:
        """The seed's topic as is; if the server has no such tag, the mapped vocabulary tags;
        if those are empty too, a search. Seed topic and mapped tags are asked together.
        Each item keeps the call that returned it (`via`)."""
        mapped = [t for t in q.vocab_topics if t != q.topic]
        calls = [q.arguments] + [{"topic": t, "limit": FILTER_LIMIT} for t in mapped]
        results = await asyncio.gather(*(self._items(q.endpoint, a) for a in calls))
        if results[0]:
            return results[0]
        merged = [item for items in results[1:] for item in items]
        if merged or not q.fallback_query:
            return merged
        return await self._items("search_knowledge", {"query": q.fallback_query, "limit": SEARCH_LIMIT})

    async def _items(self, tool: str, arguments: dict[str, Any]) -> list[KnowledgeItem]:
        """The call's results as capped items (at most MAX_ITEMS), each naming the call in `via`."""
        results = _results(tool, await self._call(tool, arguments))[:MAX_ITEMS]
        via = f"{tool}:{arguments.get('topic') or arguments.get('query') or ''}"
        items, empty = [], 0
        for raw in results:
            try:
                items.append(normalize(tool, raw, via=via))
            except EmptyItem:
                empty += 1  # nothing to cite: not an error either
            except (ValidationError, ValueError, TypeError):
                continue  # one malformed row should not cost the others
        if len(results) > empty and not items:
            raise KnowledgeError(f"{tool} returned {len(results) - empty} results, none in the expected shape")
        return items

    async def _with_authors(self, items: list[KnowledgeItem]) -> list[KnowledgeItem]:
        """get_* rows carry no authors; list_sources (asked once) fills them in, or nothing does."""
        if all(i.source_authors or not i.source_title for i in items):
            return items
        if self._authors is None:
            try:
                rows = _results("list_sources", await self._call("list_sources", {"limit": 500}))
            except Exception:  # noqa: BLE001 - authors are a nicety; try again next time
                return items
            self._authors = {r["title"]: list(r.get("authors") or []) for r in rows if r.get("title")}
        authors = self._authors
        return [i if i.source_authors else i.model_copy(update={"source_authors": authors.get(i.source_title, [])})
                for i in items]

    # -- the session ------------------------------------------------------------------------------

    async def _call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        """Call a tool; reconnect once if the session died under us."""
        for attempt in (1, 2):
            session = await self._open()
            try:
                return await session.call(tool, arguments, self.config.timeout_s)
            except TimeoutError:
                raise KnowledgeError(f"{tool} timed out after {self.config.timeout_s:g}s "
                                     f"({self.config.transport}: {self.config.target})") from None
            except Exception as e:
                if attempt == 1 and (is_disconnect(e) or not session.alive):
                    await self._retire(session)
                    continue
                if is_disconnect(e):
                    raise KnowledgeError(f"lost the knowledge server ({self.config.transport}: "
                                         f"{self.config.target}) and reconnecting did not help: {redact_text(str(e))}") from e
                raise KnowledgeError(f"{tool} failed: {type(e).__name__}: {redact_text(str(e))}") from e
        raise AssertionError("unreachable")

    async def _open(self) -> Session:
        self._bind_loop()
        assert self._lock is not None
        async with self._lock:
            if self._session is not None and self._session.alive:
                return self._session
            if self._open_failure:
                raise KnowledgeError(self._open_failure)
            if self._session is not None:
                self._discard(self._session)
                self._session = None
            statuses = StatusLog()
            session = None
            try:
                session = await self._new_session(statuses)
                await session.open(self.config.timeout_s)
            except KnowledgeError as e:
                self._open_failure = str(e)
            except Exception as e:  # noqa: BLE001 - explained, never raised raw
                self._open_failure = explain_open_failure(
                    e, transport=self.config.transport, target=self.config.target, statuses=statuses.statuses,
                    api_key_set=bool(self.config.api_key), timeout=self.config.timeout_s)
            if self._open_failure:
                if session is not None:
                    self._discard(session)
                raise KnowledgeError(self._open_failure)
            self._session = session
            return session

    async def _retire(self, session: Session) -> None:
        assert self._lock is not None
        async with self._lock:
            if self._session is session:
                self._session = None
                self._discard(session)

    def _discard(self, session: Session) -> None:
        """Shut a dead or replaced session down without making the caller wait for it."""
        task = asyncio.create_task(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _bind_loop(self) -> None:
        # A session belongs to the event loop that opened it. A caller on a new loop (a sync graph
        # run per turn, say) gets a fresh one. asyncio.run cancels the old session's task on its
        # way out, which stops its server; a loop closed without that leaves the server to its
        # idle exit (idle_exit_s).
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._lock = loop, asyncio.Lock()
            self._session, self._closing = None, set()

    async def _new_session(self, statuses: StatusLog) -> Session:
        started, self._started = self._started, None  # used once: a reconnect starts a new server
        if started is not None:
            c = self.config
            if c.transport == "stdio" and c.command == started.command and c.idle_exit_s == started.idle_exit_s:
                return Session.over_process(started)
            await started.stop()  # started for settings that turned out otherwise
        return Session.to(self._connection(statuses))

    def _connection(self, statuses: StatusLog) -> dict[str, Any]:
        c = self.config
        if c.transport == "stdio":
            env = server_environment(c.idle_exit_s)
            return {"transport": "stdio", "command": c.command[0], "args": c.command[1:], "env": env}
        if not c.url:
            raise KnowledgeError(f"no URL for the {c.transport} transport: set KNOWLEDGE_MCP_URL")
        conn: dict[str, Any] = {"transport": c.transport, "url": c.url, "timeout": c.timeout_s,
                                "httpx_client_factory": statuses.factory}
        if c.api_key:
            conn["headers"] = {"X-API-Key": c.api_key}
        return conn


def _results(tool: str, result: CallToolResult) -> list[dict[str, Any]]:
    """The `results` list of a tool's JSON envelope, or a KnowledgeError saying what was wrong."""
    text = sanitize("".join(getattr(block, "text", "") for block in result.content))
    if result.isError:
        raise KnowledgeError(f"{tool} returned an error: {text.strip()[:400] or '(no message)'}")
    try:
        body = sanitize_data(json.loads(text))  # escapes in JSON strings decode to control characters
    except json.JSONDecodeError as e:
        raise KnowledgeError(f"{tool} returned malformed JSON ({e.msg} at char {e.pos}): {text[:80]!r}") from None
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise KnowledgeError(f"{tool} returned JSON without a 'results' list")
    return [r for r in body["results"] if isinstance(r, dict)]


def _message(e: BaseException) -> str:
    # Exception texts may quote the URL they failed on: redact before the record keeps it.
    return redact_text(sanitize(str(e) if isinstance(e, KnowledgeError) else f"unexpected {type(e).__name__}: {e}"))


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)
