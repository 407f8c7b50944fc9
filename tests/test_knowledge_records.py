"""What the knowledge records say: the call that produced each cited item, each query once,
no empty items, and no more text than we mean to keep, whatever the server's rows hold.

The server is the embedded one over stdio, started on a variant of its data that shows
what the real server does: a tool with nothing for the seed's topic, chunks whose text
was lost after re-embedding, rows of hundreds of kilobytes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path

import pytest

from agent.checkpoint import ProjectCheckpointer
from agent.knowledge.catalog import STAGES, queries_for
from agent.knowledge.client import KnowledgeClient, KnowledgeConfig
from agent.knowledge.models import CUT_MARK, MAX_BODY, MAX_TITLE, cited_refs
from agent.sidecar import load_sidecar, tp_entries
from tests.driver import HAPPY, Session, answer_from

FILLER = "Z" * 200_000  # one 200 KB field

VARIANT_SERVER = textwrap.dedent('''
    import sys
    from agent.knowledge.server import build_server
    from agent.knowledge.store import DATA_DIR, load

    variant = sys.argv[1]
    kb = load(DATA_DIR)
    if variant == "no-patterns":  # get_patterns finds nothing, for any topic
        kb.items["pattern"] = []
    elif variant == "empty-chunks":  # still indexed, but their text is gone
        kb.docs = [dict(d, content="") if d["type"] == "chunk" else d for d in kb.docs]
    elif variant == "huge-rows":
        fill = "Z" * 200_000
        for rows in kb.items.values():
            for r in rows:
                for name in ("question", "name", "title", "description", "problem", "solution", "source_title"):
                    if r.get(name):
                        r[name] = r[name] + " " + fill
                if r.get("considerations"):
                    r["considerations"] = r["considerations"] + [fill]
        kb.docs = [dict(d, content=d["content"] + " " + fill) for d in kb.docs]
    build_server(kb=kb).run("stdio")
''')


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    script = tmp_path_factory.mktemp("variant") / "variant_server.py"
    script.write_text(VARIANT_SERVER, encoding="utf-8")

    def config(name: str) -> KnowledgeConfig:
        return KnowledgeConfig(command=[sys.executable, str(script), name], timeout_s=60)

    return config


def every_query():
    return [q for stage in STAGES for q in queries_for(stage)]


def run_session(loop, knowledge, project: Path, answers: dict | None = None, checkpointer=None) -> dict:
    session = Session(loop, knowledge, str(project), checkpointer=checkpointer)
    return session.run(answer_from(answers or HAPPY))


# -- the call that produced the cited items ------------------------------------------------------


def test_decisions_cite_the_fallback_call_that_produced_their_items(variant, project_copy):
    loop = asyncio.new_event_loop()
    knowledge = KnowledgeClient(variant("no-patterns"))
    project = project_copy("support-bot")
    try:
        values = run_session(loop, knowledge, project)
    finally:
        loop.run_until_complete(knowledge.aclose())
        loop.close()

    fallback = "search_knowledge:base model selection size license context length instruct"
    entry = next(d for d in tp_entries(load_sidecar(project)) if d["id"] == "tp-001")
    assert entry["knowledge_ref"] == fallback
    decision = values["decisions"]["base_model"]
    assert decision["knowledge_refs"][0] == fallback
    assert "get_patterns:model-selection" not in decision["knowledge_refs"]

    patterns = [r for r in values["knowledge"] if r["query_id"] == "base_model.selection_patterns"][-1]
    assert patterns["items"] and patterns["fallback"] == fallback
    assert {i["via"] for i in patterns["items"]} == {fallback}
    # Every ref names a call that produced a cited item, and every cited item's call is named.
    assert decision["knowledge_refs"] == cited_refs(values["knowledge"], decision["knowledge_items"])

    log = (project / "decision-log.md").read_text(encoding="utf-8")
    tp001 = log[log.index("TP-001"):]
    reference = next(line for line in tp001.splitlines() if line.startswith("**Knowledge Reference:**"))
    assert fallback in reference and "get_patterns:model-selection" not in reference
    spec = (project / "phase-2-training" / "spec.md").read_text(encoding="utf-8")
    line = next(x for x in spec.splitlines() if x.startswith("- `get_patterns:model-selection`"))
    assert f"**answered via fallback:** `{fallback}`" in line


async def test_mapped_tags_name_only_the_calls_whose_items_were_kept():
    async with KnowledgeClient(KnowledgeConfig(timeout_s=60)) as client:
        records = await client.run(every_query())
    for r in records:
        assert r.error is None, r.error
        calls = {i.via for i in r.items}
        assert all(calls), "each item names its call"
        if r.fallback:
            assert set(r.fallback.split(", ")) == calls - {r.ref}
        else:
            assert calls <= {r.ref}


# -- a retried query, listed once ---------------------------------------------------------------


def test_a_query_retried_three_times_is_listed_once_with_its_attempts(loop, project_copy, tmp_path):
    dead = KnowledgeConfig(command=[sys.executable, "-c", "import sys; sys.exit(3)"], timeout_s=60)
    knowledge = KnowledgeClient(dead)
    project = project_copy("support-bot")
    session = Session(loop, knowledge, str(project))
    answers = dict(HAPPY, **{"consult_knowledge.retry": ["retry", "retry", "retry", "continue"]})
    try:
        values = session.run(answer_from(answers))
    finally:
        loop.run_until_complete(knowledge.aclose())

    retries = [p for p in session.payloads if p["question_id"] == "consult_knowledge.retry"]
    assert len(retries) == 4
    assert "(failed 4 times)" in retries[-1]["prompt"]
    consult = queries_for("consult_knowledge")
    assert len([r for r in values["knowledge"] if r["section"] == "consult_knowledge"]) == 4 * len(consult)

    spec = (project / "phase-2-training" / "spec.md").read_text(encoding="utf-8")
    section = spec[spec.index("## Knowledge Consulted"):]
    section = section[: section.index("\n## ", 3)] if "\n## " in section[3:] else section
    for q in consult:
        # (The same call made again for a section is listed "(for <section>)".)
        lines = [x for x in section.splitlines() if x.startswith(f"- `{q.ref}` ") and not x.startswith(f"- `{q.ref}` (for ")]
        assert len(lines) == 1, lines
        assert "(4 attempts)" in lines[0] and "could not be consulted" in lines[0]
    total = len({r["query_id"] for r in values["knowledge"]})
    assert f"of {total} queries could not be consulted" in section


# -- empty chunks ----------------------------------------------------------------------------------


async def test_chunks_without_text_are_skipped_never_cited(variant):
    from agent.knowledge.store import default_knowledge_base

    emptied = {d["id"] for d in default_knowledge_base().docs if d["type"] == "chunk"}
    async with KnowledgeClient(variant("empty-chunks")) as client:
        records = await client.run(every_query())
        answer = await client.ask("gradient checkpointing activation memory")
    for r in [*records, answer]:
        assert r.error is None, r.error
        assert not emptied & set(r.result_ids)
        assert all(i.title.strip() and i.body.strip() for i in r.items)
    # The real data has chunks for these searches: with their text gone, extractions answer.
    assert any(r.items for r in records if r.endpoint == "search_knowledge")


# -- caps ----------------------------------------------------------------------------------------------


async def test_huge_rows_are_cut_to_the_caps_with_a_marker(variant):
    async with KnowledgeClient(variant("huge-rows")) as client:
        records = await client.run(every_query())
    items = [i for r in records for i in r.items]
    assert items and all(r.error is None for r in records)
    for i in items:
        assert len(i.title) <= MAX_TITLE and len(i.body) <= MAX_BODY and len(i.source_title) <= MAX_TITLE
    assert all(i.title.endswith(CUT_MARK) or i.body.endswith(CUT_MARK) for i in items)
    assert any(i.title.endswith(CUT_MARK) for i in items) and any(i.body.endswith(CUT_MARK) for i in items)


def test_huge_rows_give_a_small_spec_and_checkpoint(variant, project_copy):
    loop = asyncio.new_event_loop()
    knowledge = KnowledgeClient(variant("huge-rows"))
    project = project_copy("support-bot")
    try:
        values = run_session(loop, knowledge, project, checkpointer=ProjectCheckpointer(project))
    finally:
        loop.run_until_complete(knowledge.aclose())
        loop.close()
    assert len(values["decisions"]) == 6
    spec = project / "phase-2-training" / "spec.md"
    assert spec.stat().st_size < 100_000, spec.stat().st_size
    stored = [p for p in project.rglob("*") if p.is_file()]
    run = FILLER[: MAX_BODY + 1]
    texts = {str(p): p.read_text(encoding="utf-8", errors="replace") for p in stored if ".training-pipeline" not in p.parts}
    saver = ProjectCheckpointer(project)  # its files hold the serializer's bytes in base64: decode them
    texts["checkpoints"] = "\n".join(json.dumps([t.checkpoint, t.pending_writes], default=str)
                                     for t in saver.list({"configurable": {"thread_id": "test"}}))
    assert len(texts["checkpoints"]) > 10_000
    for name, text in texts.items():
        assert run not in text, f"{name} holds more than {MAX_BODY} characters of one field"
    checkpoints = sum(p.stat().st_size for p in stored if ".training-pipeline" in p.parts)
    assert checkpoints < 4_000_000, checkpoints  # about 1.8 MB; uncapped, about 20 MB
