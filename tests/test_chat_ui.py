"""Agent Chat UI's path: the real `langgraph dev` server, driven with the requests that UI sends.

The UI (langchain-ai/agent-chat-ui, on @langchain/langgraph-sdk) starts and continues a thread with
`{"messages": [<human message with text blocks>]}` as input, shows an interrupt as a card under the
last AI message when its value is a human-in-the-loop request (`action_requests`, `review_configs`),
and resumes with `{"decisions": [...]}`. Card inputs send every edited value as a string.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest
import yaml
from langgraph_sdk import get_client

from agent.interview import PAYLOAD_SCHEMA
from tests.driver import HAPPY, answer_from
from tests.test_studio import (
    CONTEXT,
    GRAPH,
    MAX_TURNS,
    DevServer,
    Transcript,
    _local_server_bypasses_proxies,  # noqa: F401  (module fixture: no proxy for 127.0.0.1)
    artifacts,
    copy_fixture,
    drive_in_process,
)

# One session shows every kind of answer the UI can give; the same answers in the terminal's words:
# a chat message while a question waits, a reject with a message (free text), an edit of a form
# (the edited fields), an invalid edit (asked again), approvals (yes), and the menu from the chat box.
TERMINAL_ANSWERS = {
    **HAPPY,
    "training_approach.decision": ["1", "yes"],
    "peft.decision": {"r": 32, "alpha": 64},
}
CHAT_TYPED = {"training_approach.goals", "menu"}  # answered by a message in the chat box
MENU_TYPED = ["P", "C"]  # progress first, then continue


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat-ui")
    srv = DevServer(root / "server", root / "checkpoints")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def assistant(server) -> str:
    """An assistant with the run context set once, as the UI's assistant setting would name it."""

    async def create() -> str:
        made = await get_client(url=server.url).assistants.create(graph_id=GRAPH, context=CONTEXT, name="chat-ui tests")
        return made["assistant_id"]

    return asyncio.run(create())


def human(text: str) -> dict[str, Any]:
    """A message as the UI's chat box sends it: an id and text content blocks."""
    return {"id": str(uuid.uuid4()), "type": "human", "content": [{"type": "text", "text": text}]}


def ui_string(value: Any) -> str:
    """How the card's text inputs hold a value: strings and numbers as text, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json.dumps(value)
    return json.dumps(value)


def card(interrupt: dict) -> tuple[dict, dict]:
    """The action request and review config, checked as the UI's isAgentInboxInterruptSchema does."""
    value = interrupt["value"]
    requests, configs = value.get("action_requests"), value.get("review_configs")
    assert isinstance(requests, list) and len(requests) == 1, value
    assert isinstance(configs, list) and len(configs) == 1, value
    [request], [config] = requests, configs
    assert isinstance(request["name"], str) and isinstance(request["args"], dict)
    assert config["action_name"] == request["name"] and isinstance(config["allowed_decisions"], list)
    return request, config


def decision_for(payload: dict, request: dict, config: dict, answer: Any) -> dict:
    """The decision the UI sends for the answer a terminal user would type."""
    allowed = config["allowed_decisions"]
    if payload["kind"] == "form":
        if answer == "yes":
            return {"type": "approve"}
        if isinstance(answer, dict):  # edited fields: the UI sends every field, each as text
            args = {k: ui_string(answer.get(k, v)) for k, v in request["args"].items()}
            return {"type": "edit", "edited_action": {"name": request["name"], "args": args}}
        return {"type": "reject", "message": str(answer)}
    assert "edit" in allowed, config
    if "approve" in allowed and answer == payload["default"]:
        return {"type": "approve"}
    return {"type": "edit", "edited_action": {"name": request["name"], "args": {"answer": str(answer)}}}


@dataclass
class ChatRun(Transcript):
    typed: list[str] = field(default_factory=list)  # question ids answered from the chat box
    invalid_once: set[str] = field(default_factory=set)  # question ids first sent an invalid edit
    errors_shown: list[str] = field(default_factory=list)


