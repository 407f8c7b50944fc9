"""ProjectCheckpointer (langgraph-checkpoint-sqlite in the project folder): LangGraph's conformance
suite, restarts, kill -9, two processes, and pruning a thread whose state uses delta channels."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import TypedDict

import pytest
from blockbuster import BlockBuster
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_metadata
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from agent.checkpoint import CHECKPOINT_SUBDIR, DATABASE_NAME, ENV_DIR, ProjectCheckpointer, make_checkpointer

ROOT = Path(__file__).resolve().parents[1]


def cfg(tid: str) -> dict:
    return {"configurable": {"thread_id": tid, "checkpoint_ns": ""}}


def put(saver, tid, values, *, parent=None, versions=None, new=None, **md):
    versions = versions or {k: 1 for k in values}
    cp = generate_checkpoint(channel_values=values, channel_versions=versions)
    config = cfg(tid)
    if parent:
        config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
    return saver.put(config, cp, generate_metadata(**md), versions if new is None else new)


def checkpoint_ids(saver, tid: str) -> list[str]:
    return [t.config["configurable"]["checkpoint_id"] for t in saver.list(cfg(tid))]


# --- LangGraph's conformance suite ------------------------------------------------------------


class SyncDriven(ProjectCheckpointer):
    """Runs the suite through the library's sync methods: each async method calls its sync twin inline."""

    async def aget_tuple(self, config):
        return self.get_tuple(config)

    async def alist(self, config, *, filter=None, before=None, limit=None):
        for item in self.list(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(self, config, checkpoint, metadata, new_versions):
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config, writes, task_id, task_path=""):
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id):
        self.delete_thread(thread_id)

    async def adelete_for_runs(self, run_ids):
        self.delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id, target_thread_id):
        self.copy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids, *, strategy="keep_latest"):
        self.prune(thread_ids, strategy=strategy)


def registered(cls):
    @checkpointer_test(name=cls.__name__)
    async def factory():
        folder = tempfile.mkdtemp()
        saver = cls(folder)
        try:
            yield saver
        finally:
            saver.close()
            shutil.rmtree(folder)

    return factory


@pytest.mark.parametrize("cls", [ProjectCheckpointer, SyncDriven], ids=["async", "sync"])
async def test_conformance_suite(cls):
    report = await validate(registered(cls))
    failures = {name: r.failures for name, r in report.results.items() if r.failures}
    assert failures == {}
    assert report.conformance_level() == "FULL"
    assert all(r.detected for r in report.results.values())  # every capability, extended ones too
    assert sum(r.tests_passed for r in report.results.values()) >= 81  # the suite really ran (0.0.2 has 81)


async def test_conformance_suite_reopened_between_calls():
    """Same suite, but every read goes to a fresh instance: everything must come from disk."""

    class Reopening(ProjectCheckpointer):
        def get_tuple(self, config):
            with ProjectCheckpointer(self.root, subdir=self.subdir) as fresh:
                return fresh.get_tuple(config)

        def list(self, config, **kw):
            with ProjectCheckpointer(self.root, subdir=self.subdir) as fresh:
                return iter([*fresh.list(config, **kw)])

    report = await validate(registered(Reopening))
    assert {n: r.failures for n, r in report.results.items() if r.failures} == {}


async def test_async_methods_never_block_the_event_loop(tmp_path):
    saver = ProjectCheckpointer(tmp_path)  # first use creates the folder and opens the database: off the loop too
    bb = BlockBuster()  # stricter than `langgraph dev`, which allows os.stat and plain reads/writes
    bb.activate()
    try:
        cp = generate_checkpoint(channel_values={"a": 1}, channel_versions={"a": 1})
        stored = await saver.aput(cfg("t"), cp, generate_metadata(run_id="r"), {"a": 1})
        await saver.aput_writes(stored, [("a", 2)], "task")
        assert (await saver.aget_tuple(stored)).pending_writes == [("task", "a", 2)]
        assert len([t async for t in saver.alist(None)]) == 1
        await saver.acopy_thread("t", "u")
        await saver.aprune(["u"])
        await saver.adelete_for_runs(["r"])
        await saver.adelete_thread("u")
        graph = interview_graph().compile(checkpointer=saver)
        await graph.ainvoke({"answers": []}, {"configurable": {"thread_id": "g"}})
        await graph.ainvoke(Command(resume="x"), {"configurable": {"thread_id": "g"}})
        await delta_graph().compile(checkpointer=saver).ainvoke({"log": ["start"]}, {"configurable": {"thread_id": "d"}})
        assert (await saver.aget_delta_channel_history(config=cfg("d"), channels=["log"]))["log"]["writes"]
    finally:
        bb.deactivate()
        saver.close()


