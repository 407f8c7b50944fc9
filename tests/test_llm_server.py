"""A whole session through the real `ChatOpenAI` against a local OpenAI-compatible server.

The server (stdlib http.server, in a thread, on a free 127.0.0.1 port) answers
`/v1/chat/completions` with tool calls and `usage`, built from the prompt it receives.
It also answers one request with a 429 and one with a malformed tool call: the session
must still end with six confirmed decisions and the phase's artifacts.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from agent.llm import context_from_args, mode_description
from agent.state import SECTIONS
from tests.driver import HAPPY, TODAY, Session, answer_from
from evals.llm_fakes import canned_args

PROMPT_TOKENS, COMPLETION_TOKENS = 100, 25


class FakeOpenAI:
    """Canned chat completions; `faults` maps a tool name to the replies it gets first."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.faults: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, payload = owner.respond(self.path, body, dict(self.headers))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def respond(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append(body)
            self.headers.append(headers)
            n = len(self.requests)
            if path != "/v1/chat/completions":
                return 404, {"error": {"message": f"no route {path}"}}
            tool = body["tools"][0]["function"]["name"]
            fault = self.faults.get(tool, [])
            kind = fault.pop(0) if fault else "ok"
        if kind == "429":
            return 429, {"error": {"message": "Rate limit reached", "type": "rate_limit_error", "code": "rate_limit_exceeded"}}
        if kind == "malformed":
            arguments = '{"reasoning": ["unterminated'
        elif tool == "AnswerReading":
            arguments = json.dumps({"understood": True, "edits": {"r": 32, "alpha": 64}, "summary": "Rank 32, alpha 64."})
        else:
            arguments = json.dumps(canned_args(tool, body["messages"]))
        message = {"role": "assistant", "content": None,
                   "tool_calls": [{"id": f"call_{n}", "type": "function", "function": {"name": tool, "arguments": arguments}}]}
        return 200, {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1_700_000_000, "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls", "logprobs": None}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS, "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
        }

    def __enter__(self) -> "FakeOpenAI":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    with FakeOpenAI() as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("TRAINING_PIPELINE_MODEL", "local-test-model")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield srv


def test_full_session_through_chat_openai(loop, knowledge, server, project_copy):
    server.faults = {"KnowledgeSynthesis": ["429"], "TrainingApproachRecommendation": ["malformed"]}
    project = project_copy("support-bot")
    s = Session(loop, knowledge, str(project))
    s.context = context_from_args(False, None, None, knowledge, today=TODAY, llm_backoff=0)
    assert mode_description(s.context) == f"Mode: language model local-test-model at {server.url} (the deterministic rules take over if it fails)."

    script = {**HAPPY, "peft.decision": ["give the adapter more capacity, rank 32 please", "yes"]}
    s.run_until(answer_from(script), lambda p: p["question_id"] == "menu")
    values = s.values()

    # Six decisions, each confirmed by the user, and the phase's artifacts.
    assert list(values["decisions"]) == list(SECTIONS)
    accepted = [a["answer"] for a in values["answers"] if a["accepted"] and a["question_id"].endswith(".decision")]
    assert accepted == ["yes"] * 3 + ["give the adapter more capacity, rank 32 please"] + ["yes"] * 3
    for page in ("phase-2-training/spec.md", "phase-2-training/templates/training-config.template.yaml", "decision-log.md", "project-spec.md"):
        assert (project / page).exists(), page
    assert yaml.safe_load((project / "sidecar.yaml").read_text())["phases"]["phase_2_training"] == "complete"

    # The 429 was retried with the same request; the malformed tool call was repaired.
    tools = [r["tools"][0]["function"]["name"] for r in server.requests]
    assert tools[:2] == ["KnowledgeSynthesis", "KnowledgeSynthesis"] and server.requests[0] == server.requests[1]
    repair = [r for r in server.requests if r["tools"][0]["function"]["name"] == "TrainingApproachRecommendation"]
    assert len(repair) == 2 and "Call the tool again" in repair[1]["messages"][-1]["content"]
    for section in SECTIONS:
        d = values["decisions"][section]
        assert not any("invented" in i for i in d["knowledge_items"])
        # PEFT was then edited by the user's answer, and edits are applied by the rules.
        assert d["rationale"].startswith("Model rationale") is (section != "peft"), section
    assert values["decisions"]["peft"]["fields"]["r"] == 32 and values["decisions"]["peft"]["fields"]["alpha"] == 64

    # What went over the wire: the key, the model, and a persona far shorter than the seed.
    assert {h.get("Authorization") or h.get("authorization") for h in server.headers} == {"Bearer sk-local-test"}
    assert {r["model"] for r in server.requests} == {"local-test-model"}
    assert all(r["messages"][0]["role"] == "system" for r in server.requests)

    # Usage, summed from the responses' usage blocks.
    usage = values["usage"]
    answered = len(server.requests) - 1  # the 429 had no usage
    assert usage["calls"] == len(server.requests) and usage["failed_calls"] == 1
    assert usage["input_tokens"] == PROMPT_TOKENS * answered and usage["output_tokens"] == COMPLETION_TOKENS * answered
    assert usage["prompt_chars"] > 0 and len(values["llm_calls"]) == len(server.requests)

    # The menu: progress shows usage; a question goes to the model; a Phase 3 question does not.
    assert f"Language model: {len(server.requests)} calls, 1 failed" in s.resume("P")["prompt"]
    answered_q = s.resume("What LoRA rank should I use for a hard task?")
    assert "Model answer" in answered_q["prompt"] and server.requests[-1]["tools"][0]["function"]["name"] == "MenuAnswer"
    before = len(server.requests)
    scoped = s.resume("How should we deploy it behind vLLM?")
    assert "later phase" in scoped["prompt"] and len(server.requests) == before
    assert s.resume("C") is None and s.values()["handoff"]["step_id"] == "step-05-inference-pipeline"


def test_server_down_falls_back_to_the_rules_every_turn(loop, knowledge, monkeypatch, project_copy):
    # Nothing listens on the port once the server is closed: every call fails to connect.
    with FakeOpenAI() as srv:
        url = srv.url
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    project = project_copy("support-bot")
    s = Session(loop, knowledge, str(project))
    s.context = context_from_args(False, "local-test-model", url, knowledge, today=TODAY, llm_backoff=0, llm_retries=1)
    shown = s.run_until(answer_from(HAPPY), lambda p: p["question_id"] == "base_model.decision")
    assert "The language model was unavailable (could not connect)" in shown["prompt"]
    s.run_until(answer_from(HAPPY), lambda p: p["question_id"] == "menu")
    values = s.values()
    assert list(values["decisions"]) == list(SECTIONS)
    assert values["usage"]["failed_calls"] == values["usage"]["calls"] == 14  # 7 calls x 2 attempts