async def drive_chat(url: str, assistant: str, t: ChatRun, answer: Callable[[dict], Any]) -> ChatRun:
    client = get_client(url=url)
    t.thread_id = (await client.threads.create())["thread_id"]
    await client.runs.wait(t.thread_id, assistant, input={"messages": [human(str(t.project))]})
    menu = list(MENU_TYPED)
    for _ in range(MAX_TURNS):
        state = await client.threads.get_state(t.thread_id)
        if not state["interrupts"]:
            t.values = state["values"]
            return t
        [pending] = state["interrupts"]
        payload = pending["value"]
        jsonschema.validate(payload, PAYLOAD_SCHEMA)  # our payload, unchanged beside the request
        t.payloads.append(payload)
        request, config = card(pending)
        # The UI shows the card under the last message only if that is an AI message: the question.
        last = state["values"]["messages"][-1]
        assert last["type"] == "ai" and payload["title"] in last["content"], (payload["question_id"], last)
        if payload["error"]:
            t.errors_shown.append(payload["question_id"])
            assert payload["error"] in last["content"] and payload["error"] in request["description"]
        qid = payload["question_id"]
        if qid in CHAT_TYPED:
            text = menu.pop(0) if qid == "menu" else answer(payload)
            t.typed.append(qid)
            await client.runs.wait(t.thread_id, assistant, input={"messages": [human(text)]})
            continue
        if qid in t.invalid_once:
            t.invalid_once.discard(qid)
            bad = {k: ui_string(v) for k, v in request["args"].items()} | {"learning_rate": "fast"}
            decision = {"type": "edit", "edited_action": {"name": request["name"], "args": bad}}
        else:
            decision = decision_for(payload, request, config, answer(payload))
        await client.runs.wait(t.thread_id, assistant, command={"resume": {"decisions": [decision]}})
    raise AssertionError(f"no end after {MAX_TURNS} turns: {t.question_ids}")


@pytest.fixture(scope="module")
def chat_session(server, assistant, tmp_path_factory) -> ChatRun:
    root = tmp_path_factory.mktemp("chat")
    run = ChatRun(copy_fixture("support-bot", root), invalid_once={"hyperparameters.decision"})
    return asyncio.run(drive_chat(server.url, assistant, run, answer_from(TERMINAL_ANSWERS)))


def test_full_session_from_the_chat_ui_writes_what_the_terminal_writes(chat_session, tmp_path):
    t = chat_session
    assert t.typed == ["training_approach.goals", "menu", "menu"]
    assert t.errors_shown == ["hyperparameters.decision"]  # the invalid edit was asked again, with its error
    assert t.values["handoff"]["step_id"] == "step-05-inference-pipeline"
    local = drive_in_process(Transcript(copy_fixture("support-bot", tmp_path)), answer_from(TERMINAL_ANSWERS))
    expected, got = artifacts(local.project), artifacts(t.project)
    assert "phase-2-training/spec.md" in expected and sorted(got) == sorted(expected)
    for path, data in expected.items():
        assert got[path] == data, f"{path} differs between the chat UI and the terminal's answers"
    assert t.values["decisions"] == local.values["decisions"]
    peft = t.values["decisions"]["peft"]["fields"]
    assert (peft["r"], peft["alpha"]) == (32, 64)  # the card's edit, sent as text, arrived typed


def test_chat_reads_as_a_conversation(chat_session):
    messages = chat_session.values["messages"]
    said = [m["content"] for m in messages if m["type"] == "ai"]
    typed = [m["content"] for m in messages if m["type"] == "human"]
    assert str(chat_session.project) in json.dumps(typed[0])  # the folder, as the first message
    assert sum("Phase 2: Training Pipeline - Fine-tuning Your Model" in s for s in said) == 1  # welcomed once
    # Every question was posted once before its card, then its answer, then what came of it.
    questions = [m for m in messages if m.get("additional_kwargs", {}).get("question_id")]
    assert [m["additional_kwargs"]["question_id"] for m in questions] == chat_session.question_ids
    assert any(s.startswith("Recorded **TP-006**") for s in said)
    assert HAPPY["base_model.constraints"] in typed  # an edited answer field shows as the user's message
    decide = next(m for m in questions if m["additional_kwargs"]["question_id"] == "base_model.decision")
    assert "| Field | Value |" in decide["content"]  # the proposal's table is in the chat, once


