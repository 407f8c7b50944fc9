"""Faults around a real session: the knowledge server, the language model, the disk, and SIGKILL.

Each test drives the compiled graph with the project checkpointer on a fixture copy, injects
one fault, and checks the two acceptable outcomes: the session goes on with a clear notice,
or it stops with a clear OSError/ProjectError and leaves no partial file. Either way, once
the fault is gone, the same thread resumed from its checkpoint (a new app and checkpointer
on the folder, as a restarted process would build) reaches the end with every earlier
decision intact; where the answers are the same, the files equal an undisturbed run's.

How the disk faults are made: tests run as root, and chmod does not stop root from writing,
so a read-only folder is simulated by making os.open, os.mkdir, os.replace and os.unlink
fail with EROFS for paths inside the project; a full disk by failing agent.fsutil's rename
with ENOSPC (and, for the checkpoint database, by SQLite's max_page_count);
a failing write by an EIO from the temp file's write() after half the text went out.
The knowledge server faults use real processes: a command that exits, a port nobody
listens on, the embedded server killed with SIGKILL, and the embedded server behind a
switch that makes it hang, return isError results or malformed JSON. The model faults
use a chat model that fails every call (429, 503, timeout, garbage, malformed tool calls).
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import socket
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import agent.fsutil as fsutil
from agent.checkpoint import DATABASE_NAME, ProjectCheckpointer
from agent.context import Context
from agent.knowledge.catalog import queries_for
from agent.knowledge.client import KnowledgeClient, KnowledgeConfig
from agent.sidecar import ProjectError, validate_sidecar
from agent.state import SECTIONS
from evals import reliability as r
from graph import builder
from tests.conftest import seconds
from langgraph.types import Command

FILES = r.KILL_FILES  # the step's artifacts and the sidecar


@pytest.fixture(scope="module")
def warm(loop):
    return loop.run_until_complete(r.warm_knowledge())


class Run:
    """One thread on a project with the project checkpointer. `restart()` builds what a new
    process would: a new app and checkpointer on the same folder, the same thread id."""

    def __init__(self, loop, project: Path, knowledge: Any, thread: str = "faults", **context: Any):
        self.loop, self.project, self.knowledge, self.context_args = loop, project, knowledge, context
        self.config = {"configurable": {"thread_id": thread}, "recursion_limit": 500}
        self.restart()

    def restart(self, knowledge: Any = None, **context: Any) -> None:
        self.knowledge = knowledge or self.knowledge
        self.context_args.update(context)
        self.app = builder.compile(checkpointer=ProjectCheckpointer(self.project))
        self.context = Context(knowledge_client=self.knowledge, today=r.TODAY, **self.context_args)

    def invoke(self, value: Any) -> dict | None:
        self.loop.run_until_complete(self.app.ainvoke(value, self.config, context=self.context))
        return self.pending()

    def state(self):
        return self.app.get_state(self.config)

    def pending(self) -> dict | None:
        s = self.state()
        return s.interrupts[0].value if s.interrupts else None

    def values(self) -> dict:
        return self.state().values

    def start(self) -> dict | None:
        return self.invoke({"project_dir": str(self.project)})

    def answer(self, value: Any) -> dict | None:
        return self.invoke(Command(resume=value))

    def until(self, qid: str) -> dict:
        """Answer validly until `qid` is asked; return its payload, unanswered."""
        payload = self.pending() or self.start()
        for _ in range(100):
            assert payload is not None, f"the session ended before {qid}"
            if payload["question_id"] == qid:
                return payload
            payload = self.answer(r.finishing_answer(payload))
        raise AssertionError(f"{qid} never asked")

    def finish(self, payload: dict | None = None) -> dict:
        payload = payload or self.pending()
        for _ in range(100):
            if payload is None:
                values = self.values()
                assert values.get("handoff"), "the session ended with the hand-off"
                return values
            payload = self.answer(r.finishing_answer(payload))
        raise AssertionError("the session did not end")

    def resume_after_fault(self, sent: Any) -> dict | None:
        """After a stopped run: a node left half-done runs again; an answer never stored is sent again."""
        state = self.state()
        if state.interrupts and state.interrupts[0].value["question_id"] == self.asked:
            return self.answer(sent)
        return self.invoke(None) if state.next else self.pending()

    def answer_expecting(self, value: Any, exc: type[BaseException]) -> BaseException:
        self.asked = self.pending()["question_id"]
        with pytest.raises(exc) as info:
            self.answer(value)
        return info.value


def files(project: Path) -> dict[str, bytes | None]:
    return {f: (project / f).read_bytes() if (project / f).exists() else None for f in FILES}


def everything(project: Path) -> dict[str, bytes]:
    return {str(p.relative_to(project)): p.read_bytes() for p in sorted(project.rglob("*")) if p.is_file()}


def without_database(found: dict[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in found.items() if DATABASE_NAME not in name}


def temp_files(project: Path) -> list[str]:
    return [str(p.relative_to(project)) for p in project.rglob("*.tmp")]


@pytest.fixture
def project(tmp_path):
    return r.copy_fixture("support-bot", tmp_path)


@pytest.fixture(scope="module")
def reference(loop, warm, tmp_path_factory):
    """The files of an undisturbed session with the same (finishing) answers."""
    folder = r.copy_fixture("support-bot", tmp_path_factory.mktemp("reference"))
    run = Run(loop, folder, warm)
    values = run.finish(run.start())
    return files(folder), values


def assert_same_end(project: Path, values: dict, reference) -> None:
    ref_files, ref_values = reference
    assert files(project) == ref_files, "the files equal an undisturbed run's"
    assert values["decisions"] == ref_values["decisions"]
    kept = [(a["question_id"], a["answer"]) for a in values["answers"]]
    assert kept == [(a["question_id"], a["answer"]) for a in ref_values["answers"]], "no answer lost or doubled"


# --- the knowledge server -------------------------------------------------------------------------

# The embedded server, with a switch: before each tool call it reads a mode file, so a test can
# make the same running server hang, fail or talk garbage, and then heal it.
SWITCHABLE_SERVER = textwrap.dedent('''
    import asyncio, sys
    from pathlib import Path
    from mcp.types import CallToolResult, TextContent
    import agent.knowledge.server as real

    mode_file = Path(sys.argv[1])
    healthy = real.KnowledgeServer.call_tool

    async def call_tool(self, name, arguments):
        mode = mode_file.read_text().strip()
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "error":
            return CallToolResult(isError=True, content=[TextContent(type="text", text=
                "Error calling " + name + '. Status code: 503. Response: {"error":{"code":"UNAVAILABLE"}}')])
        if mode == "malformed":
            return CallToolResult(content=[TextContent(type="text", text='{"results": [{"id": ')])
        return await healthy(self, name, arguments)

    real.KnowledgeServer.call_tool = call_tool  # before build_server binds it as the handler
    real.serve("stdio")
''')


@pytest.fixture
def switchable(tmp_path):
    script, mode = tmp_path / "switchable_server.py", tmp_path / "mode"
    script.write_text(SWITCHABLE_SERVER, encoding="utf-8")

    def make(initial: str, timeout_s: float = 15) -> tuple[KnowledgeClient, Path]:
        mode.write_text(initial)
        return KnowledgeClient(KnowledgeConfig(command=[sys.executable, str(script), str(mode)], timeout_s=timeout_s)), mode

    return make


def latest(values: dict, section: str) -> list[dict]:
    out: dict[str, dict] = {}
    for rec in values.get("knowledge") or []:
        if rec["section"] == section:
            out[rec["query_id"]] = rec
    return list(out.values())


def test_server_that_exits_at_once_then_a_healthy_one(loop, project):
    broken = KnowledgeClient(KnowledgeConfig(command=[sys.executable, "-c", "import sys; sys.exit(3)"], timeout_s=10))
    run = Run(loop, project, broken)
    payload = run.start()
    assert payload["question_id"] == "consult_knowledge.retry"
    assert "exited during start-up" in payload["prompt"]
    payload = run.answer("continue")  # go on without it: every section says what it could not consult
    assert payload["question_id"] == "base_model.constraints" and "Could not consult" in payload["prompt"]
    run.until("training_data.description")
    before = run.values()["decisions"]
    assert set(before) == {"base_model", "training_approach"}

    healthy = KnowledgeClient(KnowledgeConfig(timeout_s=seconds(15)))
    try:
        run.restart(knowledge=healthy)  # the server is back; the same thread goes on from its checkpoint
        values = run.finish()
    finally:
        loop.run_until_complete(healthy.aclose())
    assert {s: values["decisions"][s] for s in before} == before
    assert all(not rec["error"] and rec["items"] for rec in latest(values, "peft")), "consulted once it was back"
    spec = (project / "phase-2-training" / "spec.md").read_text()
    assert "could not be consulted" in spec


def test_server_refusing_connections_then_retry(loop, project, warm):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = KnowledgeClient(KnowledgeConfig(transport="streamable_http", url=f"http://127.0.0.1:{port}/mcp", timeout_s=5))
    run = Run(loop, project, refused)
    payload = run.start()
    assert payload["question_id"] == "consult_knowledge.retry"
    assert f"cannot connect to http://127.0.0.1:{port}/mcp" in payload["prompt"]
    assert run.answer("maybe later")["error"], "an invalid answer to the retry question is re-asked"
    run.restart(knowledge=warm)  # the server answers now
    assert run.answer("retry")["question_id"] == "base_model.constraints"
    values = run.finish()
    assert all(not rec["error"] for rec in latest(values, "consult_knowledge"))
    assert [a["answer"] for a in values["answers"][:3]] == ["maybe later", "retry", r.CANNED["base_model.constraints"]]


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the server's process through /proc")
@pytest.mark.slow
def test_server_killed_between_questions_is_restarted(loop, project):
    existing = _children(os.getpid())
    client = KnowledgeClient(KnowledgeConfig(timeout_s=seconds(15)))  # the start counts too: scaled
    try:
        run = Run(loop, project, client)
        run.until("base_model.decision")
        (server,) = _children(os.getpid()) - existing
        os.kill(server, signal.SIGKILL)
        while server in _children(os.getpid()):
            time.sleep(0.05)  # reaped by the client's transport
        assert run.answer("yes")["question_id"] == "training_approach.goals"  # the next stage queried a new server
        records = latest(run.values(), "training_approach")
        assert records and all(not rec["error"] for rec in records), [rec["error"] for rec in records]
        assert _children(os.getpid()) - existing - {server}, "a new server process"
        values = run.finish()
    finally:
        loop.run_until_complete(client.aclose())
    assert set(values["decisions"]) == set(SECTIONS)


def test_server_hanging_past_the_timeout_then_healed(loop, project, switchable):
    # The server starts at its own pace (a busy machine takes seconds to start Python); then only
    # its calls hang, and they time out after 3 s.
    client, mode = switchable("ok", timeout_s=seconds(60))
    try:
        loop.run_until_complete(client.run(queries_for("consult_knowledge")[:1]))
        client.config = client.config.model_copy(update={"timeout_s": 3})
        mode.write_text("hang")
        run = Run(loop, project, client)
        started = time.monotonic()
        payload = run.start()
        assert time.monotonic() - started < seconds(30), "the stage gives up at the timeout, all queries at once"
        assert payload["question_id"] == "consult_knowledge.retry" and "timed out after 3s" in payload["prompt"]
        mode.write_text("ok")
        assert run.answer("retry")["question_id"] == "base_model.constraints"
        assert all(not rec["error"] for rec in latest(run.values(), "consult_knowledge"))
        values = run.finish()
    finally:
        loop.run_until_complete(client.aclose())
    assert set(values["decisions"]) == set(SECTIONS)


@pytest.mark.parametrize("kind, says", [("error", "returned an error"), ("malformed", "returned malformed JSON")])
def test_error_results_and_malformed_json_are_noticed(loop, project, switchable, kind, says):
    client, _ = switchable(kind)
    try:
        run = Run(loop, project, client)
        payload = run.start()
        assert payload["question_id"] == "consult_knowledge.retry" and says in payload["prompt"]
        payload = run.answer("continue")
        assert "Could not consult" in payload["prompt"] and says in payload["prompt"]
        values = run.finish(payload)
    finally:
        loop.run_until_complete(client.aclose())
    assert set(values["decisions"]) == set(SECTIONS)
    assert any(says in n or "Not consulted" in n for n in values.get("notices") or [])
    validate_sidecar(yaml.safe_load((project / "sidecar.yaml").read_text()))
    assert "could not be consulted" in (project / "phase-2-training" / "spec.md").read_text()


# --- the language model ---------------------------------------------------------------------------

def online(model: Any) -> dict[str, Any]:
    return {"offline": False, "chat_model": model, "llm_retries": 1, "llm_backoff": 0.0, "llm_timeout": 0.05}


@pytest.mark.parametrize("kind", r.MODEL_FAULTS)
def test_model_failures_fall_back_to_the_rules_with_a_notice(loop, warm, project, reference, kind):
    model = r.BrokenModel(kinds=[kind])
    run = Run(loop, project, warm, **online(model))
    payloads = []
    payload = run.start()
    while payload is not None:
        payloads.append(payload)
        payload = run.answer(r.finishing_answer(payload))
    decides = [p for p in payloads if p["question_id"].endswith(".decision")]
    assert len(decides) == 6 and all("rule-based path" in p["prompt"] for p in decides), "every proposal says the model was not used"
    values = run.values()
    assert model.calls > 0 and values["usage"]["calls"] == model.calls
    assert {s: d["fields"] for s, d in values["decisions"].items()} == {s: d["fields"] for s, d in reference[1]["decisions"].items()}


def test_model_failing_on_a_free_text_answer_then_recovering(loop, warm, project):
    from evals.llm_fakes import ToolFakeChatModel, canned

    run = Run(loop, project, warm, **online(r.BrokenModel(kinds=["429"])))
    run.until("peft.decision")
    payload = run.answer("make it cheaper please, we are a small team")
    assert payload["question_id"] == "peft.decision"
    assert "unavailable (rate limited, HTTP 429)" in payload["error"]
    assert "peft" not in run.values()["decisions"], "prose the model could not read records nothing"
    before = run.values()["decisions"]
    run.restart(chat_model=ToolFakeChatModel(responder=canned))  # the model is back
    values = run.finish()
    assert {s: values["decisions"][s] for s in before} == before
    assert set(values["decisions"]) == set(SECTIONS)
    assert any(a["answer"] == "make it cheaper please, we are a small team" for a in values["answers"])


# --- the disk -------------------------------------------------------------------------------------


def test_disk_full_when_a_decision_is_saved(loop, warm, project, reference, monkeypatch):
    run = Run(loop, project, warm)
    run.until("training_approach.decision")
    before = everything(project)

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(fsutil, "_replace", full)
    again = run.answer("yes")  # not saved: the same question, saying why and what to do
    assert again["question_id"] == "training_approach.decision"
    assert "No space left on device" in again["error"] and "Free some space" in again["error"]
    assert temp_files(project) == []
    assert {k: v for k, v in everything(project).items() if ".training-pipeline" not in k} == \
        {k: v for k, v in before.items() if ".training-pipeline" not in k}, "no file changed"

    monkeypatch.undo()
    assert run.answer("yes")["question_id"] == "training_data.description"
    values = run.finish()
    refused = [a for a in values["answers"] if not a["accepted"]]
    assert [(a["question_id"], a["answer"]) for a in refused] == [("training_approach.decision", "yes")]
    assert "No space left on device" in refused[0]["error"]
    values = {**values, "answers": [a for a in values["answers"] if a not in refused]}
    assert_same_end(project, values, reference)


class _Proxy:
    """A stand-in for a module inside one other module: named attributes replaced, the rest passed on."""

    def __init__(self, real: Any, **replaced: Any):
        self._real, self._replaced = real, replaced

    def __getattr__(self, name: str) -> Any:
        return self._replaced.get(name) or getattr(self._real, name)


def test_write_failing_half_way_through_the_artifacts(loop, warm, project, reference, monkeypatch):
    run = Run(loop, project, warm)
    run.until("infrastructure.decision")
    log_before = (project / "decision-log.md").read_bytes()
    names: dict[int, str] = {}

    def mkstemp(*args, **kwargs):
        fd, name = tempfile.mkstemp(*args, **kwargs)
        names[fd] = name
        return fd, name

    class HalfWritten:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, text):
            self.fh.write(text[: len(text) // 2])
            self.fh.flush()
            raise OSError(errno.EIO, "Input/output error")

    def fdopen(fd, *args, **kwargs):
        fh = os.fdopen(fd, *args, **kwargs)
        return HalfWritten(fh) if Path(names.get(fd, "")).name.startswith(".decision-log.md.") else fh

    monkeypatch.setattr(fsutil, "tempfile", _Proxy(tempfile, mkstemp=mkstemp))
    monkeypatch.setattr(fsutil, "os", _Proxy(os, fdopen=fdopen))
    exc = run.answer_expecting("yes", ProjectError)
    assert "decision-log.md: Input/output error" in str(exc)
    assert temp_files(project) == [], "the half-written temp file is removed"
    assert (project / "decision-log.md").read_bytes() == log_before, "the old log is intact"
    yaml.safe_load((project / "phase-2-training/templates/training-config.template.yaml").read_text())  # whole, old or new

    monkeypatch.undo()
    run.restart()
    assert run.resume_after_fault("yes")["question_id"] == "menu"
    assert_same_end(project, run.finish(), reference)


def test_read_only_project_folder(loop, warm, project, reference, monkeypatch):
    run = Run(loop, project, warm)
    run.until("base_model.decision")
    before = everything(project)
    inside = str(project.resolve())

    def guarded(real, writes=lambda *a: True):
        def call(path, *args, **kwargs):
            if os.path.abspath(os.fsdecode(path)).startswith(inside) and writes(*args):
                raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(path))
            return real(path, *args, **kwargs)

        return call

    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    monkeypatch.setattr(os, "open", guarded(os.open, lambda flags, *rest: bool(flags & write_flags)))
    for name in ("mkdir", "replace", "rename", "unlink"):
        monkeypatch.setattr(os, name, guarded(getattr(os, name)))
    again = run.answer("yes")  # not saved: the same question, saying why and what to fix
    monkeypatch.undo()
    assert again["question_id"] == "base_model.decision"
    assert "Read-only file system" in again["error"] and "writable" in again["error"]
    # SQLite opens its files itself, not through os.open: the checkpoint database is left out
    # here, and checked by resuming from it below.
    assert without_database(everything(project)) == without_database(before), "nothing in the folder changed"

    assert run.answer("yes")["question_id"] == "training_approach.goals"
    values = run.finish()
    refused = [a for a in values["answers"] if not a["accepted"]]
    assert [(a["question_id"], a["answer"]) for a in refused] == [("base_model.decision", "yes")]
    values = {**values, "answers": [a for a in values["answers"] if a not in refused]}
    assert_same_end(project, values, reference)


def test_disk_full_while_saving_the_checkpoint(loop, warm, project, reference):
    run = Run(loop, project, warm)
    run.until("peft.decision")
    saver = run.app.checkpointer
    # SQLite's own full-disk path: the database may not grow by a single page.
    pages = saver.conn.execute("PRAGMA page_count").fetchone()[0]
    saver.conn.execute(f"PRAGMA max_page_count = {pages}")
    exc = run.answer_expecting("yes", OSError)
    assert exc.errno == errno.ENOSPC and "checkpoint database" in str(exc)

    run.restart()  # a new process: the database holds the last checkpoint that was saved whole
    run.resume_after_fault("yes")
    assert_same_end(project, run.finish(), reference)


# --- SIGKILL anywhere -----------------------------------------------------------------------------


@pytest.mark.slow
def test_chat_resumes_a_step_killed_after_its_writes_were_saved(loop, warm, project, reference, monkeypatch):
    """The narrowest kill point the random kills found: a node's writes are saved, the
    checkpoint after them is not. get_state() then shows no `next` and no question, as if the
    run had ended, and the terminal restarted from the input: the answer that node had accepted
    was dropped. The point is made exactly, by deleting what was saved after that node's writes."""
    from agent import cli

    run = Run(loop, project, warm, thread=cli.THREAD_ID)
    run.until("base_model.decision")
    db = run.app.checkpointer.conn
    (start,) = db.execute("SELECT max(checkpoint_id) FROM checkpoints").fetchone()
    run.answer("yes")
    # base_model_decide's writes are saved on the checkpoint it ran from: the kill comes right after them.
    (cut,) = db.execute("SELECT min(checkpoint_id) FROM writes WHERE channel = 'decisions' AND checkpoint_id >= ?", (start,)).fetchone()
    db.execute("DELETE FROM checkpoints WHERE checkpoint_id > ?", (cut,))
    db.execute("DELETE FROM writes WHERE checkpoint_id > ?", (cut,))
    db.commit()

    run.restart()
    snapshot = run.state()
    assert snapshot.next == () and not snapshot.interrupts and snapshot.tasks, "looks ended, is not"
    chat = cli.ChatSession(run.app, run.context, str(project))
    monkeypatch.setattr(chat, "_read_answer", r.finishing_answer)
    assert loop.run_until_complete(chat.run()) == 0
    assert_same_end(project, run.values(), reference)


@pytest.mark.slow
def test_sigkill_at_random_moments_matches_an_undisturbed_run(warm, tmp_path):
    knowledge = tmp_path / "knowledge.json"
    r.dump_knowledge(warm, knowledge)
    seed = random.randrange(2**32)
    result = r.kill_anywhere("support-bot", knowledge, tmp_path, random.Random(seed), max_kills=5)
    assert result.kills >= 1, f"seed {seed}: the driver was killed at least once"
    assert result.mismatches == [], f"seed {seed}: {result.mismatches}"
    assert result.answers > 20
