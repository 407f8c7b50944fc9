"""ProjectCheckpointer: LangGraph's conformance suite, restarts, crashes, write cost."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import TypedDict

import pytest
from blockbuster import BlockBuster
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_metadata
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from agent.checkpoint import CHECKPOINT_SUBDIR, ENV_DIR, ProjectCheckpointer, make_checkpointer

ROOT = Path(__file__).resolve().parents[1]


def logs(saver: ProjectCheckpointer) -> list[Path]:
    return sorted(saver.folder.glob("*.log"))


def cfg(tid: str) -> dict:
    return {"configurable": {"thread_id": tid, "checkpoint_ns": ""}}


def put(saver, tid, values, *, parent=None, versions=None, new=None, **md):
    versions = versions or {k: 1 for k in values}
    cp = generate_checkpoint(channel_values=values, channel_versions=versions)
    config = cfg(tid)
    if parent:
        config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
    return saver.put(config, cp, generate_metadata(**md), versions if new is None else new)


# --- LangGraph's conformance suite ------------------------------------------------------------


class SyncDriven(ProjectCheckpointer):
    """Runs the suite through the sync methods: each async method calls its sync twin inline."""

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
        try:
            yield cls(folder)
        finally:
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


async def test_conformance_suite_reopened_between_calls(tmp_path):
    """Same suite, but every call goes to a fresh instance: everything must come from disk."""

    class Reopening(ProjectCheckpointer):
        def _fresh(self):
            return ProjectCheckpointer(self.root, subdir=self.subdir)

        def get_tuple(self, config):
            return self._fresh().get_tuple(config)

        def list(self, config, **kw):
            return self._fresh().list(config, **kw)

    report = await validate(registered(Reopening))
    assert {n: r.failures for n, r in report.results.items() if r.failures} == {}


async def test_async_methods_never_block_the_event_loop(tmp_path):
    saver = ProjectCheckpointer(tmp_path)  # first use creates the folder and replays: off the loop too
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
    finally:
        bb.deactivate()


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
    first = interview_graph().compile(checkpointer=ProjectCheckpointer(tmp_path))
    out = first.invoke({"answers": []}, config)
    assert out["__interrupt__"][0].value == {"question_id": "base_model.choice"}
    first.invoke(Command(resume="mistral-7b"), config)

    # "restart": a new saver on the same folder, nothing shared in memory
    second = interview_graph().compile(checkpointer=ProjectCheckpointer(tmp_path))
    state = second.get_state(config)
    assert state.next == ("peft",)
    assert state.interrupts[0].value == {"question_id": "peft.method"}
    assert second.invoke(Command(resume="qlora"), config) == {"answers": ["mistral-7b", "qlora"]}
    history = list(second.get_state_history(config))
    assert len(history) >= 4 and history[0].values == {"answers": ["mistral-7b", "qlora"]}


async def test_interrupt_resumes_in_a_new_instance_async(tmp_path):
    config = {"configurable": {"thread_id": "chat-2"}}
    first = interview_graph().compile(checkpointer=ProjectCheckpointer(tmp_path))
    await first.ainvoke({"answers": []}, config)
    second = interview_graph().compile(checkpointer=ProjectCheckpointer(tmp_path))
    await second.ainvoke(Command(resume="a"), config)
    third = interview_graph().compile(checkpointer=ProjectCheckpointer(tmp_path))
    assert await third.ainvoke(Command(resume="b"), config) == {"answers": ["a", "b"]}


def test_project_layout(project_copy):
    project = project_copy("support-bot")
    saver = ProjectCheckpointer(project)
    put(saver, "t", {"a": 1})
    assert saver.folder == (project / CHECKPOINT_SUBDIR).resolve()
    assert len(logs(saver)) == 1


# --- crashes ----------------------------------------------------------------------------------


def test_torn_trailing_record_is_ignored_then_cut_off(tmp_path):
    saver = ProjectCheckpointer(tmp_path)
    first = put(saver, "t", {"a": "one"})
    second = put(saver, "t", {"a": "two"}, parent=first, versions={"a": 2})
    log = logs(saver)[0]
    whole = log.read_bytes()
    last_line = whole[whole.rindex(b"\n", 0, len(whole) - 1) + 1 :]
    log.write_bytes(whole + last_line[: len(last_line) // 2])  # a third record, cut short by kill -9

    reopened = ProjectCheckpointer(tmp_path)
    tup = reopened.get_tuple(cfg("t"))
    assert tup.config["configurable"]["checkpoint_id"] == second["configurable"]["checkpoint_id"]
    assert tup.checkpoint["channel_values"] == {"a": "two"}

    third = put(reopened, "t", {"a": "three"}, parent=second, versions={"a": 3})  # truncates the torn bytes first
    assert log.read_bytes().startswith(whole) and log.read_bytes().endswith(b"\n")
    fresh = ProjectCheckpointer(tmp_path)
    assert [t.checkpoint["channel_values"]["a"] for t in fresh.list(cfg("t"))] == ["three", "two", "one"]
    assert fresh.get_tuple(cfg("t")).config == third


def test_damaged_record_in_the_middle_is_skipped(tmp_path):
    saver = ProjectCheckpointer(tmp_path)
    a = put(saver, "t", {"x": 1})
    put(saver, "t", {"x": 2}, parent=a, versions={"x": 2})
    put(saver, "t", {"x": 3}, versions={"x": 3})
    log = logs(saver)[0]
    lines = log.read_bytes().split(b"\n")
    lines[1] = lines[1][:40] + b"X" + lines[1][41:]  # a flipped byte: the checksum no longer matches
    log.write_bytes(b"\n".join(lines))
    values = [t.checkpoint["channel_values"]["x"] for t in ProjectCheckpointer(tmp_path).list(None)]
    assert values == [3, 1]


KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from agent.checkpoint import ProjectCheckpointer
    from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_config, generate_metadata
    saver = ProjectCheckpointer(sys.argv[1])
    parent = None
    for i in range(1, 10**9):
        config = generate_config("t")
        if parent:
            config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
        cp = generate_checkpoint(channel_values={"n": i, "pad": "x" * 50000}, channel_versions={"n": i, "pad": i})
        parent = saver.put(config, cp, generate_metadata(step=i), {"n": i, "pad": i})
        if i == 3:
            print("running", flush=True)
    """
)