def test_cards_carry_the_question_in_short(chat_session):
    kinds = {}
    for p in chat_session.payloads:
        [request], [config] = p["action_requests"], p["review_configs"]
        assert request["name"] == p["title"] and len(request["description"]) < 1500
        assert "| Field | Value |" not in request["description"]  # tables stay in the message
        kinds[p["kind"]] = config["allowed_decisions"]
        if p["kind"] == "form":
            assert request["args"] == p["default"]  # the proposal's fields, to edit in place
        else:
            assert set(request["args"]) == {"answer"}
    assert kinds["form"] == ["approve", "edit", "reject"]
    assert kinds["text"] == ["edit"]
    assert kinds["menu"] == ["edit"]  # no default to approve: leaving the phase takes an explicit C


def test_menu_from_the_chat_box_shows_progress_then_continues(chat_session):
    said = [m["content"] for m in chat_session.values["messages"] if m["type"] == "ai"]
    assert any(s.startswith("**Progress: Phase 2 is complete**") for s in said)
    sidecar = yaml.safe_load((chat_session.project / "sidecar.yaml").read_text(encoding="utf-8"))
    assert sidecar["phases"]["phase_2_training"] == "complete" and 4 in sidecar["stepsCompleted"]


# --- starting without a folder, with a wrong one, and errors that reach the client --------------------


def test_a_chat_without_a_folder_is_asked_for_one(server, assistant, tmp_path):
    project = copy_fixture("support-bot", tmp_path)

    async def talk() -> list[dict]:
        client = get_client(url=server.url)
        tid = (await client.threads.create())["thread_id"]
        replies = []
        for text in ("hello", str(tmp_path / "nowhere"), json.dumps({"project_dir": str(project)})):
            await client.runs.wait(tid, assistant, input={"messages": [human(text)]})
            thread = await client.threads.get(tid)
            state = await client.threads.get_state(tid)
            replies.append({"status": thread["status"], "last": state["values"]["messages"][-1], "interrupts": state["interrupts"]})
        return replies

    hello, wrong, right = asyncio.run(talk())
    assert hello["status"] == "idle" and "Which project" in hello["last"]["content"]
    assert wrong["status"] == "idle" and "not found" in wrong["last"]["content"].lower() and "nowhere" in wrong["last"]["content"]
    assert right["status"] == "interrupted" and right["interrupts"][0]["value"]["question_id"] == "base_model.constraints"


def test_a_project_error_reaches_the_client_with_its_text_and_the_chat_recovers(server, assistant, tmp_path):
    project = copy_fixture("support-bot", tmp_path)

    async def talk() -> tuple[str, list[dict]]:
        client = get_client(url=server.url)
        tid = (await client.threads.create())["thread_id"]
        try:
            await client.runs.wait(tid, assistant, input={"project_dir": str(tmp_path / "missing")})
            error = ""
        except Exception as exc:  # the SDK raises the run's error as "<type>: <message>"
            error = str(exc)
        states = []
        for text in ("hello", str(project)):
            await client.runs.wait(tid, assistant, input={"messages": [human(text)]})
            states.append({"status": (await client.threads.get(tid))["status"], **(await client.threads.get_state(tid))})
        return error, states

    error, (hello, folder) = asyncio.run(talk())
    assert "ProjectError" in error and "missing" in error and "internal error" not in error.lower()
    # The thread is not stuck in that error: the chat is told why and asked for the folder.
    reply = hello["values"]["messages"][-1]["content"]
    assert hello["status"] == "idle" and "missing" in reply and "Which project" in reply
    assert folder["status"] == "interrupted" and folder["interrupts"][0]["value"]["question_id"] == "base_model.constraints"


def test_a_new_message_on_a_finished_thread_does_not_start_over(server, assistant, chat_session):
    async def again() -> dict:
        client = get_client(url=server.url)
        await client.runs.wait(chat_session.thread_id, assistant, input={"messages": [human("hello again")]})
        return await client.threads.get_state(chat_session.thread_id)

    state = asyncio.run(again())
    said = [m["content"] for m in state["values"]["messages"] if m["type"] == "ai"]
    assert sum("Phase 2: Training Pipeline - Fine-tuning Your Model" in s for s in said) == 1
    assert state["interrupts"][0]["value"]["question_id"] == "menu"  # already complete: the menu


def test_no_blocking_call_on_the_server(chat_session, server):
    server.assert_no_blocking_calls()