# --- a real graph across a restart -----------------------------------------------------------


class Interview(TypedDict):
    answers: list[str]


def interview_graph() -> StateGraph:
    def ask(question: str):
        def node(state: Interview) -> dict:
            return {"answers": [*state["answers"], interrupt({"question_id": question})]}

        return node

    builder = StateGraph(Interview)
    builder.add_node("base_model", ask("base_model.choice"))
    builder.add_node("peft", ask("peft.method"))
    builder.add_edge(START, "base_model")
    builder.add_edge("base_model", "peft")
    builder.add_edge("peft", END)
    return builder


def test_interrupt_resumes_in_a_new_instance(tmp_path):
    config = {"configurable": {"thread_id": "chat-1"}}
    with ProjectCheckpointer(tmp_path) as saver:
        first = interview_graph().compile(checkpointer=saver)
        out = first.invoke({"answers": []}, config)
        assert out["__interrupt__"][0].value == {"question_id": "base_model.choice"}
        first.invoke(Command(resume="mistral-7b"), config)

    # "restart": a new saver on the same folder, nothing shared in memory
    with ProjectCheckpointer(tmp_path) as saver:
        second = interview_graph().compile(checkpointer=saver)
        state = second.get_state(config)
        assert state.next == ("peft",)
        assert state.interrupts[0].value == {"question_id": "peft.method"}
        assert second.invoke(Command(resume="qlora"), config) == {"answers": ["mistral-7b", "qlora"]}
        history = list(second.get_state_history(config))
        assert len(history) >= 4 and history[0].values == {"answers": ["mistral-7b", "qlora"]}


async def test_interrupt_resumes_in_a_new_instance_async(tmp_path):
    config = {"configurable": {"thread_id": "chat-2"}}
    await interview_graph().compile(checkpointer=ProjectCheckpointer(tmp_path)).ainvoke({"answers": []}, config)
    await interview_graph().compile(checkpointer=ProjectCheckpointer(tmp_path)).ainvoke(Command(resume="a"), config)
    third = interview_graph().compile(checkpointer=ProjectCheckpointer(tmp_path))
    assert await third.ainvoke(Command(resume="b"), config) == {"answers": ["a", "b"]}


def test_the_database_lives_in_the_project_and_is_durable(project_copy):
    project = project_copy("support-bot")
    saver = ProjectCheckpointer(project)
    assert not (project / CHECKPOINT_SUBDIR).exists()  # built without I/O
    put(saver, "t", {"a": 1})
    assert saver.path == project / CHECKPOINT_SUBDIR / DATABASE_NAME and saver.path.is_file()
    assert saver.conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # NORMAL: a commit is in the write-ahead log when put returns (a killed process loses none, below)
    assert saver.conn.execute("PRAGMA synchronous").fetchone() == (1,)
    saver.close()
    assert {p.name for p in saver.folder.iterdir()} == {DATABASE_NAME}  # closed: the journal is folded in


