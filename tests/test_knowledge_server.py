"""Contract tests: the embedded server answers exactly like the real Knowledge MCP server.

The server runs in process over the MCP SDK's in-memory transport, so these test the
MCP layer (schemas, validation, envelopes) without starting processes.
"""

from __future__ import annotations

import json

import pytest
from mcp.shared.memory import create_connected_server_and_client_session

from agent.knowledge.models import RESPONSE_MODELS, TOOLS
from agent.knowledge.server import build_server
from agent.knowledge.store import default_knowledge_base, item_id


def connected():
    # A context manager per test, not an async fixture: the session's task group must be
    # exited by the task that entered it.
    return create_connected_server_and_client_session(build_server())


async def call(session, tool, args):
    result = await session.call_tool(tool, args)
    assert len(result.content) == 1 and result.content[0].type == "text"
    assert result.structuredContent is None
    return result


async def envelope(session, tool, args):
    result = await call(session, tool, args)
    assert not result.isError, result.content[0].text
    text = result.content[0].text
    assert text.startswith("{\n  "), "pretty-printed JSON, like the real server"
    body = json.loads(text)
    RESPONSE_MODELS[tool].model_validate(body)
    assert set(body) == {"results", "metadata"}
    assert body["metadata"]["result_count"] == len(body["results"])
    return body


async def test_lists_the_seven_tools_with_the_real_parameters():
    async with connected() as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert sorted(tools) == sorted(TOOLS)
        props = {name: t.inputSchema["properties"] for name, t in tools.items()}
        assert tools["search_knowledge"].inputSchema["required"] == ["query"]
        assert props["search_knowledge"]["query"]["minLength"] == 1
        assert (props["search_knowledge"]["limit"]["default"], props["search_knowledge"]["limit"]["minimum"],
                props["search_knowledge"]["limit"]["maximum"]) == (10, 1, 100)
        for name in ("get_decisions", "get_patterns", "get_warnings", "get_methodologies"):
            assert set(props[name]) == {"topic", "limit"}
            assert "required" not in tools[name].inputSchema or tools[name].inputSchema["required"] == []
            assert (props[name]["limit"]["default"], props[name]["limit"]["minimum"], props[name]["limit"]["maximum"]) == (100, 1, 500)
        assert set(props["list_sources"]) == {"limit"} and props["list_sources"]["limit"]["maximum"] == 500
        compare = tools["compare_sources"].inputSchema
        assert sorted(compare["required"]) == ["source_ids", "topic"]
        assert compare["properties"]["source_ids"]["minItems"] == 2
        assert (compare["properties"]["limit_per_source"]["default"], compare["properties"]["limit_per_source"]["maximum"]) == (10, 50)
        assert all(t.outputSchema is None for t in tools.values()), "no structured output, like the real server"


@pytest.mark.parametrize("tool", ["get_decisions", "get_patterns", "get_warnings", "get_methodologies"])
async def test_filters_validate_and_match_the_topic_exactly(tool):
    async with connected() as session:
        everything = await envelope(session, tool, {})
        assert everything["metadata"]["query"] == "all" and everything["metadata"]["search_type"] == "filtered"
        assert len(everything["results"]) >= 15
        tagged = await envelope(session, tool, {"topic": "fine-tuning"})
        assert tagged["results"] and all("fine-tuning" in r["topics"] for r in tagged["results"])
        # Storage order: the filtered list is the full list with the others taken out.
        order = [r["id"] for r in everything["results"]]
        ids = [r["id"] for r in tagged["results"]]
        assert ids == [i for i in order if i in set(ids)]
        assert tagged["metadata"]["sources_cited"] == sorted({r["source_title"] for r in tagged["results"]})
        # Exact and case-sensitive: the seed's own topics are not tags.
        assert (await envelope(session, tool, {"topic": "Fine-Tuning"}))["results"] == []
        assert (await envelope(session, tool, {"topic": "fine-tuning mistakes"}))["results"] == []
        assert len((await envelope(session, tool, {"topic": "fine-tuning", "limit": 2}))["results"]) == 2


