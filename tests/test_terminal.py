"""The terminal as people use it: one Ctrl-C stops, Enter never leaves the phase, long tables are
shown once, errors sit next to the prompt, option numbers hold, and questions about the plan are
answered from the plan."""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from rich.console import Console

from agent import cli
from agent.planning.plan import plan
from tests.driver import HAPPY, Session, answer_from

pexpect = pytest.importorskip("pexpect")
SCRIPT = shutil.which("training-pipeline", path=str(Path(sys.executable).parent))
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("KNOWLEDGE_MCP_", "OPENAI_"))}
ENV.update({"COLUMNS": "160", "LINES": "50", "TERM": "dumb", "NO_COLOR": "1"})
TIMEOUT = 120  # for the first question: generous, the machine may be busy


def spawn_chat(project: Path):
    return pexpect.spawn(SCRIPT, ["chat", "--project", str(project), "--offline"], env=ENV, encoding="utf-8", timeout=TIMEOUT, dimensions=(50, 160))


@pytest.mark.slow
@pytest.mark.skipif(SCRIPT is None, reason="the training-pipeline console script is not installed")
@pytest.mark.parametrize("stop", ["ctrl-c", "ctrl-d"])
def test_one_ctrl_c_or_ctrl_d_at_a_prompt_stops_at_once_with_status_0(project_copy, stop):
    child = spawn_chat(project_copy("support-bot"))
    try:
        child.expect(r"base_model\.constraints")
        child.expect(r"\n> ")
        child.sendintr() if stop == "ctrl-c" else child.sendeof()
        # No Enter, no second Ctrl-C: the stop message comes by itself. (Before, one Ctrl-C only
        # cancelled a task that could not run until input() returned.)
        child.expect("Stopped. Every answer so far is saved", timeout=60)
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0 and child.signalstatus is None, "a stop the user asked for is not an error"


# --- the menu --------------------------------------------------------------------------------


@pytest.fixture
def at_menu(loop, knowledge, project_copy):
    s = Session(loop, knowledge, str(project_copy("support-bot")))
    payload = s.run_until(answer_from(HAPPY), lambda p: p["question_id"] == "menu")
    return s, payload


def test_enter_at_the_menu_does_not_leave_the_phase(at_menu):
    s, payload = at_menu
    assert payload["default"] != "C"
    again = s.resume("")  # what the terminal sends for a bare Enter with no default
    assert again["question_id"] == "menu" and "C continues to Phase 3" in again["error"]
    assert not s.values().get("handoff")
    assert s.resume("C") is None and s.values()["handoff"]


@pytest.mark.parametrize("question, figure", [
    ("How long will training take?", "hours"),
    ("How much GPU memory does it need?", "memory"),
    ("What will it cost?", "cost"),
])
def test_a_question_about_the_plan_is_answered_from_the_plan_first(at_menu, question, figure):
    s, _ = at_menu
    fields = {k: d["fields"] for k, d in s.values()["decisions"].items()}
    p = plan(fields)
    answer = s.resume(question)["prompt"]
    assert answer.startswith("**From your plan:**"), answer[:300]
    expected = {"hours": f"{p.hours:.1f} hours", "memory": f"{p.memory.total_gb:.0f} GB"}.get(figure)
    if figure == "cost":
        expected = f"{p.cost.total_usd:,.0f}" if p.cost and p.cost.total_usd >= 10 else "From your plan"
    assert expected in answer.split("\n\n")[0]


def test_a_question_beside_the_plan_goes_to_the_knowledge_base(at_menu):
    s, _ = at_menu
    answer = s.resume("What LoRA rank should I use for a hard task?")["prompt"]
    assert "From your plan" not in answer and "From the knowledge base" in answer


# --- options keep their numbers ----------------------------------------------------------------


def test_options_keep_their_numbers_after_a_pick(loop, knowledge, project_copy):
    s = Session(loop, knowledge, str(project_copy("support-bot")))
    first = s.run_until(answer_from(HAPPY), lambda p: p["question_id"] == "base_model.decision")
    values = [o["value"] for o in first["options"]]
    picked = s.resume("2")
    assert picked["default"]["name"] != first["default"]["name"], "the pick changed the proposal"
    assert [o["value"] for o in picked["options"]] == values, "the chosen model did not move to #1"
    again = s.resume("1")  # 1 is still the first option shown
    assert [o["value"] for o in again["options"]] == values and again["default"] == first["default"], "back to the first model"
    s.resume("yes")
    assert s.values()["decisions"]["base_model"]["fields"] == again["default"]


# --- what the terminal prints ------------------------------------------------------------------

TABLE = "\n".join(["| Key | Size |", "|---|---|", *[f"| model-{i} | {i}B |" for i in range(35)]])


@pytest.fixture
def screen(monkeypatch):
    console = Console(file=io.StringIO(), width=120, color_system=None, highlight=False)
    monkeypatch.setattr(cli, "console", console)
    return lambda: console.file.getvalue()


def payload(error: str | None = None) -> dict:
    return {"question_id": "base_model.constraints", "kind": "text", "title": "Base model constraints", "options": [],
            "default": None, "error": error, "prompt": f"Intro\n\n{TABLE}\n\n**What constraints do you have?**"}


def test_a_long_table_is_shown_once_then_on_request_and_the_error_sits_at_the_prompt(screen):
    seen: set[str] = set()
    cli.render_question(payload(), seen)
    first = screen()
    assert "model-34" in first
    cli.render_question(payload("Please type an answer."), seen)  # the retry
    retry = screen()[len(first):]
    assert "model-34" not in retry and "35-row table shown earlier" in retry and "type ? to see" in retry.replace("`", "")
    assert retry.rstrip().splitlines()[-1] == "Please type an answer.", "the error is the last line above the prompt"
    cli.render_question(payload(), set())  # `?`: everything again
    assert "model-34" in screen()[len(first) + len(retry):]


def test_rich_markup_and_escape_sequences_in_an_error_are_shown_as_text(screen):
    cli.render_question(payload("Bad value '[/red]' and \x1b]0;pwned\x07[bold]x\x1b[2J"), set())
    out = screen()
    assert "Bad value '[/red]' and [bold]x" in out and "\x1b" not in out and "pwned" not in out


def test_the_spinner_never_shares_a_line_with_a_message(monkeypatch):
    import asyncio

    from langchain_core.messages import AIMessage

    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=100, force_terminal=True, color_system=None))

    class App:
        async def astream(self, *args, **kwargs):
            for i in range(3):
                await asyncio.sleep(0.3)  # the spinner draws meanwhile
                yield {"node": {"messages": [AIMessage(content=f"Recorded TP-00{i}.")]}}

        async def aget_state(self, config):
            return type("S", (), {"values": {}, "tasks": (), "interrupts": ()})()

    asyncio.run(cli.ChatSession(App(), None, "p")._advance(None))
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "\n", out.getvalue())
    for line in plain.splitlines():
        assert not ("Working" in line and "Recorded" in line), line
    assert all(f"Recorded TP-00{i}." in plain for i in range(3))


@pytest.mark.parametrize("question, topics", [
    ("How long will training take?", ["time"]),
    ("Does it fit in 24 GB of memory?", ["memory"]),
    ("How much will the GPUs cost?", ["cost", "gpu"]),
    ("Which model did we pick?", ["model"]),
    ("What LoRA rank suits my model?", []),
    ("Sometimes the loss spikes: why?", []),
])
def test_plan_topics(question, topics):
    from agent.nodes.menu import plan_topics

    assert plan_topics(question) == topics
