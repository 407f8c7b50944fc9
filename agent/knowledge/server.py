"""The embedded Knowledge MCP server: the real server's seven tools over our curated data.

From a client's side it must be indistinguishable from the public server
(see the knowledge-mcp contract): same tool names, parameters and limits, one
text block of pretty-printed JSON `{"results": [...], "metadata": {...}}` and
no structuredContent, "Input validation error: ..." for bad arguments and
"Error calling <tool>. Status code: N. Response: {...}" for route errors.

Run it with `python -m agent.knowledge.server --transport stdio|streamable-http|sse`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import sys
import threading
import asyncio
import time
from collections.abc import Sequence
from typing import Annotated, Any

from mcp.server.fastmcp import FastMCP
from mcp.types import CallToolResult, TextContent
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from agent.knowledge.spawn import IDLE_EXIT_ENV
from agent.knowledge.store import KnowledgeBase, default_knowledge_base

API_KEY_ENV = "KNOWLEDGE_MCP_SERVER_API_KEY"
TRANSPORTS = ("stdio", "streamable-http", "sse")
_ALIASES = {"streamable_http": "streamable-http", "http": "streamable-http"}

# A string defaulting to "" as on the real server: "" means every item (metadata.query "all"),
# and null breaks the schema ("Input validation error: None is not of type 'string'").
Topic = Annotated[str, Field(description="Exact topic tag to filter on (case-sensitive), e.g. 'fine-tuning'. "
                                         "Empty or omitted for all.")]
Limit500 = Annotated[int, Field(ge=1, le=500, description="Maximum results")]


def _envelope(results: list[dict[str, Any]], metadata: dict[str, Any]) -> CallToolResult:
    body = {"results": results, "metadata": metadata}
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(body, indent=2, ensure_ascii=False))])


def _route_error(tool: str, status: int, code: str, message: str, details: dict[str, Any]) -> CallToolResult:
    # fastapi-mcp reports a non-2xx route response this way, with the body as sent (compact JSON).
    body = json.dumps({"error": {"code": code, "message": message, "details": details, "retry_after": None}},
                      separators=(",", ":"))
    return CallToolResult(isError=True, content=[TextContent(
        type="text", text=f"Error calling {tool}. Status code: {status}. Response: {body}")])


def _cited(rows: list[dict[str, Any]], key: str) -> list[str]:
    return sorted({r[key] for r in rows if r.get(key)})


def _ms(start: float) -> int:
    return int((time.perf_counter() - start) * 1000)


class KnowledgeServer(FastMCP):
    """FastMCP whose HTTP apps require an X-API-Key when one is configured.

    Deliberate difference from the real server: there a key only raises a caller's tier and a
    request without one is served at the public tier (every tool works); a wrong key gets 401.
    Here a configured key is the only thing between the network and the server (`kb serve`
    refuses a host beyond loopback without one), so it guards every request: missing or wrong,
    401 with the real server's error body. Without a configured key, everything is served, as
    the real server serves the public tier.
    """

    def __init__(self, api_key: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.api_key = api_key or None
        self.last_call = time.monotonic()
        self.latency_s = 0.0  # added per call, to stand in for a remote server's latency in benchmarks

    async def call_tool(self, name: str, arguments: dict[str, Any]):  # type: ignore[override]
        self.last_call = time.monotonic()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return await super().call_tool(name, arguments)

    def sse_app(self, mount_path: str | None = None):  # type: ignore[override]
        return self._guard(super().sse_app(mount_path))

    def streamable_http_app(self):  # type: ignore[override]
        return self._guard(super().streamable_http_app())

    def _guard(self, app):
        if self.api_key:
            app.add_middleware(RequireApiKey, api_key=self.api_key)
        return app


class RequireApiKey:
    """Pure ASGI middleware (so SSE streams are not buffered): 401 unless X-API-Key matches."""

    def __init__(self, app, api_key: str):
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] == "/health":
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(b"x-api-key")
        if given is not None and secrets.compare_digest(given, self.key):
            return await self.app(scope, receive, send)
        reason = "key_missing" if given is None else "key_invalid_or_expired"
        message = ("Missing API key: send it in the X-API-Key header" if given is None
                   else "Invalid or expired API key")
        response = JSONResponse(status_code=401, content={"error": {
            "code": "UNAUTHORIZED", "message": message,
            "details": {"header": "X-API-Key", "reason": reason}, "retry_after": None}})
        await response(scope, receive, send)


def build_server(api_key: str | None = None, *, host: str = "127.0.0.1", port: int = 8765,
                 kb: KnowledgeBase | None = None) -> FastMCP:
    """The server with its seven tools; HTTP apps built from it require `api_key` if given.

    The knowledge base loads on the first tool call, not here: a stdio client waits for
    our start-up, and the import of the MCP SDK alone takes most of the time budget
    (`serve` loads it beside the stdio handshake).
    """
    store = (lambda: kb) if kb is not None else default_knowledge_base
    mcp = KnowledgeServer(
        api_key=api_key, name="AI Engineering Knowledge (embedded)",
        instructions="Decisions, patterns, warnings and methodologies on LLM fine-tuning, with sources.",
        host=host, port=port, log_level="WARNING",  # stdio clients show our stderr: stay quiet
        streamable_http_path="/mcp", sse_path="/mcp", message_path="/mcp/messages/",
    )

    @mcp.tool(description="Search all knowledge (chunks and extractions) for a natural-language query; "
                          "results are ranked, best first, with a relevance score.")
    def search_knowledge(query: Annotated[str, Field(min_length=1, description="Natural-language search query")],
                         limit: Annotated[int, Field(ge=1, le=100, description="Maximum results")] = 10) -> CallToolResult:
        start = time.perf_counter()
        rows = store().search(query, limit)
        return _envelope(rows, {"query": query, "sources_cited": sorted({r["source"]["title"] for r in rows}),
                                "result_count": len(rows), "search_type": "semantic", "latency_ms": _ms(start)})

    def _filtered(kind: str, topic: str, limit: int) -> CallToolResult:
        start = time.perf_counter()
        rows = store().filter(kind, topic, limit)
        return _envelope(rows, {"query": topic or "all",
                                "sources_cited": _cited(rows, "source_title"), "result_count": len(rows),
                                "search_type": "filtered", "latency_ms": _ms(start)})

    @mcp.tool(description="Decision points (question, options, considerations, recommended approach) "
                          "whose topics contain `topic` exactly; storage order, not ranked.")
    def get_decisions(topic: Topic = "", limit: Limit500 = 100) -> CallToolResult:
        return _filtered("decision", topic, limit)

    @mcp.tool(description="Reusable patterns (problem, solution, trade-offs) whose topics contain `topic` exactly.")
    def get_patterns(topic: Topic = "", limit: Limit500 = 100) -> CallToolResult:
        return _filtered("pattern", topic, limit)

    @mcp.tool(description="Pitfalls (description, symptoms, consequences, prevention) whose topics contain `topic` exactly.")
    def get_warnings(topic: Topic = "", limit: Limit500 = 100) -> CallToolResult:
        return _filtered("warning", topic, limit)

    # Steps come as the stored {order, title, description} objects. The real server declares them
    # as strings, fails on its own stored objects and falls back to `steps: []`: a bug we do not copy.
    @mcp.tool(description="Step-by-step methodologies whose topics contain `topic` exactly.")
    def get_methodologies(topic: Topic = "", limit: Limit500 = 100) -> CallToolResult:
        return _filtered("methodology", topic, limit)

    @mcp.tool(description="All knowledge sources (papers, book chapters, documentation) with extraction counts.")
    def list_sources(limit: Limit500 = 100) -> CallToolResult:
        start = time.perf_counter()
        rows = [dict(s, extraction_counts=dict(s["extraction_counts"])) for s in store().sources[:limit]]
        return _envelope(rows, {"query": "all", "sources_cited": [], "result_count": len(rows),
                                "search_type": "list", "latency_ms": _ms(start)})

    @mcp.tool(description="Side by side, what each of the given sources (ids from list_sources) says on a topic.")
    def compare_sources(topic: Annotated[str, Field(description="Topic tag to compare, e.g. 'fine-tuning'")],
                        source_ids: Annotated[list[str], Field(min_length=2, description="Source ids, 2 or more")],
                        limit_per_source: Annotated[int, Field(ge=1, le=50, description="Extractions per source")] = 10,
                        ) -> CallToolResult:
        start = time.perf_counter()
        try:
            rows = store().compare(topic, source_ids, limit_per_source)
        except KeyError as missing:
            sid = missing.args[0]
            return _route_error("compare_sources", 404, "NOT_FOUND", f"source with id '{sid}' not found",
                                {"resource": "source", "id": sid})
        return _envelope(rows, {"query": topic, "sources_cited": [r["source_title"] for r in rows],
                                "result_count": len(rows), "search_type": "comparison", "latency_ms": _ms(start)})

    @mcp.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> JSONResponse:
        data = store()
        return JSONResponse({"status": "healthy", "sources": len(data.sources),
                             "extractions": sum(len(v) for v in data.items.values())})

    # FastMCP skips the JSON-schema check and reports pydantic errors in its own words; the
    # real server answers bad arguments with "Input validation error: ...", so validate first.
    mcp._mcp_server.call_tool(validate_input=True)(mcp.call_tool)
    return mcp


def resolve_transport(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name not in TRANSPORTS:
        raise ValueError(f"unknown transport {name!r}: use one of {', '.join(TRANSPORTS)}")
    return name


def is_loopback(host: str) -> bool:
    """True for names and addresses only this machine can reach (localhost, 127.x, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # any other host name may resolve to an address others can reach


def exposure_refusal(transport: str, host: str, *, has_key: bool, insecure: bool) -> str | None:
    """Why an HTTP server on `host` must not start, or None.

    Beyond loopback, without a key, anyone on the network could use the server: refuse
    unless the operator says so with --insecure.
    """
    if transport == "stdio" or has_key or insecure or is_loopback(host):
        return None
    return (f"Refusing to serve the knowledge base on {host} without an API key: anyone who can reach "
            f"this machine could use it. Give --api-key KEY (or set {API_KEY_ENV}) so clients must send it "
            "in the X-API-Key header, listen on 127.0.0.1 instead, or add --insecure to serve without a key anyway.")


def serve(transport: str, host: str = "127.0.0.1", port: int = 8765, api_key: str | None = None,
          latency_ms: float = 0) -> None:
    """Serve until interrupted. The API key (or env KNOWLEDGE_MCP_SERVER_API_KEY) guards HTTP transports."""
    transport = resolve_transport(transport)
    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    server = build_server(api_key=api_key, host=host, port=port)
    server.latency_s = latency_ms / 1000
    if transport != "stdio":
        default_knowledge_base()  # a long-running HTTP server: load now, fail now on bad data
        path = "/mcp" if transport == "streamable-http" else "/mcp (GET) and /mcp/messages/ (POST)"
        guard = ", X-API-Key required" if api_key else ""
        print(f"knowledge server: {transport} on http://{host}:{port}{path}{guard}", file=sys.stderr, flush=True)
    else:
        _load_beside_handshake()
    idle = float(os.environ.get(IDLE_EXIT_ENV) or 0)
    if transport == "stdio" and idle > 0:
        _exit_when_idle(server, idle)
    server.run(transport)  # type: ignore[arg-type]


def _load_beside_handshake() -> None:
    """Load the knowledge base in the background: the handshake does not wait for it, and a client
    that started us ahead of its first query (the terminal chat) finds it loaded. A failure is left
    to the first tool call, which loads again and reports it."""
    def load() -> None:
        try:
            default_knowledge_base()
        except Exception:  # noqa: BLE001 - reported by the first tool call
            pass

    threading.Thread(target=load, name="load-knowledge", daemon=True).start()


def _exit_when_idle(server: KnowledgeServer, idle_s: float) -> None:
    """Leave after `idle_s` seconds without a tool call.

    A client whose event loop was closed without cleanup can no longer end our session, and
    we would live as long as its process. Our client reconnects transparently after this.
    """
    def watch() -> None:
        while True:
            time.sleep(min(idle_s / 4, 30))
            if time.monotonic() - server.last_call > idle_s:
                os._exit(0)

    threading.Thread(target=watch, name="idle-exit", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="knowledge-server", description=__doc__.splitlines()[0])
    parser.add_argument("--transport", default="stdio", help="stdio | streamable-http | sse (default stdio)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=None, help=f"require this X-API-Key on HTTP (default: ${API_KEY_ENV})")
    parser.add_argument("--insecure", action="store_true",
                        help="serve a host beyond loopback without an API key (anyone who reaches it may use it)")
    parser.add_argument("--latency-ms", type=float, default=0,
                        help="delay every tool call by this much (benchmarks: stands in for a remote server)")
    args = parser.parse_args(argv)
    try:
        transport = resolve_transport(args.transport)
    except ValueError as e:
        parser.error(str(e))
    has_key = bool(args.api_key or os.environ.get(API_KEY_ENV))
    refusal = exposure_refusal(transport, args.host, has_key=has_key, insecure=args.insecure)
    if refusal:
        print(refusal, file=sys.stderr, flush=True)
        return 2
    if transport != "stdio" and not has_key and not is_loopback(args.host):
        print(f"knowledge server: WARNING: serving {args.host} without an API key (--insecure): "
              "anyone who can reach this port can use it", file=sys.stderr, flush=True)
    try:
        serve(transport, host=args.host, port=args.port, api_key=args.api_key, latency_ms=args.latency_ms)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
