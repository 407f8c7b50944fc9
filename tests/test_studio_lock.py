"""The LangGraph API server (the path of Studio and the SDK) respects a project held by `chat`:
a run on it is refused with the holder's name, a run mid-session stops at its next write
with the answer kept, and both go on once the holder has left."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from langgraph_sdk import get_client

from agent.sidecar import tp_entries
from tests.driver import HAPPY, answer_from
from tests.test_integrity import Holder
from tests.test_studio import CONTEXT, GRAPH, DevServer, Transcript, copy_fixture, drive_sdk


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio-lock")
    srv = DevServer(root / "server", root / "checkpoints")
    srv.start()
    yield srv
    srv.stop()


async def run_text(url: str, thread_id: str | None, **run: object) -> tuple[str, str]:
    """(thread id, what the run returned or raised, as text)."""
    client = get_client(url=url)
    if thread_id is None:
        thread_id = (await client.threads.create())["thread_id"]
    try:
        out = await client.runs.wait(thread_id, GRAPH, context=CONTEXT, **run)
    except Exception as exc:  # noqa: BLE001 - the error is what is checked
        return thread_id, str(exc)
    return thread_id, json.dumps(out, default=str)


def test_a_new_thread_on_a_held_project_is_refused_with_the_holder(server, tmp_path):
    project = copy_fixture("support-bot", tmp_path / "projects")
    before = (project / "sidecar.yaml").read_bytes()
    holder = Holder(project)
    try:
        _, text = asyncio.run(run_text(server.url, None, input={"project_dir": str(project)}))
        assert f"in use by training-pipeline chat (pid {holder.proc.pid})" in text
        assert (project / "sidecar.yaml").read_bytes() == before
    finally:
        holder.release()
    t = asyncio.run(drive_sdk(server.url, Transcript(project), answer_from(HAPPY)))
    assert len(t.values["decisions"]) == 6
    server.assert_no_blocking_calls()


def test_a_thread_mid_session_is_stopped_at_its_write_and_keeps_the_answer(server, tmp_path):
    project = copy_fixture("support-bot", tmp_path / "projects")
    t = asyncio.run(drive_sdk(server.url, Transcript(project), answer_from(HAPPY),
                              stop=lambda p: p["question_id"] == "base_model.decision"))
    before = (project / "sidecar.yaml").read_bytes()
    holder = Holder(project)  # `chat` takes the project between two answers
    try:
        asyncio.run(run_text(server.url, t.thread_id, command={"resume": "yes"}))
        state = asyncio.run(get_client(url=server.url).threads.get_state(t.thread_id))
        [pending] = state["interrupts"]
        assert pending["value"]["question_id"] == "base_model.decision"
        assert f"in use by training-pipeline chat (pid {holder.proc.pid})" in pending["value"]["error"]
        assert (project / "sidecar.yaml").read_bytes() == before
    finally:
        holder.release()
    t.payloads.pop()
    asyncio.run(drive_sdk(server.url, t, answer_from(HAPPY)))
    sidecar = yaml.safe_load((project / "sidecar.yaml").read_text(encoding="utf-8"))
    assert [d["id"] for d in tp_entries(sidecar)] == [f"tp-00{i}" for i in range(1, 7)]
    server.assert_no_blocking_calls()
