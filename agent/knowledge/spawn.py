"""Starting the embedded knowledge server before the chat has imported anything heavy.

The server is a child process speaking MCP over stdio; its start-up (a new Python importing the
MCP server stack) takes about as long as the chat's own imports. Started first, it gets ready on
the other core while the chat imports the graph, and the client later opens its MCP session over
the pipes of this very process (`agent.knowledge.connection.Session.over_process`).

This module imports only the standard library, so that the chat can start the server at once.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# Our client asks the embedded stdio servers it starts to leave after this many idle seconds.
IDLE_EXIT_ENV = "KNOWLEDGE_MCP_SERVER_IDLE_EXIT"
DEFAULT_IDLE_EXIT_S = 600.0
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding the `agent` package
# What the MCP SDK's stdio client passes on to a server it starts (its POSIX list); a test holds
# the two equal.
INHERITED_ENV = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")


def embedded_command() -> list[str]:
    return [sys.executable, "-m", "agent.knowledge.server", "--transport", "stdio"]


def server_environment(idle_exit_s: float = DEFAULT_IDLE_EXIT_S) -> dict[str, str]:
    """The environment an embedded server is started with, however it is started."""
    env = {k: v for k in INHERITED_ENV if (v := os.environ.get(k)) is not None and not v.startswith("()")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
    env[IDLE_EXIT_ENV] = f"{idle_exit_s:g}"
    return env


def embedded_configured() -> bool:
    """Whether the environment leaves the knowledge settings at the embedded server (see
    `KnowledgeConfig.load`, which has the last word: a mismatch only costs the early start)."""
    transport = os.environ.get("KNOWLEDGE_MCP_TRANSPORT") or "stdio"
    return not os.environ.get("KNOWLEDGE_MCP_URL") and transport == "stdio"


@dataclass
class StartedServer:
    """An embedded server process started ahead of its MCP session."""

    process: asyncio.subprocess.Process
    command: list[str]
    idle_exit_s: float

    async def stop(self) -> None:
        """For a server no session took over: end it, and reap it."""
        if self.process.returncode is None:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass
        await self.process.wait()


async def start_embedded(idle_exit_s: float = DEFAULT_IDLE_EXIT_S) -> StartedServer | None:
    """Start the embedded server now; None if it cannot be started (the client then starts one
    the usual way, and reports the error there)."""
    command = embedded_command()
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=server_environment(idle_exit_s),
            start_new_session=True,  # as the MCP SDK does: Ctrl-C in the terminal is ours, not the server's
        )
    except OSError:
        return None
    return StartedServer(process, command, idle_exit_s)
