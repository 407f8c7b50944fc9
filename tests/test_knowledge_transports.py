"""The client against the embedded server run as a separate process, over each transport.

HTTP servers are started once per module (they are slow-ish to start), on free ports,
and killed by pid at the end.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agent.knowledge.catalog import queries_for
from agent.knowledge.client import KnowledgeClient, KnowledgeConfig
from tests.conftest import seconds

ROOT = Path(__file__).resolve().parents[1]
KEY = "kp_" + "0123456789abcdef" * 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(transport: str, api_key: str | None = None, port: int | None = None, latency_ms: int = 0) -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    cmd = [sys.executable, "-m", "agent.knowledge.server", "--transport", transport, "--port", str(port)]
    if latency_ms:
        cmd += ["--latency-ms", str(latency_ms)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("KNOWLEDGE_MCP_SERVER_API_KEY", None)
    if api_key:
        cmd += ["--api-key", api_key]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, base: str, deadline_s: float = 20) -> None:
    deadline_s = seconds(deadline_s)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=seconds(1)).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {base} not ready after {deadline_s}s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=seconds(5))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def servers():
    """streamable-http and sse, each without and with an API key: four processes started together."""
    specs = {"streamable_http": ("streamable-http", None), "sse": ("sse", None),
             "streamable_http+key": ("streamable-http", KEY), "sse+key": ("sse", KEY)}
    started = {name: start(t, k) for name, (t, k) in specs.items()}
    try:
        for proc, base in started.values():
            wait_ready(proc, base)
        yield {name: base for name, (_, base) in started.items()}
    finally:
        for proc, _ in started.values():
            stop(proc)


def config(transport: str, base: str, api_key: str | None = None) -> KnowledgeConfig:
    return KnowledgeConfig(transport=transport, url=f"{base}/mcp", api_key=api_key, timeout_s=seconds(10))


async def exercise(cfg: KnowledgeConfig) -> None:
    """A stage's catalog queries and a free question, over one session."""
    async with KnowledgeClient(cfg) as client:
        records = await client.run(queries_for("peft"))
        answer = await client.ask("how much GPU memory does QLoRA need for a 7B model?")
    for r in [*records, answer]:
        assert r.error is None, r.error
        assert r.items and r.result_ids == [i.id for i in r.items] and len(r.items) <= 5
        assert all(i.source_title and i.source_authors for i in r.items)
    # The seed's topic is no tag: the mapped tags answered, and the record names those whose items it kept.
    assert records[1].fallback == "get_decisions:fine-tuning"
    assert {i.via for i in records[1].items} == {"get_decisions:fine-tuning"}
    assert any("QLoRA" in i.title for i in answer.items)


async def test_stdio_is_the_default_and_works():
    cfg = KnowledgeConfig()
    assert cfg.transport == "stdio" and cfg.command[1:3] == ["-m", "agent.knowledge.server"]
    await exercise(cfg)


@pytest.mark.parametrize("name", ["streamable_http", "sse"])
async def test_http_transports_without_a_key(servers, name):
    await exercise(config(name, servers[name]))


@pytest.mark.parametrize("name", ["streamable_http", "sse"])
async def test_http_transports_with_the_right_key(servers, name):
    transport = name
    await exercise(config(transport, servers[f"{name}+key"], api_key=KEY))


@pytest.mark.parametrize("name", ["streamable_http", "sse"])
@pytest.mark.parametrize("key", [None, "kp_" + "f" * 32])
async def test_missing_or_wrong_key_is_explained(servers, name, key):
    async with KnowledgeClient(config(name, servers[f"{name}+key"], api_key=key)) as client:
        records = await client.run(queries_for("training_approach") + queries_for("infrastructure"))
    for r in records:
        assert r.items == [] and r.result_ids == []
        assert "HTTP 401" in r.error and "X-API-Key" in r.error
        assert ("rejected the API key" in r.error) == (key is not None)


def test_unauthorized_http_answer_matches_the_real_server(servers):
    base = servers["streamable_http+key"]
    for headers in ({}, {"X-API-Key": "kp_" + "e" * 32}):
        r = httpx.post(f"{base}/mcp", json={}, headers=headers, timeout=seconds(5))
        assert r.status_code == 401
        err = r.json()["error"]
        assert err["code"] == "UNAUTHORIZED" and err["message"]
    assert httpx.get(f"{servers['sse+key']}/mcp", timeout=seconds(5)).status_code == 401
    assert httpx.get(f"{base}/health", timeout=seconds(5)).status_code == 200


@pytest.mark.parametrize("client_transport,server,other", [
    ("sse", "streamable_http", "streamable_http"),
    ("streamable_http", "sse", "sse"),
])
async def test_wrong_transport_names_the_failure_and_the_other_one(servers, client_transport, server, other):
    async with KnowledgeClient(config(client_transport, servers[server])) as client:
        record = (await client.run(queries_for("training_data")))[0]
    assert record.items == []
    assert f"{client_transport} transport" in record.error
    assert f"KNOWLEDGE_MCP_TRANSPORT={other}" in record.error


