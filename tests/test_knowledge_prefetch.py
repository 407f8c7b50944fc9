"""Queries asked ahead, as the terminal chat does while it loads the graph: a later `run` takes
their records without asking the server again, asks again for one that failed, and a client that
ends first leaves nothing running. The server is the embedded one over stdio, logging each call."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap

import pytest

from agent.knowledge.catalog import FIRST_QUESTION_STAGES, STAGES, queries_for
from agent.knowledge.client import KnowledgeClient, KnowledgeConfig
from tests.conftest import seconds
from tests.driver import Session

# Every call is logged; while the file named by argv[2] exists, every call fails.
LOGGING_SERVER = textwrap.dedent('''
    import json, os, sys
    from agent.knowledge import server

    log, failing = sys.argv[1], sys.argv[2]
    original = server.KnowledgeServer.call_tool

    async def call_tool(self, name, arguments):
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps([name, arguments], sort_keys=True) + "\\n")
        if os.path.exists(failing):
            raise RuntimeError("not now")
        return await original(self, name, arguments)

    server.KnowledgeServer.call_tool = call_tool
    server.build_server().run("stdio")
''')


@pytest.fixture
def logged(tmp_path):
    script = tmp_path / "logging_server.py"
    script.write_text(LOGGING_SERVER, encoding="utf-8")
    log, failing = tmp_path / "calls.jsonl", tmp_path / "failing"

    def client() -> KnowledgeClient:
        return KnowledgeClient(KnowledgeConfig(command=[sys.executable, str(script), str(log), str(failing)], timeout_s=seconds(60)))

    def calls() -> list[str]:
        """The calls logged so far, but for list_sources (asked by whichever query needs authors first)."""
        lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
        return [line for line in lines if not line.startswith('["list_sources"')]

    return client, calls, failing


def first_question_queries():
    return [q for stage in FIRST_QUESTION_STAGES for q in queries_for(stage)]


async def settled(client: KnowledgeClient) -> None:
    """Until every query asked ahead has its record (the test looks at the server's log then)."""
    await asyncio.gather(*client._prefetched.values())


async def test_run_takes_the_records_asked_for_ahead(logged):
    client_for, calls, _ = logged
    queries = first_question_queries()
    async with client_for() as alone:
        expected = await alone.run(queries)
    asked_alone = sorted(calls())
    log_start = len(asked_alone)

    async with client_for() as client:
        client.prefetch(queries)
        await settled(client)
        records = await client.run(queries)
    asked = sorted(calls()[log_start:])

    assert asked == asked_alone  # each call once: the run asked nothing again
    assert [r.error for r in records] == [None] * len(queries)
    assert [r.result_ids for r in records] == [r.result_ids for r in expected]


async def test_a_query_that_failed_ahead_is_asked_again(logged):
    client_for, calls, failing = logged
    queries = first_question_queries()
    failing.touch()
    async with client_for() as client:
        client.prefetch(queries)
        await settled(client)
        failed = len(calls())
        failing.unlink()
        records = await client.run(queries)
    assert failed >= len(queries)
    assert [r.error for r in records] == [None] * len(queries)


async def test_a_client_that_ends_first_leaves_nothing_running(logged):
    client_for, _, _ = logged
    async with client_for() as client:
        client.prefetch([q for stage in STAGES for q in queries_for(stage)])
    assert client._prefetched == {}
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


def test_the_queries_asked_ahead_are_those_a_new_sessions_first_question_shows(loop, knowledge, project_copy):
    session = Session(loop, knowledge, str(project_copy("support-bot")))
    assert session.start()["question_id"].startswith("base_model.")
    values = session.app.get_state(session.config).values
    assert {r["section"] for r in values["knowledge"]} == set(FIRST_QUESTION_STAGES)
    assert {r["query_id"] for r in values["knowledge"]} == {q.id for q in first_question_queries()}
