"""The offline terminal chat's start-up: what it imports before the first question, and the embedded
knowledge server started ahead of those imports. How fast it is belongs to the benchmark
(`evals/bench.py`, cold start / dependency import floor); these tests only check what is loaded and
which server answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp.client.stdio import get_default_environment

from agent.demo import init_demo
from agent.knowledge.catalog import queries_for
from agent.knowledge.client import KnowledgeClient, KnowledgeConfig
from agent.knowledge.spawn import IDLE_EXIT_ENV, server_environment, start_embedded

ROOT = Path(__file__).resolve().parents[1]

# Runs the real `training-pipeline chat --project DIR --offline`, stopping at the first prompt as
# Ctrl-D would, and writes what was imported then (and when the server was started) to a JSON file.
DRIVER = r'''
import json, os, subprocess, sys

import agent.cli as cli

try:
    from agent.knowledge import spawn
except ImportError:  # a chat that starts no server early
    spawn = None

project, report = sys.argv[1], sys.argv[2]
seen = {}


def watched(start_embedded):
    async def start(*args, **kwargs):
        seen["loaded_before_start"] = sorted(m for m in ("graph", "langgraph", "langchain_core", "mcp") if m in sys.modules)
        started = await start_embedded(*args, **kwargs)
        seen["started_pid"] = started.process.pid if started else None
        return started

    return start


def watched_render(render_question):
    def render(payload, *args, **kwargs):
        seen.setdefault("question", payload.get("question_id"))
        return render_question(payload, *args, **kwargs)

    return render


def first_prompt(prompt):
    ps = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(os.getpid())],
                        capture_output=True, text=True).stdout
    seen["servers"] = [int(line.split()[0]) for line in ps.splitlines() if "agent.knowledge.server" in line]
    seen["modules"] = sorted(sys.modules)
    with open(report, "w") as f:
        json.dump(seen, f)
    raise EOFError


if spawn is not None:
    spawn.start_embedded = watched(spawn.start_embedded)
cli.read_line = first_prompt
cli.render_question = watched_render(cli.render_question)
sys.exit(cli.main(["chat", "--project", project, "--offline"]))
'''

# Nothing the first question of an offline chat needs: model clients, the trainers, the writers of
# artifacts (after the decisions), transcripts (--record), the other commands.
NOT_AT_START = (
    "openai", "langchain_openai", "torch", "trl", "transformers", "peft", "accelerate", "numpy",
    "ruamel", "langchain_core.language_models.chat_models", "langchain_core.output_parsers",
    "agent.artifacts", "agent.yaml_roundtrip", "agent.transcript", "agent.studio", "agent.demo",
    "agent.planning.preflight", "agent.planning.export", "agent.planning.cli", "evals", "langgraph_api",
)


@pytest.fixture(scope="module")
def at_first_question(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("cold") / "demo"
    init_demo(folder, "fine-tuning")
    report = folder.parent / "report.json"
    driver = folder.parent / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KNOWLEDGE_MCP_", "OPENAI_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, str(driver), str(folder), str(report)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Stopped. Every answer so far is saved" in done.stdout  # ended at the prompt, as Ctrl-D does
    return json.loads(report.read_text(encoding="utf-8"))


def test_the_first_question_is_reached(at_first_question):
    # After the knowledge stage: had a query failed, the chat would ask whether to retry first.
    assert at_first_question["question"] == "base_model.constraints"
    assert {"graph", "agent.nodes.sections", "agent.knowledge.client"} <= set(at_first_question["modules"])


@pytest.mark.parametrize("name", NOT_AT_START)
def test_what_the_first_question_does_not_need_is_not_imported(at_first_question, name):
    loaded = [m for m in at_first_question["modules"] if m == name or m.startswith(name + ".")]
    assert loaded == [], f"imported before the first question: {loaded[:5]}"


def test_the_knowledge_server_starts_before_the_heavy_imports(at_first_question):
    assert at_first_question.get("loaded_before_start") == []
    assert at_first_question.get("started_pid") is not None


def test_the_session_runs_over_the_server_started_first(at_first_question):
    # One server, the early one: the MCP session was opened over it rather than over a second one.
    assert at_first_question["servers"] == [at_first_question.get("started_pid")]


def test_an_early_server_gets_the_environment_the_mcp_client_would_give_it():
    env = server_environment(600)
    assert env[IDLE_EXIT_ENV] == "600"
    assert {k: v for k, v in env.items() if k not in (IDLE_EXIT_ENV, "PYTHONPATH")} == get_default_environment()


def test_an_early_server_answers_queries_and_leaves_with_its_client():
    async def session() -> tuple[list, int | None]:
        started = await start_embedded()
        assert started is not None
        async with KnowledgeClient(KnowledgeConfig(), started=started) as client:
            records = await client.run(queries_for("consult_knowledge"))
        return records, started.process.returncode

    records, returncode = asyncio.run(session())
    assert records and all(r.error is None and r.items for r in records)
    assert returncode is not None  # shut down with the session, not left behind


def test_an_early_server_is_ended_when_the_settings_name_another():
    async def session() -> tuple[str | None, int | None]:
        started = await start_embedded()
        assert started is not None
        # A different idle limit means different settings: the client starts its own server.
        async with KnowledgeClient(KnowledgeConfig(idle_exit_s=0), started=started) as client:
            record = (await client.run(queries_for("consult_knowledge")[:1]))[0]
            returncode = started.process.returncode
        return record.error, returncode

    error, returncode = asyncio.run(session())
    assert error is None
    assert returncode is not None  # the early one was ended before the query ran
