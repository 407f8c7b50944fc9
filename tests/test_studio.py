"""The Studio path: the real `langgraph dev` server, driven through langgraph_sdk and RemoteGraph.

One server (module-scoped) runs every session; the restart test starts its own. A server runs
in a scratch folder that links to this checkout, so the server's own files (`.langgraph_api/`)
stay out of the repository, and keeps its checkpoints in TRAINING_PIPELINE_CHECKPOINT_DIR.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import jsonschema
import pytest
import yaml
from langgraph.pregel.remote import RemoteGraph
from langgraph.types import Command
from langgraph_sdk import get_client

import agent.context as context_module
from agent.checkpoint import DATABASE_NAME
from agent.context import Context, knowledge_client
from agent.interview import PAYLOAD_SCHEMA, Question, response_schema
from agent.knowledge.client import KnowledgeClient, KnowledgeConfig
from tests.conftest import FIXTURES, ROOT
from tests.driver import HAPPY, TODAY, Session, answer_from
from tests.test_graph_flow import SECTION_ORDER_ASKS

pytestmark = pytest.mark.slow  # kept out of `make test-fast`

GRAPH = "training_pipeline"
# Decisions are dated from the run context's `today`: the same bytes on every path. No chat model.
CONTEXT = {"today": TODAY, "offline": True}
MAX_TURNS = 60
JOBS = 8  # runs a server executes at once
# No network at startup: the CLI's usage analytics and the server's PyPI version check are off,
# and so is LangSmith tracing (a developer's environment may have it on).
QUIET_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "1",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
}
EXPECTED_QUESTIONS = {
    "support-bot": SECTION_ORDER_ASKS + ["menu"],
    "contract-assistant": SECTION_ORDER_ASKS + ["menu"],
    "docs-qa": [],  # rag-only: the skip record, no question
    "unscoped": ["architecture"] + SECTION_ORDER_ASKS + ["menu"],
}


# --- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def langgraph_cli() -> str:
    beside = Path(sys.executable).with_name("langgraph")  # the venv running the tests
    return str(beside) if beside.exists() else shutil.which("langgraph") or pytest.fail("langgraph CLI not installed")


class DevServer:
    """`langgraph dev` in its own process group, serving this checkout from `workdir`."""

    def __init__(self, workdir: Path, checkpoints: Path, env: dict[str, str] | None = None):
        self.workdir, self.checkpoints, self.env = workdir, checkpoints, env or {}
        self.log_path = workdir.parent / f"{workdir.name}.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""
        workdir.mkdir(parents=True, exist_ok=True)
        for entry in ROOT.iterdir():  # langgraph.json resolves its paths from the working directory
            if not entry.name.startswith(".") and not (workdir / entry.name).exists():
                (workdir / entry.name).symlink_to(entry)

    def start(self, timeout: float = 60) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        # The embedded knowledge base, like the in-process graph here: a developer's remote settings stay out.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KNOWLEDGE_MCP_", "OPENAI_"))}
        env.update(QUIET_ENV, **self.env, TRAINING_PIPELINE_CHECKPOINT_DIR=str(self.checkpoints))
        # Never --allow-blocking: the dev server must keep rejecting blocking calls on its loops.
        # Several jobs per worker: sessions on different threads run at once, as from several Studio tabs.
        cmd = [langgraph_cli(), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port),
               "--n-jobs-per-worker", str(JOBS)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"langgraph dev exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/ok", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"langgraph dev did not answer /ok within {timeout:g}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM to the process group (a graceful shutdown flushes the thread list), then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def assert_no_blocking_calls(self) -> None:
        text = self.log()
        assert "BlockingError" not in text, text[text.index("BlockingError") - 2000 :][:4000]
        assert "You've set --allow-blocking" not in text  # the detector was on

    def knowledge_servers(self) -> int:
        """Embedded knowledge servers this server runs (its child processes), counted through /proc."""
        assert self.proc is not None
        count = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            count += ppid == self.proc.pid and b"agent.knowledge.server" in cmdline
        return count


@pytest.fixture(scope="module", autouse=True)
def _local_server_bypasses_proxies():
    with pytest.MonkeyPatch.context() as mp:  # a CI proxy must not see requests to 127.0.0.1
        for var in ("NO_PROXY", "no_proxy"):
            mp.setenv(var, ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"])))
        yield


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio")
    # Each run on the next free one of several event loops: the knowledge client must follow (agent/context.py).
    srv = DevServer(root / "server", root / "checkpoints", env={"BG_JOB_ISOLATED_LOOPS": "true"})
    srv.start()
    yield srv
    srv.stop()


def copy_fixture(name: str, dest_root: Path) -> Path:
    dest = dest_root / name
    shutil.copytree(FIXTURES / name, dest)
    for p in [dest, *dest.rglob("*")]:  # the shared copy is read-only
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def artifacts(project: Path) -> dict[str, bytes]:
    """Every file of the project except the agent's own state folder (checkpoints, lock)."""
    return {str(p.relative_to(project)): p.read_bytes() for p in sorted(project.rglob("*"))
            if p.is_file() and ".training-pipeline" not in p.relative_to(project).parts}