async def test_search_ranks_with_scores_and_attribution():
    async with connected() as session:
        body = await envelope(session, "search_knowledge", {"query": "QLoRA 4-bit NF4 quantization memory", "limit": 5})
        results = body["results"]
        assert len(results) == 5 and body["metadata"]["search_type"] == "semantic"
        scores = [r["score"] for r in results]
        assert scores == sorted(scores, reverse=True) and scores[0] > 0
        assert {r["type"] for r in results} <= {"chunk", "extraction"}
        assert any("QLoRA" in r["content"] for r in results[:2])
        assert all(r["source"]["authors"] and r["source"]["title"] for r in results)
        assert body["metadata"]["sources_cited"] == sorted({r["source"]["title"] for r in results})
        extraction = next(r for r in results if r["type"] == "extraction")
        assert extraction["content"].split(": ")[0] in {"Question", "Warning", "Pattern", "Methodology"}
        assert " | " in extraction["content"]


async def test_search_for_a_known_item_finds_it_first():
    async with connected() as session:
        body = await envelope(session, "search_knowledge", {"query": "instruction dataset creation hardest part"})
        assert body["results"][0]["id"] == item_id("warning", "instruction-dataset-hardest-part")


async def test_search_with_no_shared_word_is_empty():
    async with connected() as session:
        body = await envelope(session, "search_knowledge", {"query": "zzzz qqqq"})
        assert body["results"] == [] and body["metadata"]["result_count"] == 0


async def test_list_sources_counts_extractions():
    async with connected() as session:
        body = await envelope(session, "list_sources", {})
        assert body["metadata"]["search_type"] == "list" and body["metadata"]["query"] == "all"
        kb = default_knowledge_base()
        total = sum(sum(r["extraction_counts"].values()) for r in body["results"])
        assert total == sum(len(v) for v in kb.items.values())
        assert len((await envelope(session, "list_sources", {"limit": 3}))["results"]) == 3


async def test_compare_sources_groups_by_source():
    async with connected() as session:
        sources = (await envelope(session, "list_sources", {}))["results"]
        ids = [s["id"] for s in sources if s["extraction_counts"]][:2]
        body = await envelope(session, "compare_sources", {"topic": "fine-tuning", "source_ids": ids, "limit_per_source": 3})
        assert [r["source_id"] for r in body["results"]] == ids
        assert body["metadata"]["search_type"] == "comparison" and body["metadata"]["result_count"] == 2
        assert all(len(r["extractions"]) <= 3 for r in body["results"])
        assert all("fine-tuning" in e["topics"] for r in body["results"] for e in r["extractions"])


async def test_compare_sources_unknown_id_is_a_route_error():
    async with connected() as session:
        sources = (await envelope(session, "list_sources", {"limit": 1}))["results"]
        result = await call(session, "compare_sources", {"topic": "rag", "source_ids": [sources[0]["id"], "nope"]})
        assert result.isError
        text = result.content[0].text
        prefix = "Error calling compare_sources. Status code: 404. Response: "
        assert text.startswith(prefix)
        assert json.loads(text[len(prefix):])["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("tool,args", [
    ("search_knowledge", {}),
    ("search_knowledge", {"query": ""}),
    ("search_knowledge", {"query": "lora", "limit": 101}),
    ("get_decisions", {"limit": 0}),
    ("get_warnings", {"limit": 501}),
    ("get_patterns", {"topic": 3}),
    ("list_sources", {"limit": "many"}),
    ("compare_sources", {"topic": "rag", "source_ids": ["only-one"]}),
    ("compare_sources", {"source_ids": ["a", "b"]}),
    ("compare_sources", {"topic": "rag", "source_ids": ["a", "b"], "limit_per_source": 51}),
])
async def test_bad_arguments_get_the_real_servers_error_text(tool, args):
    async with connected() as session:
        result = await call(session, tool, args)
        assert result.isError
        assert result.content[0].text.startswith("Input validation error: ")