async def test_nobody_listening():
    async with KnowledgeClient(config("streamable_http", f"http://127.0.0.1:{free_port()}")) as client:
        record = await client.ask("lora rank")
    assert "cannot connect" in record.error and record.items == []


def test_one_client_across_event_loops():
    """A sync caller may run each turn in its own asyncio.run: the client reopens, never breaks."""
    import asyncio

    client = KnowledgeClient(KnowledgeConfig(timeout_s=seconds(10)))
    first = asyncio.run(client.run(queries_for("training_data")))[0]
    second = asyncio.run(client.ask("LoRA rank"))
    asyncio.run(client.aclose())
    assert first.error is None and second.error is None
    assert first.items and second.items


def every_stage_query() -> list:
    from agent.state import SECTIONS

    return [q for stage in ("consult_knowledge", *SECTIONS) for q in queries_for(stage)]


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_http_server_restart_mid_session_reconnects(transport):
    """A remote server that restarts forgets our session; the client opens a new one, and every
    call in flight on the old one (all stages' queries at once) retries on it rather than waiting
    out the call timeout."""
    proc, base = start(transport)
    port = int(base.rsplit(":", 1)[1])
    try:
        wait_ready(proc, base)
        async with KnowledgeClient(config(transport.replace("-", "_"), base)) as client:
            before = await client.run(every_stage_query())
            stop(proc)
            proc, _ = start(transport, port=port)
            wait_ready(proc, base)
            after = await client.run(every_stage_query())
    finally:
        stop(proc)
    assert [r.error for r in before] == [None] * len(before)
    assert [r.error for r in after] == [None] * len(after)
    assert [r.result_ids for r in after] == [r.result_ids for r in before]


@pytest.mark.parametrize("name", ["streamable_http", "sse"])
async def test_real_server_behaviour_over_http(servers, name):
    """Over each real transport, a client sees what the real server answers."""
    import json

    async with KnowledgeClient(config(name, servers[name])) as client:  # no key: served, as at the public tier
        omitted = await client._call("get_methodologies", {})
        empty = await client._call("get_methodologies", {"topic": ""})
        null = await client._call("get_decisions", {"topic": None})
        sources = json.loads((await client._call("list_sources", {"limit": 1})).content[0].text)["results"]
        missing = await client._call("compare_sources", {"topic": "rag", "source_ids": [sources[0]["id"], "nope"]})
    body = json.loads(empty.content[0].text)
    assert body["metadata"]["query"] == "all" and body["results"] == json.loads(omitted.content[0].text)["results"]
    assert all(isinstance(s, dict) and {"order", "title"} <= set(s) for m in body["results"] for s in m["steps"])
    assert null.isError and null.content[0].text.startswith("Input validation error: ")
    assert missing.isError and "Status code: 404" in missing.content[0].text
    error = json.loads(missing.content[0].text.split("Response: ", 1)[1])["error"]
    assert error["message"] == "source with id 'nope' not found" and error["details"] == {"resource": "source", "id": "nope"}


# -- kb serve beyond loopback -------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_kb_serve_beyond_loopback_without_a_key_is_refused(host, capsys, monkeypatch):
    from agent.cli import main

    monkeypatch.delenv("KNOWLEDGE_MCP_SERVER_API_KEY", raising=False)
    assert main(["kb", "serve", "--transport", "streamable-http", "--host", host, "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert f"Refusing to serve the knowledge base on {host} without an API key" in err
    assert "--api-key" in err and "--insecure" in err


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_key(host):
    from agent.knowledge.server import exposure_refusal

    assert exposure_refusal("sse", host, has_key=False, insecure=False) is None
    assert exposure_refusal("stdio", "0.0.0.0", has_key=False, insecure=False) is None


@pytest.mark.parametrize("extra,env_key,expect_warning", [
    (["--insecure"], None, True),
    (["--api-key", KEY], None, False),
    ([], KEY, False),
])
def test_kb_serve_beyond_loopback_with_a_key_or_insecure_serves(extra, env_key, expect_warning):
    script = Path(sys.executable).parent / "training-pipeline"
    if not script.exists():
        pytest.skip("the training-pipeline console script is not installed")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("KNOWLEDGE_MCP_SERVER_API_KEY", None)
    if env_key:
        env["KNOWLEDGE_MCP_SERVER_API_KEY"] = env_key
    proc = subprocess.Popen([str(script), "kb", "serve", "--transport", "streamable-http", "--host", "0.0.0.0",
                             "--port", str(port), *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base, deadline_s=60)
        guarded = httpx.post(f"{base}/mcp", json={}, timeout=seconds(10)).status_code == 401
        assert guarded == (not expect_warning)
    finally:
        stop(proc)
    err = proc.stderr.read().decode()
    assert ("WARNING" in err and "without an API key" in err) == expect_warning