# --- three ways to drive one session ---------------------------------------------------------------


@dataclass
class Transcript:
    project: Path
    thread_id: str = ""
    payloads: list[dict] = field(default_factory=list)
    schemas: list[Any] = field(default_factory=list)  # the interrupts' response_schema
    values: dict = field(default_factory=dict)

    @property
    def question_ids(self) -> list[str]:
        return [p["question_id"] for p in self.payloads]


async def drive_sdk(url: str, t: Transcript, answer: Callable[[dict], Any],
                    stop: Callable[[dict], bool] = lambda p: False) -> Transcript:
    """What Studio does: a run per turn, the interrupt read from the thread state, a resume command.

    Starts the thread if `t` has none; returns at the end, or at (before answering) a payload `stop` picks.
    """
    client = get_client(url=url)
    if not t.thread_id:
        t.thread_id = (await client.threads.create())["thread_id"]
        await client.runs.wait(t.thread_id, GRAPH, input={"project_dir": str(t.project)}, context=CONTEXT)
    for _ in range(MAX_TURNS):
        state = await client.threads.get_state(t.thread_id)
        if not state["interrupts"]:
            t.values = state["values"]
            return t
        [pending] = state["interrupts"]
        t.payloads.append(pending["value"])
        t.schemas.append(pending.get("response_schema"))
        if stop(pending["value"]):
            return t
        await client.runs.wait(t.thread_id, GRAPH, command={"resume": answer(pending["value"])}, context=CONTEXT)
    raise AssertionError(f"no end after {MAX_TURNS} turns: {t.question_ids}")


async def drive_remote(url: str, t: Transcript, answer: Callable[[dict], Any]) -> Transcript:
    """The same session through RemoteGraph: the server's graph used like a local one."""
    remote = RemoteGraph(GRAPH, url=url)
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    value: Any = {"project_dir": str(t.project)}
    for _ in range(MAX_TURNS):
        await remote.ainvoke(value, config, context=CONTEXT)
        snapshot = await remote.aget_state(config)
        if not snapshot.interrupts:
            t.values = snapshot.values
            return t
        t.payloads.append(snapshot.interrupts[0].value)
        value = Command(resume=answer(snapshot.interrupts[0].value))
    raise AssertionError(f"no end after {MAX_TURNS} turns: {t.question_ids}")


def drive_in_process(t: Transcript, answer: Callable[[dict], Any]) -> Transcript:
    loop = asyncio.new_event_loop()
    knowledge = KnowledgeClient(KnowledgeConfig())
    try:
        session = Session(loop, knowledge, str(t.project), today=TODAY)
        t.values = session.run(answer)
        t.payloads = session.payloads
    finally:
        loop.run_until_complete(knowledge.aclose())
        loop.close()
    return t


# --- every server session of the module, at once ----------------------------------------------------

