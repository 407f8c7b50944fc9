"""Benchmarks: the graph must never be the slow part of a session.

    python -m evals.bench [--json] [--quick]

Prints one row per figure with its target and pass/miss. Every figure is the median
of repeated runs on this machine, in one process run where it is a ratio. Figures that
depend on the machine come with a floor measured in the same run (a bare LangGraph graph,
a bare import of the dependencies) and their ratio to it, which holds on any machine. Nothing
here is asserted by tests: the figures are for people to read and track.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from langchain_core.runnables.config import run_in_executor  # noqa: E402
from langgraph.types import Command  # noqa: E402

from agent.checkpoint import ProjectCheckpointer  # noqa: E402
from agent.context import Context  # noqa: E402
from agent.demo import init_demo  # noqa: E402
from agent.knowledge.catalog import queries_for  # noqa: E402
from agent.knowledge.client import KnowledgeClient, KnowledgeConfig  # noqa: E402
from agent.state import SECTIONS  # noqa: E402
from graph import builder  # noqa: E402

TODAY = "2026-04-01"
ANSWERS = {
    "base_model.constraints": "One 24 GB GPU, Apache-2.0 or MIT only",
    "training_approach.goals": "18,000 chats as instruction pairs",
    "training_data.description": "18,000 chats, reviewed, PII redacted",
    "peft.compute": "One 24 GB GPU",
    "hyperparameters.budget": "12 GPU hours",
    "infrastructure.preference": "our own GPU with MLflow",
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


class WarmKnowledge:
    """Replays knowledge records fetched once from the embedded server: knowledge time is not graph time."""

    def __init__(self, records: dict[str, Any], menu_record: Any):
        self.records, self.menu_record = records, menu_record

    async def run(self, queries):
        return [self.records[q.id] for q in queries]

    async def ask(self, text, stage="menu", limit=5):
        return self.menu_record


async def fetch_all(client: KnowledgeClient) -> WarmKnowledge:
    stages = ("consult_knowledge", *SECTIONS)
    records = {}
    for stage in stages:
        for rec in await client.run(queries_for(stage)):
            records[rec.query_id] = rec
    return WarmKnowledge(records, await client.ask("LoRA rank for a hard task"))


def answer_for(payload: dict, revisits: list[str]) -> Any:
    qid = payload["question_id"]
    if qid in ANSWERS:
        return payload.get("default") or ANSWERS[qid]
    if qid.endswith(".decision"):
        return "yes"
    if qid == "menu":
        return "A" if revisits else "C"
    if qid == "menu.revisit":
        return revisits.pop()
    return "continue"


class NodeClock:
    """Time spent inside the graph's node functions, so that an answer's time splits into the
    nodes' own work (planning, writing the project's files) and the graph's overhead around them
    (LangGraph's steps, the checkpointer, handing sync nodes to worker threads).

    A sync node is timed in the worker thread it runs in; the hand-off stays on the overhead side.
    """

    def __init__(self) -> None:
        self.ms = 0.0
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self.ms += ms

    def take(self) -> float:
        with self._lock:
            ms, self.ms = self.ms, 0.0
        return ms

    def attach(self, graph_builder: Any) -> None:
        for spec in graph_builder.nodes.values():
            node = spec.runnable
            if getattr(node, "_clocked", False):
                continue
            if isinstance(node.afunc, functools.partial):  # a sync node: LangGraph's executor shim
                node.func = self._sync(node.func)
                node.afunc = functools.wraps(node.func)(functools.partial(run_in_executor, None, node.func))
            else:
                node.afunc = self._async(node.afunc)
            node._clocked = True

    def _sync(self, func: Callable) -> Callable:
        @functools.wraps(func)
        def clocked(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.add((time.perf_counter() - t) * 1000)

        return clocked

    def _async(self, afunc: Callable) -> Callable:
        @functools.wraps(afunc)
        async def clocked(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await afunc(*args, **kwargs)
            finally:
                self.add((time.perf_counter() - t) * 1000)

        return clocked


CLOCK = NodeClock()
CLOCK.attach(builder)


def in_memory_saver(folder: Path) -> Any:
    from langgraph.checkpoint.memory import InMemorySaver

    return InMemorySaver()


async def timed_session(
    knowledge: Any, answers_wanted: int, in_nodes: list[float] | None = None, saver_for: Callable[[Path], Any] = ProjectCheckpointer,
    writes: list[tuple[int, tuple]] | None = None,
) -> tuple[list[float], list[float]]:
    """A session on a new demo project, by default with the project checkpointer; returns
    per-answer time (ms) and per-put checkpoint time (ms), in order. With `in_nodes`,
    the time each answer spent inside node functions is appended to it; with `writes`, each
    put's arguments (a copy), with the number of answers given before it."""
    folder = Path(tempfile.mkdtemp(prefix="bench-")) / "project"
    init_demo(folder, "fine-tuning", today=TODAY)
    saver = saver_for(folder)
    put_ms: list[float] = []
    per_answer: list[float] = []
    original_put = saver.put

    def timed_put(*args):
        if writes is not None:  # the run's config holds live objects: only the checkpoint's address
            config, *rest = args
            where = {k: config["configurable"].get(k) for k in ("thread_id", "checkpoint_ns", "checkpoint_id")}
            writes.append((len(per_answer), ({"configurable": where}, *copy.deepcopy(rest))))
        t = time.perf_counter()
        try:
            return original_put(*args)
        finally:
            put_ms.append((time.perf_counter() - t) * 1000)

    saver.put = timed_put  # type: ignore[method-assign]
    app = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "bench"}, "recursion_limit": 100_000}
    ctx = Context(knowledge_client=knowledge, today=TODAY)
    # Enough revisits to reach the wanted number of answers (each revisit is 4 answers).
    revisits = [SECTIONS[i % len(SECTIONS)] for i in range(max(0, (answers_wanted - 13) // 4 + 1))]
    await app.ainvoke({"project_dir": str(folder)}, config, context=ctx)
    while True:
        state = await app.aget_state(config)
        if not state.interrupts:
            break
        value = answer_for(state.interrupts[0].value, revisits)
        CLOCK.take()
        t = time.perf_counter()
        await app.ainvoke(Command(resume=value), config, context=ctx)
        per_answer.append((time.perf_counter() - t) * 1000)
        if in_nodes is not None:
            in_nodes.append(CLOCK.take())
    shutil.rmtree(folder.parent, ignore_errors=True)
    return per_answer, put_ms


async def write_growth(knowledge: Any, rounds: int, early: int = 10, late: int = 200, window: int = 40) -> tuple[float, float, float]:
    """Checkpoint write cost after `late` answers against after `early`: the writes one session
    made for the `window` answers after each, made again into a new project database, the two
    sets in alternation round by round (one put takes well under a millisecond: measured once,
    the machine's noise decides the ratio). The mean per put counts the delta channels' full
    snapshots, which the window is long enough to hold a few of. Returns the ratio and each
    set's mean put (ms)."""
    writes: list[tuple[int, tuple]] = []
    await timed_session(knowledge, late + window, writes=writes)
    sets = [[args for before, args in writes if start <= before < start + window] for start in (early, late)]
    if not all(sets):
        raise ValueError(f"the session ended before {late + window} answers")
    folder = Path(tempfile.mkdtemp(prefix="bench-writes-"))
    per_put: list[list[float]] = [[], []]
    with ProjectCheckpointer(folder) as saver:
        for _ in range(rounds):
            for k, puts in enumerate(sets):
                t = time.perf_counter()
                for args in puts:
                    saver.put(*args)
                per_put[k].append((time.perf_counter() - t) * 1000 / len(puts))
    shutil.rmtree(folder, ignore_errors=True)
    first, last = statistics.median(per_put[0]), statistics.median(per_put[1])
    return last / first, first, last


async def bare_graph_overhead(answers: int, repeats: int, saver_for: Callable[[Path], Any] = in_memory_saver) -> float:
    """The floor for graph overhead: median ms per answer of a bare LangGraph graph that only
    interrupts and resumes, by default with the in-memory saver. What LangGraph itself costs per answer."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    class Bare(TypedDict, total=False):
        answers: list[str]

    def ask(state: Bare) -> Command:
        answer = interrupt({"question_id": "q", "prompt": "?"})
        done = [*(state.get("answers") or []), answer]
        return Command(goto=END if len(done) >= answers else "ask", update={"answers": done})

    builder_ = StateGraph(Bare)
    builder_.add_node("ask", ask, destinations=("ask", END))
    builder_.add_edge(START, "ask")
    folder = Path(tempfile.mkdtemp(prefix="bench-bare-"))
    app = builder_.compile(checkpointer=saver_for(folder))
    times: list[float] = []
    for run in range(repeats):
        config = {"configurable": {"thread_id": f"bare-{run}"}, "recursion_limit": 100_000}
        await app.ainvoke({"answers": []}, config)
        for i in range(answers):
            t = time.perf_counter()
            await app.ainvoke(Command(resume=f"answer {i}"), config)
            times.append((time.perf_counter() - t) * 1000)
    shutil.rmtree(folder, ignore_errors=True)
    return statistics.median(times)


REMOTE_LATENCY_MS = 150  # per call, like a small cloud deployment of the Knowledge MCP server


def latency_server_config() -> KnowledgeConfig:
    """The embedded server with a per-call delay: its own queries take milliseconds of CPU, so
    only a server whose calls wait on the network shows whether a stage runs them concurrently."""
    base = KnowledgeConfig()
    return base.model_copy(update={"command": [*base.command, "--latency-ms", str(REMOTE_LATENCY_MS)]})


async def knowledge_stage(client: KnowledgeClient, repeats: int) -> tuple[float, float]:
    """Median wall time of section 2's queries run together, and of the slowest one alone."""
    queries = queries_for("consult_knowledge")
    together, slowest = [], []
    await client.run(queries)  # warm the session
    for _ in range(repeats):
        singles = []
        for q in queries:
            t = time.perf_counter()
            await client.run([q])
            singles.append(time.perf_counter() - t)
        slowest.append(max(singles))
        t = time.perf_counter()
        await client.run(queries)
        together.append(time.perf_counter() - t)
    return statistics.median(together), statistics.median(slowest)


# What the first question needs from the declared dependencies (no OpenAI client: offline). The
# SQLite saver is among them: the run is checkpointed in the project before the question is shown.
FIRST_QUESTION_IMPORTS = (
    "langgraph.graph", "langgraph.types", "langgraph.checkpoint.base", "langgraph.checkpoint.sqlite",
    "langchain_core.messages", "langchain_mcp_adapters.client", "mcp", "pydantic", "yaml",
    "rich.console", "rich.markdown", "rich.panel",
)


def import_floor(repeats: int) -> float:
    """The floor for cold start: seconds for a new interpreter to import those dependencies and
    show a prompt, timed the same way as the chat."""
    import pexpect

    code = f"import {', '.join(FIRST_QUESTION_IMPORTS)}; print(); print('> ', end='', flush=True); input()"
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        child = pexpect.spawn(sys.executable, ["-c", code], env={**os.environ, "COLUMNS": "160"}, encoding="utf-8", timeout=60)
        child.expect(r"\n> ")
        times.append(time.perf_counter() - t)
        child.kill(9)
        child.close()
    return statistics.median(times)


def compile_our_modules() -> None:
    """Like for like with the floor, whose modules pip compiled at install: our own modules from
    their bytecode too (`make setup` compiles them; a source edited since would be compiled again
    at every start where PYTHONDONTWRITEBYTECODE is set)."""
    import compileall

    for folder in ("agent", "evals"):
        compileall.compile_dir(ROOT / folder, quiet=2)
    compileall.compile_file(ROOT / "graph.py", quiet=2)


def cold_start(repeats: int) -> float:
    """Seconds from starting the terminal chat on a demo project to the first question on screen."""
    import pexpect

    times = []
    for _ in range(repeats):
        folder = Path(tempfile.mkdtemp(prefix="bench-cold-")) / "demo"
        init_demo(folder, "fine-tuning")
        t = time.perf_counter()
        child = pexpect.spawn(
            sys.executable, ["-m", "agent.cli", "chat", "--project", str(folder), "--offline"],
            env={**os.environ, "COLUMNS": "160"}, encoding="utf-8", timeout=60,
        )
        child.expect(r"\n> ")
        times.append(time.perf_counter() - t)
        child.kill(9)
        child.close()
        shutil.rmtree(folder.parent, ignore_errors=True)
    return statistics.median(times)


SEED_FILE = ROOT.parent / "shared" / "seed" / "step-04-training-pipeline.md"


async def prompt_volume(knowledge: Any) -> tuple[int, int, int]:
    """Characters our prompts send in a whole session with a model, against an agent that
    sends the whole step file as its system prompt on every turn (history not even counted).

    The model is the test suite's tool-calling fake (valid answers to every prompt): what is
    measured is what we send, which does not depend on what comes back.
    """
    from agent.llm import prompt_chars
    from evals.llm_fakes import ToolFakeChatModel, canned

    folder = Path(tempfile.mkdtemp(prefix="bench-llm-")) / "project"
    init_demo(folder, "fine-tuning", today=TODAY)
    app = builder.compile(checkpointer=ProjectCheckpointer(folder))
    config = {"configurable": {"thread_id": "bench"}, "recursion_limit": 10_000}
    ctx = Context(knowledge_client=knowledge, today=TODAY, offline=False, chat_model=ToolFakeChatModel(responder=canned))
    await app.ainvoke({"project_dir": str(folder)}, config, context=ctx)
    turns, asked = 1, False
    while (state := await app.aget_state(config)).interrupts:
        value = answer_for(state.interrupts[0].value, [])
        if state.interrupts[0].value["question_id"] == "menu" and not asked:
            asked = True
            value = "Which LoRA rank suits a small dataset?"  # one question at the menu, as users do
        await app.ainvoke(Command(resume=value), config, context=ctx)
        turns += 1
    ours = prompt_chars((await app.aget_state(config)).values.get("usage"))
    shutil.rmtree(folder.parent, ignore_errors=True)
    step_file = len(SEED_FILE.read_text(encoding="utf-8")) * turns
    return ours, step_file, turns


def eval_replay_seconds() -> float:
    """Wall time of replaying the whole transcript suite, as `training-pipeline eval` does."""
    import subprocess

    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "agent.cli", "eval", str(ROOT / "evals" / "transcripts")],
                          cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"the eval suite failed; run `training-pipeline eval` to see why\n{done.stdout[-2000:]}")
    return elapsed


def row(name: str, value: float, unit: str, target: float, ok: bool) -> dict[str, Any]:
    return {"figure": name, "value": round(value, 3), "unit": unit, "target": target, "result": "pass" if ok else "miss"}


def info_row(name: str, value: float, unit: str) -> dict[str, Any]:
    """A part of the figure above it, shown to explain it: no target of its own."""
    return {"figure": name, "value": round(value, 3), "unit": unit, "target": None, "result": "info"}


def floor_row(name: str, value: float, unit: str) -> dict[str, Any]:
    """A floor measured in this run: no target of its own, the ratio row below it has one."""
    return {"figure": name, "value": round(value, 3), "unit": unit, "target": None, "result": "floor"}


async def measure(quick: bool, extra: list[Callable[[], dict[str, Any]]]) -> list[dict[str, Any]]:
    repeats = 3 if quick else 7
    rows = []
    async with KnowledgeClient(KnowledgeConfig()) as client:
        warm = await fetch_all(client)
        # Absolute figures move from machine to machine; the ratio to a floor measured now does not.
        # Graph overhead is compared like for like (each floor is the bare graph with the same saver),
        # and each round runs ours and the floors one after the other, so that a machine that
        # speeds up or slows down during the run moves both sides of a ratio alike.
        savers = {"in-memory saver": in_memory_saver, "project checkpointer": ProjectCheckpointer}
        totals: dict[str, list[float]] = {label: [] for label in savers}
        nodes: dict[str, list[float]] = {label: [] for label in savers}
        floors: dict[str, list[float]] = {label: [] for label in savers}
        for _ in range(repeats):
            for label, saver_for in savers.items():
                totals[label] += (await timed_session(warm, 13, nodes[label], saver_for))[0]
                floors[label].append(await bare_graph_overhead(13, 1, saver_for))
        per_answer, in_nodes = totals["project checkpointer"], nodes["project checkpointer"]
        med, p95 = statistics.median(per_answer), percentile(per_answer, 95)
        rows.append(row("time per answer, median (project checkpointer; no knowledge server, no model)", med, "ms", 15, med <= 15))
        rows.append(row("time per answer, p95", p95, "ms", 50, p95 <= 50))
        rows.append(info_row("  of which in the nodes (planning, project files written with fsync), median", statistics.median(in_nodes), "ms"))
        for label in savers:
            ours = statistics.median([a - n for a, n in zip(totals[label], nodes[label])])
            floor = statistics.median(floors[label])
            rows.append(info_row(f"graph overhead per answer (time outside the nodes), {label}, median", ours, "ms"))
            rows.append(floor_row(f"  floor: bare LangGraph graph, interrupt/resume, {label}", floor, "ms"))
            rows.append(row(f"graph overhead per answer / bare LangGraph floor, {label}", ours / floor, "x", 3, ours / floor <= 3))

        async with KnowledgeClient(latency_server_config()) as remote_like:
            together, slowest = await knowledge_stage(remote_like, repeats)
        ratio = together / slowest
        rows.append(row(f"knowledge stage / slowest query ({REMOTE_LATENCY_MS} ms/call server)", ratio, "x", 1.3, ratio <= 1.3))
        local_together, local_slowest = await knowledge_stage(client, repeats)
        rows.append(row("knowledge stage, embedded server (wall time)", local_together * 1000, "ms", 1000, local_together <= 1))

        if SEED_FILE.exists():
            ours, step_file, turns = await prompt_volume(warm)
            rows.append(row(f"prompt volume vs step-file agent ({ours:,} vs {step_file:,} chars, {turns} turns)", ours / step_file, "x", 0.25, ours / step_file <= 0.25))

        growth, early_ms, late_ms = await write_growth(warm, 5 if quick else 25)
        rows.append(info_row("  checkpoint write per put (mean), answers 11-50", early_ms, "ms"))
        rows.append(info_row("  checkpoint write per put (mean), answers 201-240", late_ms, "ms"))
        rows.append(row("checkpoint write after 200 answers / after 10", growth, "x", 1.5, growth <= 1.5))

    compile_our_modules()
    colds, floors_s = [], []
    for _ in range(repeats):  # alternated, as above
        colds.append(cold_start(1))
        floors_s.append(import_floor(1))
    cold, floor_s = statistics.median(colds), statistics.median(floors_s)
    rows.append(row("cold start to first question", cold, "s", 2.5, cold <= 2.5))
    rows.append(floor_row("  floor: a new Python importing the dependencies the first question needs", floor_s, "s"))
    rows.append(row("cold start / dependency import floor", cold / floor_s, "x", 1.1, cold / floor_s <= 1.1))
    replay = eval_replay_seconds()
    count = len(list((ROOT / "evals" / "transcripts").glob("*.yaml")))
    rows.append(row(f"full replay of the eval suite ({count} transcripts)", replay, "s", 20, replay <= 20))
    rows += [f() for f in extra]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    rows = asyncio.run(measure(args.quick, []))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(len(r["figure"]) for r in rows)
        print(f"{'figure':<{width}}  {'value':>10}  {'target':>8}  result")
        for r in rows:
            target = "" if r["target"] is None else f"<= {r['target']}"
            print(f"{r['figure']:<{width}}  {r['value']:>8.3f} {r['unit']:<2} {target:>8}  {r['result']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
