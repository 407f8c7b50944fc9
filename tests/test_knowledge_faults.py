"""Faults: whatever the server does, every query comes back as a record with an error, never an exception."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.knowledge.catalog import load_catalog, queries_for
from agent.knowledge.client import KnowledgeClient, KnowledgeConfig
from tests.conftest import seconds

ROOT = Path(__file__).resolve().parents[1]

# A stand-in Knowledge MCP server that misbehaves on purpose: `mode` picks how.
FAKE_SERVER = textwrap.dedent('''
    import asyncio, json, os, sys
    from mcp.server.fastmcp import FastMCP
    from mcp.types import CallToolResult, TextContent

    mode, marker = sys.argv[1], sys.argv[2]
    mcp = FastMCP("fake-knowledge", log_level="ERROR")
    GOOD = {"id": "0b6f1a52-0000-5000-8000-000000000001", "question": "SFT or DPO?", "options": ["SFT", "DPO"],
            "considerations": ["data"], "recommended_approach": None, "topics": ["fine-tuning"],
            "source_title": "Fake Book", "source_id": "abc", "chunk_id": None}

    # "bad": each tool misbehaves its own way, so one server process covers three faults.
    BAD = {"get_decisions": "malformed", "get_warnings": "error", "get_patterns": "shape"}

    async def answer(tool):
        mode_ = BAD.get(tool, "good") if mode == "bad" else mode
        if mode_ == "malformed":
            return CallToolResult(content=[TextContent(type="text", text='{"results": [')])
        if mode_ == "error":
            return CallToolResult(isError=True, content=[TextContent(type="text", text=
                'Error calling ' + tool + '. Status code: 500. Response: {"error":{"code":"INTERNAL_ERROR"}}')])
        if mode_ == "shape":
            return CallToolResult(content=[TextContent(type="text", text=json.dumps(
                {"results": [{"id": "x", "unexpected": True}], "metadata": {}}))])
        if mode == "hang":
            await asyncio.sleep(60)  # slow, but still notices when the client goes away
        if mode == "die-always" or (mode == "die-once" and not os.path.exists(marker)):
            open(marker, "w").close()
            os._exit(3)
        return CallToolResult(content=[TextContent(type="text", text=json.dumps(
            {"results": [GOOD], "metadata": {"query": "x", "sources_cited": [], "result_count": 1,
                                             "search_type": "filtered"}}))])

    @mcp.tool()
    async def get_decisions(topic: str | None = None, limit: int = 100) -> CallToolResult:
        return await answer("get_decisions")

    @mcp.tool()
    async def get_warnings(topic: str | None = None, limit: int = 100) -> CallToolResult:
        return await answer("get_warnings")

    @mcp.tool()
    async def get_patterns(topic: str | None = None, limit: int = 100) -> CallToolResult:
        return await answer("get_patterns")

    @mcp.tool()
    async def search_knowledge(query: str, limit: int = 10) -> CallToolResult:
        return await answer("search_knowledge")

    @mcp.tool()
    async def list_sources(limit: int = 100) -> CallToolResult:
        return await answer("list_sources")

    mcp.run("stdio")
''')


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER, encoding="utf-8")

    def command(mode: str, timeout_s: float = 10) -> KnowledgeConfig:
        return KnowledgeConfig(command=[sys.executable, str(script), mode, str(tmp_path / "died")], timeout_s=timeout_s)

    return command


SFT_VS_DPO = queries_for("training_approach")


async def run_one(cfg: KnowledgeConfig, queries=SFT_VS_DPO):
    async with KnowledgeClient(cfg) as client:
        return await client.run(queries)


def assert_failed(record, *fragments):
    assert record.items == [] and record.result_ids == []
    assert record.error, "a failed query carries its error"
    for f in fragments:
        assert f in record.error, record.error


async def test_server_that_exits_at_once():
    cfg = KnowledgeConfig(command=[sys.executable, "-c", "import sys; sys.exit(2)"], timeout_s=10)
    start = time.monotonic()
    records = await run_one(cfg, load_catalog())
    assert len(records) == len(load_catalog())
    for r in records:
        assert_failed(r, "exited during start-up")
    assert time.monotonic() - start < seconds(8), "one failed start for the batch, not one per query"


async def test_server_command_that_does_not_exist(tmp_path):
    record = (await run_one(KnowledgeConfig(command=[str(tmp_path / "no-such-server")])))[0]
    assert_failed(record, "cannot start the knowledge server")


async def test_server_that_never_answers_times_out():
    # Reads its input and never answers (but leaves when the client closes its stdin).
    cfg = KnowledgeConfig(command=[sys.executable, "-c", "import sys; sys.stdin.read()"], timeout_s=1)
    start = time.monotonic()
    records = await run_one(cfg, queries_for("peft"))
    for r in records:
        assert_failed(r, "did not answer within 1s")
    assert time.monotonic() - start < seconds(6)


async def test_tool_call_that_hangs_times_out(fake):
    # The server starts under a generous limit (a busy machine is slow to start Python), then
    # each call gets a short one.
    async with KnowledgeClient(fake("hang", timeout_s=60)) as client:
        await client._open()
        client.config.timeout_s = 2.5
        record = (await client.run(SFT_VS_DPO))[0]
    assert_failed(record, "get_decisions timed out after 2.5s")


async def test_malformed_json_error_results_and_wrong_shapes(fake):
    queries = [*queries_for("training_approach"), *queries_for("training_data"), queries_for("base_model")[0]]
    malformed, is_error, shape = await run_one(fake("bad"), queries)
    assert_failed(malformed, "get_decisions returned malformed JSON")
    assert_failed(is_error, "get_warnings returned an error", "Status code: 500")
    assert_failed(shape, "get_patterns returned", "none in the expected shape")


async def test_server_dying_mid_session_is_restarted_once(fake, tmp_path):
    cfg = fake("die-once")
    async with KnowledgeClient(cfg) as client:
        record = (await client.run(SFT_VS_DPO))[0]
        assert (tmp_path / "died").exists(), "the first server really died"
        assert record.error is None and record.result_ids == ["0b6f1a52-0000-5000-8000-000000000001"]
        assert record.items[0].source_title == "Fake Book"
        again = (await client.run(SFT_VS_DPO))[0]  # the replacement session keeps serving
        assert again.error is None and again.result_ids == record.result_ids


async def test_server_that_keeps_dying_gives_up_after_one_reconnect(fake):
    record = (await run_one(fake("die-always")))[0]
    assert_failed(record)
    assert "exited during start-up" in record.error or "reconnecting did not help" in record.error


async def test_http_transport_without_url():
    record = (await run_one(KnowledgeConfig(transport="sse")))[0]
    assert_failed(record, "no URL", "KNOWLEDGE_MCP_URL")


async def test_empty_question():
    async with KnowledgeClient(KnowledgeConfig(command=[sys.executable, "-c", "pass"])) as client:
        record = await client.ask("   ")
    assert_failed(record, "empty")


def test_config_from_file_then_environment(tmp_path, monkeypatch):
    for var in ("KNOWLEDGE_MCP_URL", "KNOWLEDGE_MCP_TRANSPORT", "KNOWLEDGE_MCP_API_KEY", "KNOWLEDGE_MCP_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    default = KnowledgeConfig.load()
    assert (default.transport, default.url, default.timeout_s) == ("stdio", None, 15)
    assert default.command[0] == sys.executable

    file = tmp_path / "knowledge.yaml"
    file.write_text("knowledge:\n  transport: sse\n  url: http://kb.example/mcp\n  timeout_s: 30\n"
                    "  command: python -m my.server --flag\n", encoding="utf-8")
    cfg = KnowledgeConfig.load(file)
    assert (cfg.transport, cfg.url, cfg.timeout_s, cfg.command) == (
        "sse", "http://kb.example/mcp", 30, ["python", "-m", "my.server", "--flag"])

    monkeypatch.setenv("KNOWLEDGE_MCP_TRANSPORT", "streamable-http")
    monkeypatch.setenv("KNOWLEDGE_MCP_API_KEY", "kp_" + "1" * 32)
    monkeypatch.setenv("KNOWLEDGE_MCP_TIMEOUT", "4.5")
    cfg = KnowledgeConfig.load(file)
    assert (cfg.transport, cfg.api_key, cfg.timeout_s) == ("streamable_http", "kp_" + "1" * 32, 4.5)

    monkeypatch.delenv("KNOWLEDGE_MCP_TRANSPORT")
    monkeypatch.setenv("KNOWLEDGE_MCP_URL", "http://other/mcp")
    cfg = KnowledgeConfig.load()
    assert (cfg.transport, cfg.url) == ("streamable_http", "http://other/mcp"), "a URL alone means streamable HTTP"

    monkeypatch.setenv("KNOWLEDGE_MCP_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="invalid knowledge settings"):
        KnowledgeConfig.load()


def test_no_machine_paths_in_the_default_command():
    cmd = KnowledgeConfig().command
    assert cmd[1:] == ["-m", "agent.knowledge.server", "--transport", "stdio"]
    assert os.path.isabs(cmd[0])  # the running interpreter, whatever machine this is


def stdio_children() -> set[int]:
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(os.getpid())], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in out.splitlines() if "agent.knowledge.server --transport stdio" in line}


async def test_idle_stdio_server_leaves_and_the_client_comes_back():
    """Servers we start exit when idle (so none outlives a closed loop); the next call reconnects."""
    before = stdio_children()
    async with KnowledgeClient(KnowledgeConfig(idle_exit_s=0.5, timeout_s=seconds(10))) as client:
        first = (await client.run(SFT_VS_DPO))[0]
        ours = stdio_children() - before
        assert len(ours) == 1
        deadline = time.monotonic() + 10
        while ours & stdio_children() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not ours & stdio_children(), "the idle server exited"
        second = (await client.run(SFT_VS_DPO))[0]
    assert first.error is None and second.error is None and second.result_ids == first.result_ids
