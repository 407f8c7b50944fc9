"""The "Working…" spinner in a real terminal: it never shares a line with what is printed after it.

The chat runs in a pseudo-terminal that animates (not a dumb one), against a knowledge server
whose every call waits, so the spinner is on screen while each step works. What the terminal
shows is rebuilt from the raw output (cursor moves and line erases applied), and every line is
checked.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import seconds
from tests.driver import HAPPY, answer_from
from tests.test_knowledge_transports import start, stop, wait_ready

pexpect = pytest.importorskip("pexpect")

SCRIPT = shutil.which("training-pipeline", path=str(Path(sys.executable).parent))
pytestmark = [pytest.mark.slow, pytest.mark.skipif(SCRIPT is None, reason="the training-pipeline console script is not installed")]

SPINNER_TEXT = "Working (consulting the knowledge base)…"
QUESTION_ID = re.compile(r"╰─+ ([A-Za-z0-9_.]+) ─+╯")
LATENCY_MS = 300  # per knowledge call: every step that consults the knowledge base takes a while
WIDTH = 160

_TOKEN = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b.|\r|\n|\x08|[^\x1b\r\n\x08]+")


def screen_lines(raw: str) -> list[str]:
    """The lines a terminal shows for `raw`, scrollback included: text overwrites at the cursor,
    and the cursor moves and line erases rich uses for its live display are applied."""
    lines: list[list[str]] = [[]]
    row = col = 0
    for m in _TOKEN.finditer(raw):
        token = m.group(0)
        if m.group(2):
            n = int(m.group(1).lstrip("?").split(";")[0] or 0)
            op = m.group(2)
            if op == "A":
                row = max(0, row - (n or 1))
            elif op == "B":
                row += n or 1
            elif op == "C":
                col += n or 1
            elif op == "D":
                col = max(0, col - (n or 1))
            elif op == "G":
                col = max(0, (n or 1) - 1)
            elif op == "K":
                while len(lines) <= row:
                    lines.append([])
                line = lines[row]
                if n == 2:
                    lines[row] = []
                elif n == 1:
                    lines[row] = [" "] * min(col + 1, len(line)) + line[col + 1:]
                else:
                    del line[col:]
            continue  # colours, cursor visibility and the like change no text
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
        elif token == "\x08":
            col = max(0, col - 1)
        elif not token.startswith("\x1b"):
            for ch in token:
                while len(lines) <= row:
                    lines.append([])
                line = lines[row]
                line.extend(" " * (col - len(line) + 1))
                line[col] = ch
                col += 1
                if col >= WIDTH:  # the terminal wraps
                    row, col = row + 1, 0
    return ["".join(line).rstrip() for line in lines]


def test_screen_lines_applies_overwrites_and_erases():
    assert screen_lines("⠋ Working…\r\x1b[2K\nnext") == ["", "next"]
    assert screen_lines("⠋ Working…Recorded TP-005") == ["⠋ Working…Recorded TP-005"]
    assert screen_lines("a\nb\x1b[1A\rc\x1b[K") == ["c", "b"]


@pytest.fixture
def slow_knowledge_url():
    proc, base = start("streamable-http", latency_ms=LATENCY_MS)
    try:
        wait_ready(proc, base, 60)
        yield f"{base}/mcp"
    finally:
        stop(proc)


def test_the_spinner_never_runs_into_the_next_line(project_copy, slow_knowledge_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KNOWLEDGE_MCP_", "OPENAI_"))}
    env.update({"KNOWLEDGE_MCP_URL": slow_knowledge_url, "TERM": "xterm-256color", "NO_COLOR": "1",
                "COLUMNS": str(WIDTH), "LINES": "50"})
    child = pexpect.spawn(SCRIPT, ["chat", "--project", str(project_copy("support-bot")), "--offline"], env=env,
                          encoding="utf-8", timeout=seconds(120), dimensions=(50, WIDTH))
    answer = answer_from(HAPPY)
    raw, asked = "", 0
    try:
        for _ in range(200):  # six decisions, their questions, the menu: far fewer than this
            found = child.expect([r"\n> ", pexpect.EOF])
            raw += child.before + (child.after if found == 0 else "")
            if found == 1:
                break
            ids = QUESTION_ID.findall("\n".join(screen_lines(raw)))
            if len(ids) > asked:  # else a "> " inside a message, not the prompt under a new question
                asked = len(ids)
                child.sendline(answer({"question_id": ids[-1], "prompt": ""}))
        else:
            pytest.fail("the session did not end")
    finally:
        child.close(force=True)
    assert SPINNER_TEXT in raw, "the spinner was never drawn: nothing here was tested"
    shown = screen_lines(raw)
    for line in shown:
        if "Working" in line:
            # Only the spinner itself may stand on a line with its text (a frame left on screen).
            assert line.split("Working", 1)[1] == SPINNER_TEXT.removeprefix("Working"), line
    assert any("Recorded TP-005" in line for line in shown), "the steps' messages are on screen"
