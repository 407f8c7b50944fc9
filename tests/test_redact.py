"""Credentials in server URLs never reach the terminal, the artifacts, the checkpoints or transcripts."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest

from agent.redact import redact_text, redact_url
from tests.conftest import FIXTURES
from tests.driver import HAPPY, answer_from
from tests.test_knowledge_transports import free_port, start, stop, wait_ready

SECRETS = ("alice-user", "pw-S3cret", "tok-S3cret", "ak-S3cret", "sig-S3cret", "at-S3cret", "k-S3cret")
QUERY = "token=tok-S3cret&api_key=ak-S3cret&limit=5&sig=sig-S3cret&access_token=at-S3cret&key=k-S3cret"


def url(base: str) -> str:
    return base.replace("http://", "http://alice-user:pw-S3cret@") + f"/mcp?{QUERY}"


@pytest.mark.parametrize("raw,clean", [
    ("http://user:pass@host:8080/mcp", "http://host:8080/mcp"),
    ("https://user@host/mcp?token=abc&x=1", "https://host/mcp?token=REDACTED&x=1"),
    ("http://h/mcp?api_key=A&key=B&apikey=C&access_token=D&sig=E&X-Amz-Signature=F&client_secret=G&limit=3",
     "http://h/mcp?api_key=REDACTED&key=REDACTED&apikey=REDACTED&access_token=REDACTED&sig=REDACTED&X-Amz-Signature=REDACTED&client_secret=REDACTED&limit=3"),
    ("http://h/cb#access_token=abc&state=s", "http://h/cb#access_token=REDACTED&state=s"),
    ("http://h/mcp?token=", "http://h/mcp?token="),
    ("http://[::1]:8765/mcp", "http://[::1]:8765/mcp"),
    ("not a url", "not a url"),
])
def test_redact_url(raw, clean):
    assert redact_url(raw) == clean


def test_redact_text_finds_urls_inside_messages():
    text = "Client error '401' for url 'http://u:p@h:1/mcp?token=t0k' (retry http://h/x?sig=s1)"
    assert redact_text(text) == "Client error '401' for url 'http://h:1/mcp?token=REDACTED' (retry http://h/x?sig=REDACTED)"


def test_start_up_line_has_no_password_of_the_model_endpoint(monkeypatch):
    from agent.llm import context_from_args, mode_description

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://alice-user:pw-S3cret@127.0.0.1:9/v1?api_key=ak-S3cret")
    line = mode_description(context_from_args(False, "m", None))
    assert "127.0.0.1:9/v1?api_key=REDACTED" in line
    assert not [s for s in SECRETS if s in line]


def test_knowledge_settings_and_errors_name_the_server_without_credentials(monkeypatch):
    from agent.knowledge.client import KnowledgeConfig

    monkeypatch.setenv("KNOWLEDGE_MCP_URL", url("http://127.0.0.1:9"))
    monkeypatch.setenv("KNOWLEDGE_MCP_TIMEOUT", "many")
    with pytest.raises(ValueError) as bad:
        KnowledgeConfig.load()
    monkeypatch.delenv("KNOWLEDGE_MCP_TIMEOUT")
    target = KnowledgeConfig.load().target
    assert target.startswith("http://127.0.0.1:9/mcp?token=REDACTED")
    for text in (str(bad.value), target):
        assert not [s for s in SECRETS if s in text], text


# -- a whole terminal session with such URLs ----------------------------------------------------------

pexpect = pytest.importorskip("pexpect")
SCRIPT = Path(sys.executable).parent / "training-pipeline"
QUESTION_ID = re.compile(r"╰─+ ([A-Za-z0-9_.]+) ─+╯")
PROMPT = re.compile(r"\n> ")
THREAD_ID = "phase-2-training"


def checkpoint_text(project: Path, thread: str) -> str:
    """Every checkpoint and pending write of the thread, decoded, as text."""
    from agent.checkpoint import ProjectCheckpointer

    saver = ProjectCheckpointer(project)
    parts = []
    for t in saver.list({"configurable": {"thread_id": thread}}):
        parts.append(json.dumps(t.checkpoint, default=str, ensure_ascii=False))
        parts.append(json.dumps(t.pending_writes, default=str, ensure_ascii=False))
    assert parts, "the session saved checkpoints"
    return "\n".join(parts)


def run_chat(project: Path, env: dict[str, str], transcript: Path) -> str:
    """`training-pipeline chat` in a pseudo-terminal, answered as tests/driver.py does; its output."""
    answer = answer_from(HAPPY)
    child = pexpect.spawn(str(SCRIPT), ["chat", "--project", str(project), "--offline", "--record", str(transcript)],
                          env=env, encoding="utf-8", timeout=120, dimensions=(50, 200))
    seen = ""
    try:
        for _ in range(60):
            found = child.expect([QUESTION_ID, pexpect.EOF])
            seen += child.before + (child.after if found == 0 else "")
            if found == 1:
                break
            qid = child.match.group(1)
            child.expect(PROMPT)
            seen += child.before
            child.sendline(answer({"question_id": qid, "prompt": ""}))
        child.close()
    finally:
        if child.isalive():
            child.kill(signal.SIGKILL)
            child.close(force=True)
    assert child.exitstatus == 0, seen[-3000:]
    return seen


@pytest.mark.skipif(not SCRIPT.exists(), reason="the training-pipeline console script is not installed")
@pytest.mark.parametrize("server", ["answering", "not listening"])
def test_a_session_with_credentials_in_the_urls_leaves_none_anywhere(server, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(FIXTURES / "support-bot", project)
    for p in [project, *project.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KNOWLEDGE_MCP_", "OPENAI_"))}
    env.update({"COLUMNS": "200", "LINES": "50", "TERM": "dumb", "NO_COLOR": "1",
                "KNOWLEDGE_MCP_TRANSPORT": "streamable_http", "KNOWLEDGE_MCP_TIMEOUT": "60",
                "OPENAI_BASE_URL": "http://alice-user:pw-S3cret@127.0.0.1:9/v1?key=k-S3cret"})
    proc = None
    if server == "answering":
        proc, base = start("streamable-http")
    else:
        base = f"http://127.0.0.1:{free_port()}"
    env["KNOWLEDGE_MCP_URL"] = url(base)
    transcript = tmp_path / "session.yaml"
    try:
        if proc is not None:
            wait_ready(proc, base, deadline_s=60)
        output = run_chat(project, env, transcript)
    finally:
        if proc is not None:
            stop(proc)

    texts = {"terminal": output, "checkpoints": checkpoint_text(project, THREAD_ID),
             "transcript": transcript.read_text(encoding="utf-8")}
    for p in project.rglob("*"):
        if p.is_file() and ".training-pipeline" not in p.parts:
            texts[str(p.relative_to(project))] = p.read_text(encoding="utf-8", errors="replace")
    assert "phase-2-training/spec.md" in texts
    leaks = {name: [s for s in SECRETS if s in text] for name, text in texts.items()}
    assert not {k: v for k, v in leaks.items() if v}, leaks
    spec = texts["phase-2-training/spec.md"]
    if server == "answering":
        assert "top items:" in spec and "could not be consulted" not in spec
    else:  # the errors name the server, without its credentials
        assert f"{base}/mcp?token=REDACTED" in spec and "cannot connect" in spec
        assert "cannot connect" in output and "token=REDACTED" in output, output[-6000:]
