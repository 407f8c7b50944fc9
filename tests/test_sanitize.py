"""Escape sequences and control characters from outside never reach the terminal or the files:
one sanitizer (agent/sanitize.py), applied on every path in. One test per path."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from hypothesis import given, strategies as st
from mcp.types import CallToolResult, TextContent

from agent.knowledge.client import _results
from agent.sanitize import escape_markup, sanitize, sanitize_data
from tests.driver import HAPPY, Session, answer_from
from evals.llm_fakes import ToolFakeChatModel, canned_args, tool_call

HOSTILE = "\x1b]0;pwned title\x07\x1b[2J\x1b[31mred\x1b[0m \x9b1mC1\x00\x08 keep\ttab\nnext line"
CLEAN = "red C1 keep\ttab\nnext line"
RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.mark.parametrize("text, clean", [
    (HOSTILE, CLEAN),
    ("window\x1b]2;title\x1b\\ done", "window done"),
    ("crlf\r\nline\rover", "crlf\nlineover"),
    ("plain — naïve [/red] {x}", "plain — naïve [/red] {x}"),
    ("esc c\x1bc reset, DEL\x7f", "esc c reset, DEL"),
])
def test_sanitize_keeps_text_newlines_and_tabs_only(text, clean):
    assert sanitize(text) == clean


# Control and escape-introducing characters, often; any other character, too.
_ANY_TEXT = st.text(st.one_of(st.sampled_from("\x1b\x9b\x9d\x07\x9c\\[]0;m\r\n\t\x00\x7f"), st.characters()), max_size=40)


@given(_ANY_TEXT)
def test_sanitize_leaves_nothing_a_terminal_obeys_and_is_stable(text):
    clean = sanitize(text)
    assert not RAW.search(clean)  # no ESC, CR, C1 or other control survives
    assert sanitize(clean) == clean  # the fast path for clean text changes nothing


def test_sanitize_data_and_markup_escape():
    assert sanitize_data({"k\x1b[1m": ["a\x07", ("b\x1b[0m", 3)], "n": None}) == {"k": ["a", ("b", 3)], "n": None}
    assert escape_markup("[/red] \x1b[2J") == "\\[/red] "


def tree_text(project) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in project.rglob("*") if p.is_file() and p.suffix in (".md", ".yaml"))


def test_sidecar_values(loop, knowledge, project_copy):
    project = project_copy("support-bot")
    raw = yaml.safe_load((project / "sidecar.yaml").read_text())
    raw["project_name"] = "Support\x1b]0;pwned\x07 bot\x1b[2J"
    (project / "sidecar.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    s = Session(loop, knowledge, str(project))
    s.run(answer_from(HAPPY))
    assert s.values()["project"]["name"] == "Support bot"
    assert not any(RAW.search(json.dumps(p, ensure_ascii=False).replace("\\n", "")) for p in s.payloads)
    (project / "sidecar.yaml").write_text("")  # the sidecar keeps what the user wrote; the rest is ours
    assert "pwned" not in tree_text(project)


def test_knowledge_server_text():
    body = {"results": [{"id": "a", "title": "T\u001b]0;x\u0007itle", "content": "body\u001b[2J\nmore"}]}
    rows = _results("search_knowledge", CallToolResult(content=[TextContent(type="text", text=json.dumps(body))]))
    assert rows == [{"id": "a", "title": "Title", "content": "body\nmore"}]
    with pytest.raises(Exception) as err:
        _results("search_knowledge", CallToolResult(content=[TextContent(type="text", text="no\x1b[2J way")], isError=True))
    assert "\x1b" not in str(err.value) and "no way" in str(err.value)


def test_form_answers_sent_as_json(loop, knowledge, project_copy):
    s = Session(loop, knowledge, str(project_copy("support-bot")))
    s.run_until(answer_from(HAPPY), lambda p: p["question_id"] == "infrastructure.decision")
    s.resume({"tracking_tool": "MLflow\x1b]0;pwned\x07\x1b[31m!"})
    fields = s.values()["decisions"]["infrastructure"]["fields"]
    assert fields["tracking_tool"] == "MLflow!"
    assert not any(RAW.search(str(m.content).replace("\n", "")) for m in s.values()["messages"]), "the chat shows the sanitized form"
    assert s.values()["answers"][-1]["answer"]["tracking_tool"].startswith("MLflow\x1b]0;"), "what was sent is kept as sent"


def test_model_output(loop, knowledge, project_copy):
    def responder(tool, messages):
        args = canned_args(tool, messages)
        if tool == "MenuAnswer":
            args["answer"] = "Use r=16\x1b]0;pwned\x07\x1b[2J [/red] for this."
        return tool_call(tool, args)

    s = Session(loop, knowledge, str(project_copy("support-bot")))
    s.context.chat_model = ToolFakeChatModel(responder=responder)
    s.context.llm_backoff = 0.0
    s.run_until(answer_from(HAPPY), lambda p: p["question_id"] == "menu")
    answer = s.resume("Which LoRA rank should I use?")["prompt"]
    assert "Use r=16 [/red] for this." in answer and "\x1b" not in answer and "pwned" not in answer
