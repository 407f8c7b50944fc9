"""One long-lived MCP session, and plain-words explanations of why one failed.

The session's context managers (anyio task groups, the stdio child process)
must be entered and exited by the same task, while graph nodes call from
whatever task they run in. So a background task owns the session for its
whole life; callers only borrow `ClientSession.call_tool`.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, AsyncContextManager

import anyio
import httpx
from langchain_mcp_adapters.client import MultiServerMCPClient
from mcp import ClientSession
from mcp.shared.exceptions import McpError
from mcp.shared.message import SessionMessage
from mcp.types import CallToolResult, JSONRPCMessage

from agent.knowledge.spawn import StartedServer
from agent.redact import redact_text

SERVER = "knowledge"


class KnowledgeError(Exception):
    """A knowledge call failed; the message is meant for the user."""


class StatusLog:
    """Remembers HTTP error statuses seen, since the MCP clients only surface them as task-group noise."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    def factory(self, headers: dict[str, str] | None = None, timeout: httpx.Timeout | None = None,
                auth: httpx.Auth | None = None) -> httpx.AsyncClient:
        async def record(response: httpx.Response) -> None:
            if response.status_code >= 400:
                self.statuses.append(response.status_code)

        return httpx.AsyncClient(headers=headers, timeout=timeout or httpx.Timeout(30.0), auth=auth,
                                 follow_redirects=True, event_hooks={"response": [record]})


class Session:
    """An MCP session owned by a background task, opened once and closed on demand."""

    def __init__(self, connect: Callable[[], AsyncContextManager[ClientSession]]):
        self._connect = connect  # opens and initializes the MCP session
        self._session: Any = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    @classmethod
    def to(cls, connection: dict[str, Any]) -> "Session":
        """A session the MCP adapters open (for stdio, starting the server process themselves)."""
        client = MultiServerMCPClient({SERVER: connection})  # type: ignore[dict-item]
        return cls(lambda: client.session(SERVER))

    @classmethod
    def over_process(cls, server: StartedServer) -> "Session":
        """A session with an embedded server process started earlier (see agent.knowledge.spawn)."""
        return cls(lambda: _initialized(server))

    @property
    def alive(self) -> bool:
        return self._session is not None and self._task is not None and not self._task.done()

    async def open(self, timeout: float) -> None:
        """Start the session; raise the underlying error, or TimeoutError after `timeout` seconds."""
        self._task = asyncio.create_task(self._own(), name="knowledge-mcp-session")
        ready = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait({self._task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if self.alive:
            return
        if self._task.done():
            raise self.error or ConnectionError("the session closed while starting")
        self._task.cancel()  # a server that never answers: give up, and let the task clean up
        raise TimeoutError

    async def _own(self) -> None:
        try:
            async with self._connect() as session:
                self._session = session
                self._ready.set()
                await self._stop.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - kept for the caller to explain
            self.error = e
        finally:
            self._session = None

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float) -> CallToolResult:
        """The tool's result; ConnectionError as soon as the session ends under the call.

        A session closed by cancellation (a sibling call found the server restarted and retired
        it) never answers the requests still in flight on it: without the race they would wait
        out the whole call timeout instead of retrying on the new session.
        """
        session, owner = self._session, self._task
        if session is None or owner is None or not self.alive:
            raise ConnectionError("the session is closed")
        call = asyncio.ensure_future(session.call_tool(tool, arguments))
        try:
            done, _ = await asyncio.wait({call, owner}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not call.done():
                call.cancel()
                await asyncio.wait({call})  # as wait_for does: the request's cleanup runs before we go on
        if call in done:
            return call.result()
        if owner.done():
            raise ConnectionError("the session closed during the call")
        raise TimeoutError

    async def close(self, grace: float = 5.0) -> None:
        """Stop the session and wait (bounded) for the server process or stream to shut down."""
        task = self._task
        if task is None or task.done():
            return
        self._stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), grace)
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


PROCESS_EXIT_GRACE_S = 2.0  # as the MCP SDK's stdio client: then SIGTERM, then SIGKILL


@contextlib.asynccontextmanager
async def _initialized(server: StartedServer) -> AsyncIterator[ClientSession]:
    async with _process_streams(server.process) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def _end(process: asyncio.subprocess.Process) -> None:
    """Wait for the server to leave; past each grace period, terminate it, then kill it."""
    for stop in (process.terminate, process.kill):
        try:
            with anyio.fail_after(PROCESS_EXIT_GRACE_S):
                await process.wait()
            return
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                stop()
    await process.wait()