# --- crashes and processes --------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from agent.checkpoint import ProjectCheckpointer
    from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_config, generate_metadata
    saver = ProjectCheckpointer(sys.argv[1])
    thread, count = sys.argv[2], int(sys.argv[3])
    parent = None
    for i in range(1, count + 1):
        config = generate_config(thread)
        if parent:
            config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
        cp = generate_checkpoint(channel_values={"n": i, "pad": "x" * 50000}, channel_versions={"n": i, "pad": i})
        parent = saver.put(config, cp, generate_metadata(step=i), {"n": i, "pad": i})
        saver.put_writes(parent, [("n", i)], f"task-{i}")
        if i == 3:
            print("running", flush=True)
    print("done", flush=True)
    if sys.argv[4:] == ["stay"]:
        import time
        time.sleep(600)  # killed here, the connection still open
    """
)


def writer(folder: Path, thread: str, count: int, *more: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(folder), thread, str(count), *more], env=env, stdout=subprocess.PIPE, text=True)


def test_kill_9_during_writes_leaves_a_loadable_database(tmp_path):
    proc = writer(tmp_path, "t", 10**9)
    try:
        assert proc.stdout.readline().strip() == "running"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with ProjectCheckpointer(tmp_path) as saver:
        steps = [t.metadata["step"] for t in saver.list(cfg("t"))]
        assert steps[:1] and steps == list(range(len(steps), 0, -1))  # every surviving step, none missing
        latest = saver.get_tuple(cfg("t"))
        assert latest.checkpoint["channel_values"]["n"] == steps[0]
        put(saver, "t", {"n": -1}, parent=latest.config)
    with ProjectCheckpointer(tmp_path) as saver:
        assert saver.get_tuple(cfg("t")).checkpoint["channel_values"]["n"] == -1


def test_kill_9_loses_no_committed_checkpoint(tmp_path):
    proc = writer(tmp_path, "t", 25, "stay")
    try:
        assert [proc.stdout.readline().strip() for _ in range(2)] == ["running", "done"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with ProjectCheckpointer(tmp_path) as saver:
        tuples = list(saver.list(cfg("t")))
        assert [t.metadata["step"] for t in tuples] == list(range(25, 0, -1))
        assert tuples[0].pending_writes == [("task-25", "n", 25)]


def test_two_processes_write_one_database_at_once(tmp_path):
    procs = [writer(tmp_path, f"p{n}", 40) for n in range(2)]
    for proc in procs:
        proc.communicate(timeout=300)
        assert proc.returncode == 0
    with ProjectCheckpointer(tmp_path) as saver:
        for n in range(2):
            tuples = list(saver.list(cfg(f"p{n}")))
            assert [t.metadata["step"] for t in tuples] == list(range(40, 0, -1))
            assert all(t.pending_writes == [(f"task-{t.metadata['step']}", "n", t.metadata["step"])] for t in tuples)


def test_savers_opening_one_new_database_at_once_all_start(tmp_path):
    # Turning a new database to WAL answers "database is locked" at once, without waiting, when
    # another connection does the same: about one opening in a hundred failed, four at a time.
    failures = []
    for round_ in range(100):
        folder = tmp_path / str(round_)
        savers = [ProjectCheckpointer(folder) for _ in range(4)]
        for saver in savers:
            saver.folder  # the folder made beforehand: the race is the database's
        barrier = threading.Barrier(len(savers))

        def open_(saver):
            barrier.wait()
            try:
                with saver.cursor() as cur:
                    cur.execute("SELECT count(*) FROM checkpoints")
            except sqlite3.OperationalError as exc:
                failures.append(exc)
            finally:
                saver.close()

        threads = [threading.Thread(target=open_, args=(s,)) for s in savers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []


def test_two_instances_on_one_folder_see_each_other(tmp_path):
    a, b = ProjectCheckpointer(tmp_path), ProjectCheckpointer(tmp_path)
    first = put(a, "t", {"v": 1})
    assert b.get_tuple(cfg("t")).config == first
    second = put(b, "t", {"v": 2}, parent=first, versions={"v": 2})
    assert a.get_tuple(cfg("t")).config == second
    b.prune(["t"])
    assert [t.config for t in a.list(cfg("t"))] == [second]
    put(a, "t", {"v": 3}, parent=second, versions={"v": 3})
    assert len(list(b.list(cfg("t")))) == 2
    a.delete_thread("t")
    assert b.get_tuple(cfg("t")) is None


async def test_concurrent_async_writers(tmp_path):
    saver = ProjectCheckpointer(tmp_path)

    async def session(n):
        parent = None
        for i in range(10):
            config = cfg(f"t{n}")
            if parent:
                config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
            cp = generate_checkpoint(channel_values={"i": i}, channel_versions={"i": i + 1})
            parent = await saver.aput(config, cp, generate_metadata(step=i), {"i": i + 1})
            await saver.aput_writes(parent, [("i", i)], f"task{i}")

    await asyncio.gather(*(session(n) for n in range(8)))
    with ProjectCheckpointer(tmp_path) as fresh:
        assert len(list(fresh.list(None))) == 80
        assert all(fresh.get_tuple(cfg(f"t{n}")).checkpoint["channel_values"] == {"i": 9} for n in range(8))


# --- what the library lacks: copy, delete by run, prune --------------------------------------------


def test_copy_thread_names_the_new_thread_in_metadata(tmp_path):
    saver = ProjectCheckpointer(tmp_path)
    stored = put(saver, "src", {"v": 1}, thread_id="src")
    saver.put_writes(stored, [("v", 2)], "task-1", "path")
    saver.copy_thread("src", "dst")
    with ProjectCheckpointer(tmp_path) as fresh:
        copied = fresh.get_tuple(cfg("dst"))
    assert copied.metadata["thread_id"] == "dst"
    assert copied.checkpoint["channel_values"] == {"v": 1}
    assert copied.pending_writes == [("task-1", "v", 2)]
    assert saver.get_tuple(cfg("src")).metadata["thread_id"] == "src"


def test_delete_for_runs_removes_their_checkpoints_and_writes(tmp_path):
    saver = ProjectCheckpointer(tmp_path)
    kept = put(saver, "t", {"v": 1}, run_id="keep")
    doomed = put(saver, "t", {"v": 2}, parent=kept, versions={"v": 2}, run_id="drop")
    saver.put_writes(doomed, [("v", 3)], "task")
    saver.delete_for_runs(["drop"])
    assert checkpoint_ids(saver, "t") == [kept["configurable"]["checkpoint_id"]]
    assert saver.conn.execute("SELECT count(*) FROM writes").fetchone() == (0,)


def test_prune_rejects_unknown_strategy(tmp_path):
    with pytest.raises(ValueError, match="keep_latest"):
        ProjectCheckpointer(tmp_path).prune(["t"], strategy="sometimes")


def _extend(current, writes):
    out = list(current)
    for batch in writes:
        out.extend(batch)
    return out


def delta_graph(snapshot_frequency: int = 3, answers: int = 9) -> StateGraph:
    """A question loop whose answers go to a DeltaChannel, snapshotted every `snapshot_frequency` updates."""
    import operator
    from typing import Annotated, TypedDict

    from langgraph.channels.delta import DeltaChannel

    # Functional form: this module's postponed annotations could not see the local imports.
    S = TypedDict("S", {"log": Annotated[list, DeltaChannel(_extend, snapshot_frequency=snapshot_frequency)],
                        "total": Annotated[int, operator.add]}, total=False)

    def ask(state):
        answer = interrupt({"n": len(state.get("log") or [])})
        return {"log": [answer], "total": 1}

    builder = StateGraph(S)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_conditional_edges("ask", lambda state: END if len(state["log"]) >= answers else "ask")
    return builder


def test_prune_keeps_what_delta_channels_are_rebuilt_from(tmp_path):
    saver = ProjectCheckpointer(tmp_path)
    app = delta_graph(snapshot_frequency=3, answers=20).compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "t"}}
    app.invoke({"log": ["start"], "total": 0}, config)
    for i in range(7):
        app.invoke(Command(resume=f"a{i}"), config)
    before = app.get_state(config)
    assert before.values["log"] == ["start", *(f"a{i}" for i in range(7))] and before.interrupts
    count = len(checkpoint_ids(saver, "t"))

    saver.prune(["t"])

    kept = len(checkpoint_ids(saver, "t"))
    assert 1 < kept < count  # the chain back to the last snapshot stays, older checkpoints go
    with ProjectCheckpointer(tmp_path) as fresh:
        after = delta_graph(snapshot_frequency=3, answers=20).compile(checkpointer=fresh).get_state(config)
    assert after.values == before.values and after.interrupts[0].value == before.interrupts[0].value
    app.invoke(Command(resume="after-prune"), config)
    assert app.get_state(config).values["log"][-2:] == ["a6", "after-prune"]
    saver.prune(["t"])  # again, after the thread went on
    assert app.get_state(config).values["log"] == ["start", *(f"a{i}" for i in range(7)), "after-prune"]


def test_prune_of_a_session_with_four_answers_keeps_them(loop, knowledge, project_copy):
    """The project graph keeps answers and messages in DeltaChannels: pruning must not empty them."""
    ANSWERS = 4
    from tests.driver import HAPPY, Session, answer_from

    project = project_copy("support-bot")
    saver = ProjectCheckpointer(project)
    session = Session(loop, knowledge, str(project), checkpointer=saver)
    session.run_until(answer_from(HAPPY), lambda p: len(session.payloads) == ANSWERS)
    before = session.app.get_state(session.config)
    assert len(before.values["answers"]) == ANSWERS and before.interrupts
    total = len(checkpoint_ids(saver, "test"))

    saver.prune(["test"])

    # Older checkpoints go; those back to the last snapshot of answers and messages stay, since
    # they are rebuilt from it (the hand-written saver kept only the newest, and lost them).
    # (Four answers in, neither has had a snapshot since the start: all of them stay.)
    kept = len(checkpoint_ids(saver, "test"))
    assert 1 < kept <= total
    after = session.app.get_state(session.config)
    assert after.values == before.values
    assert after.interrupts[0].value == before.interrupts[0].value
    payload = session.resume(answer_from(HAPPY)(after.interrupts[0].value))  # the session goes on from there
    assert payload is not None and len(session.values()["answers"]) == ANSWERS + 1


def test_a_checkpoint_late_in_a_session_is_no_larger_than_an_early_one(tmp_path):
    """Delta channels store only what changed: the row written after 60 answers is the size of one after 10."""
    saver = ProjectCheckpointer(tmp_path)
    app = delta_graph(snapshot_frequency=1000, answers=61).compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "t"}}
    app.invoke({"log": ["x" * 1000]}, config)
    sizes = []
    for i in range(60):
        app.invoke(Command(resume="y" * 1000), config)
        sizes.append(saver.conn.execute(
            "SELECT length(checkpoint) FROM checkpoints WHERE thread_id = 't' ORDER BY checkpoint_id DESC LIMIT 1").fetchone()[0])
    assert len(app.get_state(config).values["log"]) == 61
    assert sizes[-1] <= sizes[9] + 64  # a counter's digits at most


def test_growing_delta_snapshots_come_rarer_as_the_value_grows_and_lose_nothing(tmp_path):
    """The chat's channel (agent/state.py): every 3 updates while short, then one update per 8
    items it holds, so a snapshot's size spread over its updates stays the same."""
    from typing import Annotated, TypedDict

    from agent.state import GrowingDeltaChannel

    S = TypedDict("S", {"log": Annotated[list, GrowingDeltaChannel(_extend, snapshot_frequency=3)]}, total=False)

    def ask(state):
        return {"log": [interrupt(len(state.get("log") or []))]}

    builder = StateGraph(S)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_conditional_edges("ask", lambda state: END if len(state["log"]) >= 200 else "ask")
    saver = ProjectCheckpointer(tmp_path)
    app = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "t"}}
    app.invoke({"log": []}, config)
    for i in range(199):
        app.invoke(Command(resume=i), config)
    assert app.get_state(config).values["log"] == list(range(199))

    # Where each snapshot was taken: a checkpoint whose metadata no longer counts updates to `log`.
    sizes = [len(t.checkpoint["channel_values"]["log"].value) for t in reversed(list(saver.list(config)))
             if "log" in t.checkpoint["channel_versions"] and "log" not in (t.metadata.get("counters_since_delta_snapshot") or {})]
    gaps = [b - a for a, b in zip(sizes, sizes[1:])]
    assert gaps[:3] == [3, 3, 3]
    # The cadence is read when a snapshot is due: from the size reached by then.
    assert gaps == [max(3, after // 8) for after in sizes[1:]]
    assert gaps[-1] >= 20
    with ProjectCheckpointer(tmp_path) as fresh:  # rebuilt from snapshot and writes, in a new process's saver
        assert builder.compile(checkpointer=fresh).get_state(config).values["log"] == list(range(199))


def test_delta_channel_history_matches_the_base_walk(tmp_path):
    """Our walk (metadata first, checkpoints only where a value may be) returns what the base
    class's walk (every ancestor read whole) returns, for every checkpoint."""
    from langgraph.checkpoint.base import BaseCheckpointSaver

    saver = ProjectCheckpointer(tmp_path)
    app = delta_graph().compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "t"}}
    app.invoke({"log": ["start"], "total": 0}, config)
    for i in range(8):
        app.invoke(Command(resume=f"a{i}"), config)
    assert app.get_state(config).values["log"] == ["start", *(f"a{i}" for i in range(8))]

    checked = 0
    for tup in saver.list(config):
        ours = saver.get_delta_channel_history(config=tup.config, channels=["log", "total"])
        base = BaseCheckpointSaver.get_delta_channel_history(saver, config=tup.config, channels=["log", "total"])
        assert ours == base
        checked += 1
    assert checked >= 10  # one per step: input, nine answers


