"""The benchmark's floors, measured in the same run as the figures they divide, and its replayed writes."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from evals import bench
from tests.conftest import ROOT


def test_the_bare_graph_floor_interrupts_and_resumes():
    ms = asyncio.run(bench.bare_graph_overhead(answers=5, repeats=2))
    assert 0 < ms < 10_000


def test_the_import_floor_covers_what_an_offline_start_imports_from_the_dependencies():
    """Starting an offline chat imports no OpenAI client, and nothing from the declared
    dependencies beyond the floor's list but langchain_core (shared by them all)."""
    code = (
        "import sys, agent.cli, graph, agent.checkpoint, agent.lock, agent.llm, agent.knowledge.client\n"
        "print(' '.join(sorted(m for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert not {"openai", "langchain_openai", "tiktoken"} & set(out)
    floor = set(bench.FIRST_QUESTION_IMPORTS)
    assert {"langgraph.graph", "mcp", "langchain_mcp_adapters.client", "rich.console"} <= floor
    assert all(m in out for m in floor), [m for m in floor if m not in out]


def test_write_growth_makes_the_two_windows_writes_again(loop, knowledge):
    """The growth figure replays real writes: each window holds the puts of its answers, and the
    mean per put counts every one of them, snapshots included."""
    ratio, early, late = loop.run_until_complete(bench.write_growth(knowledge, rounds=2, early=2, late=14, window=4))
    assert early > 0 and late > 0 and ratio == late / early