def test_kill_9_during_writes_leaves_a_loadable_log(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saver = ProjectCheckpointer(tmp_path)
    steps = [t.metadata["step"] for t in saver.list(cfg("t"))]
    assert steps[:1] and steps == list(range(len(steps), 0, -1))  # every surviving step, none missing
    latest = saver.get_tuple(cfg("t"))
    assert latest.checkpoint["channel_values"]["n"] == steps[0]
    put(saver, "t", {"n": -1}, parent=latest.config)
    assert ProjectCheckpointer(tmp_path).get_tuple(cfg("t")).checkpoint["channel_values"]["n"] == -1


# --- cost and sharing -------------------------------------------------------------------------


def test_write_cost_is_the_changed_channels_not_the_session(tmp_path):
    saver = ProjectCheckpointer(tmp_path)
    big = "k" * 200_000
    parent = put(saver, "t", {"big": big, "n": 0}, versions={"big": 1, "n": 1})
    log = logs(saver)[0]
    sizes = [log.stat().st_size]
    for i in range(2, 60):
        parent = put(saver, "t", {"big": big, "n": i}, parent=parent, versions={"big": 1, "n": i}, new={"n": i})
        sizes.append(log.stat().st_size)
    growth = [b - a for a, b in zip(sizes, sizes[1:])]
    assert sizes[0] > 200_000
    assert max(growth) < 2_000  # the 200 kB channel is never written again
    assert max(growth) - min(growth) < 100  # and a write late in the session costs what an early one did
    assert ProjectCheckpointer(tmp_path).get_tuple(cfg("t")).checkpoint["channel_values"] == {"big": big, "n": 59}


def test_two_instances_on_one_folder_see_each_other(tmp_path):
    a, b = ProjectCheckpointer(tmp_path), ProjectCheckpointer(tmp_path)
    first = put(a, "t", {"v": 1})
    assert b.get_tuple(cfg("t")).config == first
    second = put(b, "t", {"v": 2}, parent=first, versions={"v": 2})
    assert a.get_tuple(cfg("t")).config == second
    b.prune(["t"])
    assert [t.config for t in a.list(cfg("t"))] == [second]
    put(a, "t", {"v": 3}, parent=second, versions={"v": 3})  # appends to the rewritten file
    assert len(list(b.list(cfg("t")))) == 2
    a.delete_thread("t")
    assert b.get_tuple(cfg("t")) is None


def test_copy_thread_names_the_new_thread_in_metadata(tmp_path):
    saver = ProjectCheckpointer(tmp_path)
    stored = put(saver, "src", {"v": 1}, thread_id="src")
    saver.put_writes(stored, [("v", 2)], "task-1", "path")
    saver.copy_thread("src", "dst")
    copied = ProjectCheckpointer(tmp_path).get_tuple(cfg("dst"))
    assert copied.metadata["thread_id"] == "dst"
    assert copied.checkpoint["channel_values"] == {"v": 1}
    assert copied.pending_writes == [("task-1", "v", 2)]
    assert saver.get_tuple(cfg("src")).metadata["thread_id"] == "src"


def test_odd_thread_ids_stay_inside_the_folder(tmp_path):
    saver = ProjectCheckpointer(tmp_path / "store", subdir=".")
    for tid in ("../../escape", "/etc/passwd", "a b/c", "", "é" * 300):
        put(saver, tid, {"v": tid})
        assert ProjectCheckpointer(tmp_path / "store", subdir=".").get_tuple(cfg(tid)).checkpoint["channel_values"] == {"v": tid}
    assert sorted(p.parent for p in (tmp_path).rglob("*.log")) == [(tmp_path / "store").resolve()] * 5
    assert {t.config["configurable"]["thread_id"] for t in saver.list(None)} == {"../../escape", "/etc/passwd", "a b/c", "", "é" * 300}


def test_special_writes_replace_regular_writes_stay(tmp_path):
    saver = ProjectCheckpointer(tmp_path)
    stored = put(saver, "t", {"v": 1})
    saver.put_writes(stored, [("v", "first"), ("__interrupt__", "i1")], "task")
    saver.put_writes(stored, [("v", "retry"), ("__interrupt__", "i2")], "task")
    writes = ProjectCheckpointer(tmp_path).get_tuple(stored).pending_writes
    assert sorted(writes) == [("task", "__interrupt__", "i2"), ("task", "v", "first")]


def test_get_next_version_orders_as_strings():
    saver = ProjectCheckpointer("unused")
    v1 = saver.get_next_version(None, None)
    v2 = saver.get_next_version(v1, None)
    v10 = saver.get_next_version(9, None)
    assert v1 < v2 < v10 and v2.startswith("0" * 31 + "2.") and v10.startswith("0" * 30 + "10.")
    assert v1 != saver.get_next_version(None, None)  # forks get distinct versions


def test_make_checkpointer_uses_env_folder_and_does_no_io(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_DIR, raising=False)
    default = make_checkpointer()
    assert not (tmp_path / ".langgraph_api").exists()  # built on the server's event loop: no I/O yet
    put(default, "t", {"v": 1})
    assert len(list((tmp_path / ".langgraph_api" / "training-pipeline").glob("*.log"))) == 1

    monkeypatch.setenv(ENV_DIR, str(tmp_path / "elsewhere"))
    put(make_checkpointer(), "t", {"v": 1})
    assert len(list((tmp_path / "elsewhere").glob("*.log"))) == 1


def test_prune_rejects_unknown_strategy(tmp_path):
    with pytest.raises(ValueError, match="keep_latest"):
        ProjectCheckpointer(tmp_path).prune(["t"], strategy="sometimes")


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
    fresh = ProjectCheckpointer(tmp_path)
    assert len(list(fresh.list(None))) == 80
    assert all(fresh.get_tuple(cfg(f"t{n}")).checkpoint["channel_values"] == {"i": 9} for n in range(8))


def test_delta_channel_history_matches_the_base_walk(tmp_path):
    """Our index walk returns what the base class's full-load walk returns, for every checkpoint."""
    import operator
    from typing import Annotated, TypedDict

    from langgraph.channels.delta import DeltaChannel
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, interrupt

    def extend(current, writes):
        out = list(current)
        for batch in writes:
            out.extend(batch)
        return out

    # Functional form: this module's postponed annotations could not see the local imports.
    S = TypedDict("S", {"log": Annotated[list, DeltaChannel(extend, snapshot_frequency=3)], "total": Annotated[int, operator.add]}, total=False)

    def ask(state):
        answer = interrupt({"n": len(state.get("log") or [])})
        return {"log": [answer], "total": 1}

    def route(state):
        return END if len(state["log"]) >= 9 else "ask"

    builder = StateGraph(S)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_conditional_edges("ask", route)
    saver = ProjectCheckpointer(tmp_path)
    app = builder.compile(checkpointer=saver)
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
