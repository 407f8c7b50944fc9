"""The project folder a run is given is the one it works on: copied, moved, or named relatively.

A session records TP-001 and stops; the folder is then copied or moved, and the next session on
the new folder resumes at the question where the first one stopped, with its history (the
checkpoint travels in the folder), and writes only there. Driven through the real terminal
(`training-pipeline chat` in a pseudo-terminal) and the real `langgraph dev` server.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pexpect
import pytest
import yaml
from langgraph_sdk import get_client

from agent.sidecar import tp_entries
from tests.driver import HAPPY, answer_from
from tests.test_kill_resume import ENV, RESUMED, SCRIPT, Chat, answer, checkpointed_answers, copy_fixture, project_files
from tests.test_studio import CONTEXT, GRAPH, Transcript, drive_sdk

pytestmark = pytest.mark.skipif(SCRIPT is None, reason="the training-pipeline console script is not installed")

STOP_AT = "training_approach.goals"  # the first question after TP-001 is recorded


def everything(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, the session's state folder included."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def record_first_decision(chat: Chat) -> None:
    """Answer until TP-001 is recorded and the next question is on screen, then stop the process."""
    try:
        qid = chat.question()
        while qid != STOP_AT:
            assert qid is not None, chat.seen[-2000:]
            chat.send(answer(qid))
            qid = chat.question()
    finally:
        chat.stop()


def finish(chat: Chat) -> list[str]:
    """Answer every question to the end; the questions asked, in order."""
    asked = []
    try:
        qid = chat.question()
        while qid is not None:
            asked.append(qid)
            chat.send(answer(qid))
            qid = chat.question()
        assert "Done." in chat.finish()
    finally:
        chat.stop()
    return asked


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict[str, bytes], list[dict]]:
    """The files and answers of one uninterrupted session on the fixture."""
    project = copy_fixture("support-bot", tmp_path_factory.mktemp("reference") / "support-bot")
    finish(Chat(project))
    return project_files(project), checkpointed_answers(project)


def assert_complete_as_reference(project: Path, reference) -> None:
    files, answers = reference
    assert project_files(project) == files
    assert checkpointed_answers(project) == answers  # the history came along: none lost, none twice
    raw = yaml.safe_load((project / "sidecar.yaml").read_text(encoding="utf-8"))
    assert [e["id"] for e in tp_entries(raw)] == [f"tp-00{i}" for i in range(1, 7)]


# --- the terminal ---------------------------------------------------------------------------------


def test_a_copied_project_resumes_in_the_copy_and_leaves_the_original_alone(tmp_path, reference):
    original = copy_fixture("support-bot", tmp_path / "original")
    record_first_decision(Chat(original))
    before = everything(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)

    chat = Chat(copy)
    asked = finish(chat)
    assert RESUMED.search(chat.seen) and asked[0] == STOP_AT  # at the question where the original stopped

    assert everything(original) == before  # not a byte written to the original, its checkpoint included
    assert_complete_as_reference(copy, reference)


def test_a_moved_project_resumes_in_its_new_place(tmp_path, reference):
    original = copy_fixture("support-bot", tmp_path / "original")
    record_first_decision(Chat(original))
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    original.rename(moved)

    chat = Chat(moved)
    asked = finish(chat)
    assert RESUMED.search(chat.seen) and asked[0] == STOP_AT
    assert "not found" not in chat.seen
    assert not original.exists()  # nothing was written to where it used to be
    assert_complete_as_reference(moved, reference)


def test_a_relative_project_path_resumes_from_another_working_directory(tmp_path, reference):
    """`make chat` passes `--project demo`: a later session from elsewhere names it another way."""
    home = tmp_path / "checkout"
    copy_fixture("support-bot", home / "demo")
    first = Chat.__new__(Chat)
    first.child = pexpect.spawn(SCRIPT, ["chat", "--project", "demo", "--offline"], cwd=str(home), env=ENV,
                                encoding="utf-8", timeout=90, dimensions=(50, 200))
    first.seen = ""
    record_first_decision(first)

    (tmp_path / "other").mkdir()
    second = Chat.__new__(Chat)
    second.child = pexpect.spawn(SCRIPT, ["chat", "--project", "../checkout/demo", "--offline"], cwd=str(tmp_path / "other"),
                                 env=ENV, encoding="utf-8", timeout=90, dimensions=(50, 200))
    second.seen = ""
    asked = finish(second)
    assert RESUMED.search(second.seen) and asked[0] == STOP_AT
    assert not (tmp_path / "other" / "demo").exists()
    assert_complete_as_reference(home / "demo", reference)


# --- the LangGraph API server (`langgraph dev`) --------------------------------------------------------


def run_state(url: str, thread_id: str) -> dict:
    async def get() -> dict:
        return await get_client(url=url).threads.get_state(thread_id)

    return asyncio.run(get())


@pytest.fixture(scope="module")
def server_reference(server, tmp_path_factory) -> tuple[dict[str, bytes], list[dict]]:
    """One uninterrupted session through the server (its runs date decisions from the run context)."""
    project = copy_fixture("support-bot", tmp_path_factory.mktemp("server-reference") / "support-bot")
    t = asyncio.run(drive_sdk(server.url, Transcript(project), answer_from(HAPPY)))
    return project_files(project), t.values["answers"]


SERVER_STOP_AT = "training_approach.decision"  # TP-001 recorded, TP-002 proposed: "yes" writes to the folder


@pytest.mark.parametrize("how", ["copied", "moved"])
def test_a_server_thread_continues_on_the_folder_its_run_is_given(server, tmp_path, how, server_reference):
    """A thread started on one folder, resumed with `project_dir` in the run's context: the run
    works on that folder, with the thread's history, and writes nothing to the old one."""
    original = copy_fixture("support-bot", tmp_path / "original")
    happy = answer_from(HAPPY)
    t = asyncio.run(drive_sdk(server.url, Transcript(original), happy, stop=lambda p: p["question_id"] == SERVER_STOP_AT))
    assert t.question_ids[-1] == SERVER_STOP_AT
    before = everything(original)
    target = tmp_path / how
    if how == "copied":
        shutil.copytree(original, target)
    else:
        original.rename(target)
        # A run that names no folder goes on with the thread's, which is gone: it stops with a message
        # that says how to give the new one, and creates nothing where the folder was.
        error = asyncio.run(_resume(server.url, t.thread_id, "yes", CONTEXT))
        assert error.get("error") == "ProjectError", error  # the server shows clients the kind; its log has the text
        assert f"Project folder not found: {original}. If the project was moved or copied, give its folder as `project_dir`" in server.log()
        assert not original.exists()

    resumed = Transcript(target, thread_id=t.thread_id)
    asyncio.run(_drive_with_context(server.url, resumed, happy, {**CONTEXT, "project_dir": str(target)}))

    if how == "copied":
        assert everything(original) == before  # the original folder was not touched
    else:
        assert not original.exists()
    files, answers = server_reference
    assert project_files(target) == files
    values = run_state(server.url, t.thread_id)["values"]
    assert values["answers"] == answers  # the thread's history, none lost or twice
    server.assert_no_blocking_calls()


async def _resume(url: str, thread_id: str, value, context: dict) -> dict:
    """Resume with `value`; the run's error ({} if it ran)."""
    result = await get_client(url=url).runs.wait(thread_id, GRAPH, command={"resume": value}, context=context, raise_error=False)
    return (result.get("__error__") if isinstance(result, dict) else None) or {}


async def _drive_with_context(url: str, t: Transcript, answer, context: dict) -> Transcript:
    """drive_sdk with a run context of our own: every run of the resumed thread names the folder."""
    client = get_client(url=url)
    state = await client.threads.get_state(t.thread_id)
    if not state["interrupts"]:  # a failed run left the step to be run again: run it, now with the folder
        await client.runs.wait(t.thread_id, GRAPH, input=None, context=context)
    for _ in range(60):
        state = await client.threads.get_state(t.thread_id)
        if not state["interrupts"]:
            t.values = state["values"]
            return t
        [pending] = state["interrupts"]
        t.payloads.append(pending["value"])
        await client.runs.wait(t.thread_id, GRAPH, command={"resume": answer(pending["value"])}, context=context)
    raise AssertionError(f"no end: {t.question_ids}")


from tests.test_studio import _local_server_bypasses_proxies, server  # noqa: E402,F401  (module fixtures)
