"""A real browser against the real server: headless Chromium (Debian's package), driven by Playwright.

tests/browser/chat.html is a small chat page speaking to the LangGraph API as Agent Chat UI does
(messages-only input, cards for human-in-the-loop requests, `{"decisions": [...]}` resumes);
tests/browser/chat_session.mjs starts a session there, answers a question in its card, approves a
decision and answers the next question from the chat box. `.ci/run` installs Chromium and the npm
package (`npm ci --prefix tests/browser`); the test skips, saying which, only where one is missing.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from tests.driver import HAPPY
from tests.test_studio import (
    DevServer,
    _local_server_bypasses_proxies,  # noqa: F401  (module fixture: no proxy for 127.0.0.1)
    copy_fixture,
)

BROWSER_DIR = Path(__file__).parent / "browser"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
NODE = shutil.which("node")


def missing() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"Chromium not installed at {CHROMIUM} (Debian: apt-get install chromium; .ci/run does it)"
    if NODE is None:
        return "node not installed"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return "playwright-core not installed (npm ci --prefix tests/browser; .ci/run does it)"
    return None


pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")


@pytest.fixture
def page_server():
    """Serves tests/browser on 127.0.0.1 (the page is loaded over http, as a front end would be)."""
    handler = functools.partial(_QuietHandler, directory=str(BROWSER_DIR))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test's output stays readable
        pass


def test_browser_starts_a_session_answers_and_approves(tmp_path, page_server):
    project = copy_fixture("support-bot", tmp_path / "projects")
    srv = DevServer(tmp_path / "server", tmp_path / "checkpoints")
    srv.start()
    try:
        env = {
            **os.environ,
            "CHROMIUM": CHROMIUM,
            "USER_DATA_DIR": str(tmp_path / "chromium-profile"),  # a fresh profile
            "PAGE_URL": f"{page_server}/chat.html?api={srv.url}&assistant=training_pipeline",
            "PROJECT_DIR": str(project),
            "FIRST_TITLE": "Base model constraints",
            "FIRST_ANSWER": HAPPY["base_model.constraints"],
            "DECISION_TITLE": "Base model selection: your decision",
            "NEXT_TITLE": "Data and goals",
            "NEXT_ANSWER": HAPPY["training_approach.goals"],
            "NEXT_DECISION_TITLE": "Training approach selection: your decision",
        }
        done = subprocess.run([NODE, str(BROWSER_DIR / "chat_session.mjs")], env=env, capture_output=True, text=True,
                              timeout=900, cwd=BROWSER_DIR)
    finally:
        srv.stop()
    assert done.stdout.strip(), done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and "error" not in report, report.get("error") or done.stderr[-3000:]
    assert not report.get("pageErrors") and not report["status"], report

    first, decision, following, next_decision = report["cards"]
    # Each card sits under the AI message that asks its question.
    for card in report["cards"]:
        assert card["above"]["kind"] == "msg-ai" and card["title"] in card["above"]["text"], card
    assert first["buttons"] == ["submit-edit"]  # a free-text question: answered in its field
    assert decision["buttons"] == ["submit-edit", "approve", "reject"]
    assert "Approve" in decision["description"] and "| Field |" not in decision["description"]
    assert "| Field | Value |" in decision["above"]["text"]  # the proposal's table is in the message
    texts = [m["text"] for m in report["messages"]]
    assert HAPPY["base_model.constraints"] in texts and HAPPY["training_approach.goals"] in texts
    assert any(t.startswith("Recorded TP-001") or t.startswith("Recorded **TP-001**") for t in texts)
    assert sum("Fine-tuning Your Model" in t for t in texts) == 1  # the chat-box answer did not start over

    sidecar = yaml.safe_load((project / "sidecar.yaml").read_text(encoding="utf-8"))
    assert [d["id"] for d in sidecar["decisions"] if d["id"].startswith("tp-")] == ["tp-001"]
    srv.assert_no_blocking_calls()