@contextlib.asynccontextmanager
async def _process_streams(process: asyncio.subprocess.Process) -> AsyncIterator[tuple[Any, Any]]:
    """MCP's stdio transport over a process already running: one JSON-RPC message a line each
    way, and the SDK's shutdown (close the server's stdin, wait, then terminate)."""
    assert process.stdout is not None and process.stdin is not None
    stdout, stdin = process.stdout, process.stdin
    incoming_writer, incoming = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    outgoing, outgoing_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def read_server() -> None:
        decoder, buffer = codecs.getincrementaldecoder("utf-8")(), ""
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            async with incoming_writer:
                while chunk := await stdout.read(65536):
                    *lines, buffer = (buffer + decoder.decode(chunk)).split("\n")
                    for line in lines:
                        try:
                            message: SessionMessage | Exception = SessionMessage(JSONRPCMessage.model_validate_json(line))
                        except Exception as exc:  # noqa: BLE001 - handed to the session, as the SDK does
                            message = exc
                        await incoming_writer.send(message)

    async def write_server() -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, ConnectionError):
            async with outgoing_reader:
                async for sent in outgoing_reader:
                    stdin.write((sent.message.model_dump_json(by_alias=True, exclude_none=True) + "\n").encode())
                    await stdin.drain()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read_server)
        tasks.start_soon(write_server)
        try:
            yield incoming, outgoing
        finally:
            with contextlib.suppress(Exception):
                stdin.close()
            await _end(process)
            for stream in (incoming, outgoing, incoming_writer, outgoing_reader):
                await stream.aclose()
            tasks.cancel_scope.cancel()


def leaves(exc: BaseException) -> list[BaseException]:
    """The real errors inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def is_disconnect(exc: BaseException) -> bool:
    """True when the error means the session is gone (worth one reconnect), not a bad request."""
    for e in leaves(exc):
        if isinstance(e, (ConnectionError, EOFError, httpx.TransportError)):
            return True
        # "closed": the stdio child or stream ended; "terminated": an HTTP server forgot our session.
        if isinstance(e, McpError) and any(w in str(e).lower() for w in ("closed", "terminated")):
            return True
        if type(e).__name__ in {"ClosedResourceError", "BrokenResourceError", "EndOfStream"}:
            return True
    return False


_OTHER = {"streamable_http": "sse", "sse": "streamable_http"}


def explain_open_failure(exc: BaseException, *, transport: str, target: str, statuses: list[int],
                         api_key_set: bool, timeout: float) -> str:
    """Say why the session did not open, and what to change (URLs in it without credentials)."""
    return redact_text(_explain(exc, transport=transport, target=target, statuses=statuses,
                                api_key_set=api_key_set, timeout=timeout))


def _explain(exc: BaseException, *, transport: str, target: str, statuses: list[int],
             api_key_set: bool, timeout: float) -> str:
    errors = leaves(exc)
    codes = statuses + [e.response.status_code for e in errors if isinstance(e, httpx.HTTPStatusError)]
    if 401 in codes or 403 in codes:
        if api_key_set:
            return (f"knowledge server at {target} rejected the API key (HTTP 401): check the key sent in the "
                    "X-API-Key header (KNOWLEDGE_MCP_API_KEY)")
        return (f"knowledge server at {target} requires an API key (HTTP 401): set KNOWLEDGE_MCP_API_KEY; "
                "it is sent in the X-API-Key header")
    if transport in _OTHER:
        other = _OTHER[transport]
        hint = f"if the server speaks {other}, set KNOWLEDGE_MCP_TRANSPORT={other}"
        if 404 in codes:
            return (f"{transport} transport: nothing at {target} (HTTP 404): check the URL; the MCP endpoint "
                    "is usually /mcp")
        if any(c in (400, 405, 406) for c in codes):
            return (f"{transport} transport failed at {target} (HTTP {codes[-1]}): the server does not accept "
                    f"this transport; {hint}")
        if isinstance(exc, TimeoutError):
            return f"{transport} transport to {target}: no MCP answer within {timeout:g}s; {hint}"
        if any(isinstance(e, httpx.ConnectError) for e in errors):
            return f"{transport} transport: cannot connect to {target}: is the knowledge server running?"
        detail = "; ".join(f"{type(e).__name__}: {e}" for e in errors)[:300]
        if codes:
            detail = f"HTTP {codes[-1]}; {detail}"
        return f"{transport} transport to {target} failed ({detail}); {hint}"
    # stdio: we started the server ourselves.
    if isinstance(exc, TimeoutError):
        return f"knowledge server ({target}) did not answer within {timeout:g}s of starting"
    if any(isinstance(e, (FileNotFoundError, PermissionError)) for e in errors):
        return f"cannot start the knowledge server ({target}): {errors[0]}"
    if is_disconnect(exc):
        return f"knowledge server ({target}) exited during start-up; run it by hand to see its error"
    detail = "; ".join(f"{type(e).__name__}: {e}" for e in errors)[:300]
    return f"knowledge server ({target}) failed to start: {detail}"