NAMES = list(EXPECTED_QUESTIONS)
COMPARED = ["support-bot", "unscoped"]  # also driven through RemoteGraph and in process


@pytest.fixture(scope="module")
def sessions(server, tmp_path_factory) -> dict[tuple[str, str], Transcript | BaseException]:
    """A full session per fixture over the SDK, and some through RemoteGraph, all concurrently:
    the dev server polls its run queue about once a second, so a session of 14 turns takes ~14 s."""
    root = tmp_path_factory.mktemp("sessions")

    async def run_all() -> dict:
        jobs = {("sdk", n): drive_sdk(server.url, Transcript(copy_fixture(n, root / "sdk")), answer_from(HAPPY)) for n in NAMES}
        for n in COMPARED:
            jobs["remote", n] = drive_remote(server.url, Transcript(copy_fixture(n, root / "remote")), answer_from(HAPPY))
        return dict(zip(jobs, await asyncio.gather(*jobs.values(), return_exceptions=True)))

    return asyncio.run(run_all())


def session(sessions: dict, how: str, name: str) -> Transcript:
    result = sessions[how, name]
    if isinstance(result, BaseException):
        raise result
    return result


@pytest.mark.parametrize("name", NAMES)
def test_session_over_the_sdk_writes_the_phase(sessions, name):
    t = session(sessions, "sdk", name)
    assert t.question_ids == EXPECTED_QUESTIONS[name]
    sidecar = yaml.safe_load((t.project / "sidecar.yaml").read_text(encoding="utf-8"))
    assert sidecar["currentPhase"] == 3 and 4 in sidecar["stepsCompleted"]
    assert t.values["handoff"]["step_id"] == "step-05-inference-pipeline"
    spec = (t.project / "phase-2-training" / "spec.md").read_text(encoding="utf-8")
    if name == "docs-qa":
        assert sidecar["phases"]["phase_2_training"] == "skipped" and "SKIPPED" in spec
        return
    assert sidecar["phases"]["phase_2_training"] == "complete" and "## Decisions Made" in spec
    assert [d["id"] for d in sidecar["decisions"] if d["id"].startswith("tp-")] == [f"tp-00{i}" for i in range(1, 7)]
    assert {d["date"] for d in t.values["decisions"].values()} == {TODAY}  # the run context reached the nodes
    assert (t.project / "phase-2-training" / "templates" / "training-config.template.yaml").is_file()
    if name == "unscoped":
        assert sidecar["architecture"] == "fine-tuning"


@pytest.mark.parametrize("name", NAMES)
def test_interrupts_reach_the_client_with_payload_and_response_schema(sessions, name):
    t = session(sessions, "sdk", name)
    assert len(t.schemas) == len(t.payloads) == len(EXPECTED_QUESTIONS[name])
    for payload, schema in zip(t.payloads, t.schemas):
        jsonschema.validate(payload, PAYLOAD_SCHEMA)
        # What Studio renders the answer box from: the schema the node passed to interrupt().
        assert schema == response_schema(Question.model_validate(payload)), payload["question_id"]
        jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", NAMES)
def test_chat_view_shows_prompts_and_answers(sessions, name):
    t = session(sessions, "sdk", name)
    messages = t.values["messages"]
    assert messages and all(m["type"] in ("ai", "human") for m in messages)
    if name == "docs-qa":
        return  # no question: the chat shows what the skip did
    said = [m["content"] for m in messages if m["type"] == "ai"]
    typed = [m["content"] for m in messages if m["type"] == "human"]
    assert any(t.payloads[0]["title"] in text for text in said)
    assert HAPPY["base_model.constraints"] in typed and typed[-1] == "C"


