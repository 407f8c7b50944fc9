"""Ranking quality: the whole catalog, through the real client and embedded server, against labels.

tests/data/knowledge_relevance.yaml names, per catalog query, the items that must be among
the five kept, and items that should be; the should-recall floor catches ranking regressions
that do not touch the must items.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from agent.knowledge.catalog import load_catalog
from agent.knowledge.client import KnowledgeClient, KnowledgeConfig
from agent.knowledge.store import DATA_DIR, FILES, item_id

LABELS = yaml.safe_load((Path(__file__).parent / "data" / "knowledge_relevance.yaml").read_text(encoding="utf-8"))
SHOULD_RECALL_FLOOR = 0.6


@lru_cache(maxsize=1)
def label_ids() -> dict[str, str]:
    """'kind/key' -> item id, for every item in the data files."""
    names = {}
    for kind, file in {**FILES, "chunk": "chunks.yaml"}.items():
        for raw in yaml.safe_load((DATA_DIR / file).read_text(encoding="utf-8")):
            names[f"{kind}/{raw['key']}"] = item_id(kind, raw["key"])
    return names


def test_labels_cover_the_catalog_and_name_real_items():
    ids = label_ids()
    assert set(LABELS) == {q.id for q in load_catalog()}
    for query_id, labels in LABELS.items():
        assert labels["must"], query_id
        for name in labels["must"] + labels["should"]:
            assert name in ids, f"{query_id}: unknown item {name}"


@pytest.fixture(scope="module")
def records():
    async def run():
        async with KnowledgeClient(KnowledgeConfig()) as client:
            return await client.run(load_catalog())

    return {r.query_id: r for r in asyncio.run(run())}


def test_every_catalog_query_answers(records):
    for r in records.values():
        assert r.error is None, f"{r.query_id}: {r.error}"
        assert 1 <= len(r.items) <= 5 and len(set(r.result_ids)) == len(r.result_ids)


@pytest.mark.parametrize("query_id", sorted(LABELS))
def test_must_items_are_in_the_top_five(records, query_id):
    ids = label_ids()
    got = records[query_id].result_ids
    missing = [name for name in LABELS[query_id]["must"] if ids[name] not in got]
    assert not missing, f"{query_id}: {missing} not in the top 5"


def test_should_items_recall(records):
    ids = label_ids()
    wanted = [(q, name) for q, labels in LABELS.items() for name in labels["should"]]
    found = [(q, name) for q, name in wanted if ids[name] in records[q].result_ids]
    assert len(found) / len(wanted) >= SHOULD_RECALL_FLOOR, sorted(set(wanted) - set(found))
