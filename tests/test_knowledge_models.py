"""Normalization of every result type into KnowledgeItem, and the query record's JSON form."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from agent.knowledge.models import KnowledgeItem, QueryRecord, normalize
from agent.knowledge.store import default_knowledge_base, item_id

SOURCE = {"topics": ["fine-tuning"], "source_title": "LLM Engineer's Handbook", "source_id": "6b06ce230af4196b7260e7bb",
          "chunk_id": "6b06ce230af4196b7260e7bc"}


def test_decision_keeps_question_options_and_recommendation():
    raw = {"id": "d1", "question": "SFT or DPO?", "options": ["SFT", "DPO"], "considerations": ["data"],
           "recommended_approach": "SFT first", **SOURCE}
    item = normalize("get_decisions", raw)
    assert (item.type, item.title, item.source_title, item.score) == ("decision", "SFT or DPO?", "LLM Engineer's Handbook", None)
    assert "Options: SFT; DPO" in item.body and "Recommended: SFT first" in item.body
    assert item.topics == ["fine-tuning"]


def test_pattern_warning_and_methodology():
    p = normalize("get_patterns", {"id": "p", "name": "LoRA", "problem": "memory", "solution": "adapters",
                                   "code_example": None, "context": None, "trade_offs": ["slower"], **SOURCE})
    assert (p.type, p.title) == ("pattern", "LoRA") and "Solution: adapters" in p.body and "Trade-offs: slower" in p.body
    w = normalize("get_warnings", {"id": "w", "title": "Overfitting", "description": "too many epochs",
                                   "symptoms": None, "consequences": ["memorization"], "prevention": "early stopping", **SOURCE})
    assert (w.type, w.title) == ("warning", "Overfitting") and "Prevention: early stopping" in w.body
    # The real server often sends methodologies with no steps: still an item, titled by its name.
    m = normalize("get_methodologies", {"id": "m", "name": "DPO alignment", "steps": [], "prerequisites": None,
                                        "outputs": None, **SOURCE})
    assert (m.type, m.title, m.body) == ("methodology", "DPO alignment", "DPO alignment")


def test_real_shaped_example_from_the_contract():
    raw = {"id": "e88c140d-0c24-5956-86e9-a3de5157006d", "name": "DPO alignment",
           "steps": ["Build preference pairs", "Run DPO"], "prerequisites": ["SFT model"],
           "outputs": ["Aligned model"], "topics": ["fine-tuning"], "source_title": "LLM Engineer's Handbook",
           "source_id": "6b06ce230af4196b7260e7bb", "chunk_id": "6b06ce230af4196b7260e7bc"}
    item = normalize("get_methodologies", raw)
    assert item.id == raw["id"] and "Steps: Build preference pairs; Run DPO" in item.body


@pytest.mark.parametrize("content,kind,title", [
    ("Question: SFT or DPO? | Options: SFT, DPO | Considerations: data | Recommended: both", "decision", "SFT or DPO?"),
    ("Warning: Overfitting | Description: too many epochs | Prevention: stop early", "warning", "Overfitting"),
    ("Pattern: QLoRA | Problem: memory | Solution: 4-bit base", "pattern", "QLoRA"),
    ("Methodology: DPO alignment | Steps: pairs; train", "methodology", "DPO alignment"),
    ("{'name': 'odd', 'raw': 'dict text'}", "extraction", "{'name': 'odd', 'raw': 'dict text'}"),
])
def test_search_extractions_are_unflattened(content, kind, title):
    raw = {"id": "x", "score": 0.83, "type": "extraction", "content": content,
           "source": {"source_id": "s", "chunk_id": None, "title": "Book", "authors": ["A. Author"], "position": None}}
    item = normalize("search_knowledge", raw)
    assert (item.type, item.title, item.score, item.source_authors) == (kind, title, 0.83, ["A. Author"])
    if kind != "extraction":
        assert " | " not in item.body and item.body


def test_search_chunk_title_is_its_first_sentence():
    raw = {"id": "c", "score": 1.7, "type": "chunk", "content": "LoRA freezes the weights. It trains adapters.",
           "source": {"source_id": "s", "title": "", "authors": [], "position": {"chapter": "5", "section": None, "page": 3}}}
    item = normalize("search_knowledge", raw)
    assert (item.type, item.title, item.source_title) == ("chunk", "LoRA freezes the weights", "")
    assert item.citation == "(unknown source)"


@pytest.mark.parametrize("tool,raw", [
    ("get_decisions", {"id": "d", "options": [], **SOURCE}),  # no question
    ("get_warnings", {"id": "w", "title": "t", "topics": []}),  # no source fields
    ("search_knowledge", {"id": "s", "score": "high", "type": "chunk", "content": "x", "source": {}}),
])
def test_malformed_results_raise(tool, raw):
    with pytest.raises(ValidationError):
        normalize(tool, raw)


def test_non_item_tools_are_refused():
    with pytest.raises(ValueError):
        normalize("list_sources", {"id": "x"})


def test_every_embedded_item_normalizes():
    kb = default_knowledge_base()
    tools = {"decision": "get_decisions", "pattern": "get_patterns", "warning": "get_warnings",
             "methodology": "get_methodologies"}
    for kind, rows in kb.items.items():
        for row in rows:
            item = normalize(tools[kind], row)
            assert item.type == kind and item.title and item.body and item.source_title
    for hit in kb.search("fine-tuning", 100):
        item = normalize("search_knowledge", hit)
        assert item.type != "extraction", "every embedded extraction has a recognized label"


def test_query_record_is_plain_json():
    item = KnowledgeItem(id=item_id("decision", "sft-vs-dpo"), type="decision", title="SFT or DPO?", body="b",
                         source_title="Book", source_authors=["A"], score=None, topics=["fine-tuning"])
    record = QueryRecord(query_id="training_approach.sft_vs_dpo", section="training_approach",
                         endpoint="get_decisions", arguments={"topic": "SFT vs DPO", "limit": 200},
                         ref="get_decisions:SFT vs DPO", items=[item], result_ids=[item.id],
                         fallback="get_decisions:fine-tuning", latency_ms=12.5)
    dumped = record.model_dump(mode="json")
    assert json.loads(json.dumps(dumped)) == dumped
    assert QueryRecord.model_validate(dumped) == record
    assert record.ok and item.citation == "Book (A)"