def test_delta_channel_history_ends_in_a_database_whose_parents_form_a_loop(tmp_path):
    """A hand-edited or corrupt database: the walk stops once it has seen as many ancestors as the
    thread has checkpoints, instead of going round for ever."""
    saver = ProjectCheckpointer(tmp_path)
    first = put(saver, "t", {"v": 1})
    second = put(saver, "t", {"v": 2}, parent=first)
    with saver.cursor() as cur:  # the first checkpoint's parent becomes the second
        cur.execute("UPDATE checkpoints SET parent_checkpoint_id = ? WHERE checkpoint_id = ?",
                    (second["configurable"]["checkpoint_id"], first["configurable"]["checkpoint_id"]))
    history = saver.get_delta_channel_history(config=second, channels=["log"])
    assert history == {"log": {"writes": []}}


def test_delta_channel_history_matches_the_base_walk_in_a_project_session(loop, knowledge, project_copy):
    """The same, on the project graph's three delta channels (chat, answers, knowledge) through a
    whole session: every checkpoint, walks that stop at a snapshot and walks to the first one."""
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from tests.driver import HAPPY, Session, answer_from

    project = project_copy("support-bot")
    saver = ProjectCheckpointer(project)
    session = Session(loop, knowledge, str(project), checkpointer=saver)
    session.run(answer_from(HAPPY))
    channels = ["messages", "answers", "knowledge"]
    seeded = 0
    for tup in saver.list(session.config):
        ours = saver.get_delta_channel_history(config=tup.config, channels=channels)
        assert ours == BaseCheckpointSaver.get_delta_channel_history(saver, config=tup.config, channels=channels)
        seeded += sum("seed" in entry for entry in ours.values())
    assert seeded > 0  # walks that stopped at a snapshot, not only at the first checkpoint


# --- the API server's saver --------------------------------------------------------------------------


def test_make_checkpointer_uses_env_folder_and_does_no_io(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_DIR, raising=False)
    default = make_checkpointer()
    assert not (tmp_path / ".langgraph_api").exists()  # built on the server's event loop: no I/O yet
    put(default, "t", {"v": 1})
    assert (tmp_path / ".langgraph_api" / "training-pipeline" / DATABASE_NAME).is_file()
    default.close()

    monkeypatch.setenv(ENV_DIR, str(tmp_path / "elsewhere"))
    with make_checkpointer() as saver:
        put(saver, "t", {"v": 1})
    assert (tmp_path / "elsewhere" / DATABASE_NAME).is_file()
    assert sqlite3.connect(tmp_path / "elsewhere" / DATABASE_NAME).execute("SELECT count(*) FROM checkpoints").fetchone() == (1,)