@pytest.mark.parametrize("name", COMPARED)
def test_sdk_remote_graph_and_in_process_agree(sessions, tmp_path, name):
    sdk, remote = session(sessions, "sdk", name), session(sessions, "remote", name)
    local = drive_in_process(Transcript(copy_fixture(name, tmp_path)), answer_from(HAPPY))
    assert sdk.question_ids == remote.question_ids == local.question_ids == EXPECTED_QUESTIONS[name]
    expected = artifacts(local.project)
    assert "phase-2-training/spec.md" in expected and "sidecar.yaml" in expected
    for other in (sdk, remote):
        got = artifacts(other.project)
        assert sorted(got) == sorted(expected)
        for path, data in expected.items():
            assert got[path] == data, f"{path} differs between the server and the in-process graph"
    assert sdk.values["decisions"] == remote.values["decisions"] == local.values["decisions"]


def test_no_blocking_call_on_the_server(sessions, server):
    server.assert_no_blocking_calls()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="counts processes through /proc")
def test_one_knowledge_server_per_event_loop(sessions, server):
    # The sessions ran concurrently on up to JOBS loops. One client shared across loops would
    # start a new child at every loop switch and leave the old one running (dozens of them).
    assert 1 <= server.knowledge_servers() <= JOBS


# --- restart -------------------------------------------------------------------------------------------


def test_interrupted_thread_survives_a_server_restart(tmp_path):
    project = copy_fixture("support-bot", tmp_path / "projects")
    srv = DevServer(tmp_path / "server", tmp_path / "checkpoints")  # the default: one shared event loop
    answer = answer_from(HAPPY)
    srv.start()
    try:
        t = asyncio.run(drive_sdk(srv.url, Transcript(project), answer, stop=lambda p: p["question_id"] == "peft.compute"))
    finally:
        srv.stop()
    assert t.question_ids[-1] == "peft.compute"
    assert (srv.checkpoints / DATABASE_NAME).is_file()  # the project checkpointer (langgraph.json) held the thread

    srv.start()  # a new process on the same folders
    try:
        thread = httpx.get(f"{srv.url}/threads/{t.thread_id}", timeout=10).json()
        assert thread["status"] == "interrupted"
        pending = t.payloads.pop()  # read again below, from the restored checkpoint
        t.schemas.pop()
        resumed_at = len(t.payloads)
        asyncio.run(drive_sdk(srv.url, t, answer))
        assert t.payloads[resumed_at] == pending  # the same question, prompt and all
    finally:
        srv.stop()
    assert t.question_ids == EXPECTED_QUESTIONS["support-bot"]
    assert len(t.values["decisions"]) == 6
    sidecar = yaml.safe_load((project / "sidecar.yaml").read_text(encoding="utf-8"))
    assert sidecar["phases"]["phase_2_training"] == "complete"
    assert "Using custom checkpointer: ProjectCheckpointer" in srv.log()
    srv.assert_no_blocking_calls()


# --- studio forms ------------------------------------------------------------------------------------


def test_studio_gets_input_and_context_schemas(server):
    async def schemas() -> dict:
        client = get_client(url=server.url)
        [assistant] = await client.assistants.search(graph_id=GRAPH)
        return await client.assistants.get_schemas(assistant["assistant_id"])

    s = asyncio.run(schemas())
    # Either the folder (Studio's form) or chat messages (Agent Chat UI): neither is required alone.
    assert not s["input_schema"].get("required")
    assert {"project_dir", "messages"} <= set(s["input_schema"]["properties"])
    assert s["input_schema"]["properties"]["project_dir"]["title"] == "Project folder"
    assert {"today", "knowledge_url", "knowledge_transport", "model", "base_url", "offline"} <= set(s["context_schema"]["properties"])
    assert "decisions" in s["output_schema"]["properties"]


# --- the knowledge client on several loops (the server may run graphs on more than one) ----------------


def test_one_shared_knowledge_client_per_event_loop():
    async def shared() -> KnowledgeClient:
        return knowledge_client(Context())

    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        a = first.run_until_complete(shared())
        assert first.run_until_complete(shared()) is a  # one child process per loop, not per run
        assert second.run_until_complete(shared()) is not a  # a session cannot cross loops
    finally:
        first.close()
    try:
        second.run_until_complete(shared())
        assert all(loop is not first for loop, _ in context_module._shared_clients.values())  # dropped with its loop
    finally:
        second.close()