def test_http_apps_require_the_api_key_only_when_one_is_set():
    # Deliberate difference from the real server (see KnowledgeServer): a configured key guards
    # every request; without one, every request is served, as at the real server's public tier.
    from starlette.testclient import TestClient

    guarded = TestClient(build_server(api_key="kp_" + "a" * 32).sse_app())
    missing = guarded.get("/mcp")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "UNAUTHORIZED"
    assert "X-API-Key" in missing.json()["error"]["message"]
    assert guarded.post("/mcp/messages/", headers={"X-API-Key": "wrong"}).status_code == 401
    assert guarded.get("/health").status_code == 200
    open_app = TestClient(build_server().sse_app())
    assert open_app.post("/mcp/messages/").status_code != 401


# -- where the real server's behaviour is visible to a client -------------------------------------


@pytest.mark.parametrize("tool", ["get_decisions", "get_patterns", "get_warnings", "get_methodologies"])
async def test_empty_topic_means_all_and_null_is_not_a_string(tool):
    async with connected() as session:
        omitted = await envelope(session, tool, {})
        empty = await envelope(session, tool, {"topic": ""})
        assert empty["results"] == omitted["results"] and len(empty["results"]) >= 15
        assert empty["metadata"]["query"] == "all"
        null = await call(session, tool, {"topic": None})
        assert null.isError
        assert null.content[0].text.startswith("Input validation error: ") and "string" in null.content[0].text


async def test_compare_sources_not_found_says_what_the_real_server_says():
    async with connected() as session:
        sources = (await envelope(session, "list_sources", {"limit": 1}))["results"]
        result = await call(session, "compare_sources", {"topic": "rag", "source_ids": [sources[0]["id"], "nope"]})
        prefix = "Error calling compare_sources. Status code: 404. Response: "
        error = json.loads(result.content[0].text[len(prefix):])["error"]
        assert error == {"code": "NOT_FOUND", "message": "source with id 'nope' not found",
                         "details": {"resource": "source", "id": "nope"}, "retry_after": None}


async def test_methodology_steps_are_objects_with_order_and_title():
    async with connected() as session:
        body = await envelope(session, "get_methodologies", {"topic": "fine-tuning"})
        for m in body["results"]:
            assert m["steps"], m["name"]
            assert [s["order"] for s in m["steps"]] == list(range(1, len(m["steps"]) + 1))
            assert all(set(s) == {"order", "title", "description"} and s["title"] for s in m["steps"])
        dpo = next(m for m in body["results"] if m["name"] == "DPO alignment")
        first = dpo["steps"][0]
        assert first["title"] == "Start from an SFT or instruction-tuned checkpoint"
        assert first["description"] == "DPO refines, it does not teach the task"
        # Search content names the steps by title, the first five, as the real server does.
        hits = await envelope(session, "search_knowledge", {"query": "DPO alignment preference pairs", "limit": 20})
        content = next(h["content"] for h in hits["results"] if h["content"].startswith("Methodology: DPO alignment"))
        steps = content.split(" | Steps: ", 1)[1].split("; ")
        assert steps == [s["title"] for s in dpo["steps"][:5]]


async def test_client_reads_methodology_steps_as_objects_strings_or_none():
    from agent.knowledge.models import normalize

    row = {"id": "m1", "name": "DPO alignment", "topics": ["fine-tuning"], "source_title": "Book", "source_id": "s"}
    as_objects = normalize("get_methodologies", dict(row, steps=[{"order": 1, "title": "Build pairs", "description": "x"},
                                                                  {"order": 2, "title": "Run DPO"}]))
    as_strings = normalize("get_methodologies", dict(row, steps=["Build pairs", "Run DPO"]))
    assert as_objects.body == "Steps: Build pairs: x; Run DPO"
    assert as_strings.body == "Steps: Build pairs; Run DPO"
    assert normalize("get_methodologies", dict(row, steps=[])).title == "DPO alignment"
