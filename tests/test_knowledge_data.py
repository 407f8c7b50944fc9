"""The curated knowledge base and the query catalog: complete, sourced, and true to the seed."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import yaml

from agent.knowledge.catalog import STAGES, load_catalog, queries_for
from agent.knowledge.models import VOCABULARY
from agent.knowledge.store import DATA_DIR, FILES, default_knowledge_base, item_id, load

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "step-04-training-pipeline.md"
ARXIV = re.compile(r"\(arXiv:(\d{4}\.\d{4,5})\)")


def raw(kind):
    return yaml.safe_load((DATA_DIR / FILES[kind]).read_text(encoding="utf-8"))


def test_item_counts_meet_the_floor():
    kb = default_knowledge_base()
    counts = {k: len(v) for k, v in kb.items.items()}
    assert counts["decision"] >= 20 and counts["pattern"] >= 25
    assert counts["warning"] >= 40 and counts["methodology"] >= 15


def test_ids_are_stable_uuids():
    kb = default_knowledge_base()
    ids = [r["id"] for rows in kb.items.values() for r in rows] + [d["id"] for d in kb.docs if d["type"] == "chunk"]
    assert len(ids) == len(set(ids))
    assert all(uuid.UUID(i).version == 5 for i in ids)
    # An id depends only on kind and key, so references recorded in a sidecar stay valid.
    assert item_id("decision", "sft-vs-dpo") == str(uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "training-pipeline/knowledge"),
                                                                 "decision/sft-vs-dpo"))
    assert load().items["decision"][0]["id"] == kb.items["decision"][0]["id"]


def test_every_item_has_a_real_source_and_vocabulary_topics():
    kb = default_knowledge_base()
    used = set()
    for rows in kb.items.values():
        for r in rows:
            assert set(r["topics"]) & set(VOCABULARY), r
            src = kb.source(r["source_id"])
            assert src is not None and src["authors"] and r["source_title"] == src["title"]
            used.add(src["id"])
    used |= {d["source"]["source_id"] for d in kb.docs}
    assert used == {s["id"] for s in kb.sources}, "every listed source backs at least one item"


def test_papers_cite_their_arxiv_id_and_books_their_chapter():
    for s in default_knowledge_base().sources:
        if s["type"] == "paper":
            m = ARXIV.search(s["title"])
            assert m and s["path"] == f"https://arxiv.org/abs/{m.group(1)}", s["title"]
        elif s["type"] == "book":
            assert re.search(r", ch\. \d+: ", s["title"]), s["title"]
        else:
            assert s["path"].startswith("https://"), s


def test_disagreements_name_each_source():
    """Where published defaults disagree, the items say so and cite the sides."""
    decisions = {r["key"]: r for r in raw("decision")}
    alpha = " ".join(decisions["lora-alpha"]["considerations"])
    for name in ("Raschka", "LoRA paper", "QLoRA", "Unsloth", "AutoTrain", "peft"):
        assert name in alpha
    assert "disagree" in decisions["lora-alpha"]["recommended_approach"].lower()
    lr = " ".join(decisions["learning-rate"]["considerations"])
    for name in ("TRL", "QLoRA", "Unsloth", "torchtune", "LLaMA-Factory", "Zephyr"):
        assert name in lr
    beta = " ".join(decisions["dpo-beta"]["considerations"])
    assert all(v in beta for v in ("0.1", "0.01", "0.2"))


def test_the_seeds_critical_warning_is_there():
    kb = default_knowledge_base()
    w = next(r for r in kb.items["warning"] if r["id"] == item_id("warning", "instruction-dataset-hardest-part"))
    assert "hardest part" in w["title"] and "rare" in w["description"]
    assert "fine-tuning" in w["topics"]


def test_load_rejects_an_item_with_an_unknown_source(tmp_path):
    for f in DATA_DIR.glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    bad = raw("warning")
    bad[0]["source"] = "no-such-source"
    (tmp_path / FILES["warning"]).write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown source"):
        load(tmp_path)


# -- the catalog ---------------------------------------------------------------------------------

def seed_queries() -> list[tuple[str, str]]:
    """(endpoint, topic-or-query) for every query block in the seed's sections 2 and 4-7."""
    text = SEED.read_text(encoding="utf-8")
    body = text.split("### 2. Query Knowledge MCP", 1)[1].split("### 8. Training Infrastructure", 1)[0]
    found = re.findall(r"Endpoint: (\w+)\n(?:Query|Topic): \"?([^\"\n]+)\"?", body)
    return [(e, s.strip()) for e, s in found]


@pytest.mark.skipif(not SEED.exists(), reason="seed file not beside the checkout")
def test_every_seed_query_is_in_the_catalog_with_its_exact_text():
    wanted = seed_queries()
    assert len(wanted) == 12  # 4 mandatory + 1 + 1 + 3 + 3
    catalog = {(q.endpoint, q.subject) for q in load_catalog() if q.seed}
    assert set(wanted) <= catalog
    assert all(q.seed == ((q.endpoint, q.subject) in set(wanted)) for q in load_catalog())


def test_stages_and_their_queries():
    assert [len(queries_for(s)) for s in STAGES] == [4, 2, 1, 1, 3, 3, 2]
    refs = [q.ref for q in queries_for("consult_knowledge")]
    assert refs == ["search_knowledge:QLoRA LoRA fine-tuning rank alpha configuration", "get_decisions:SFT vs DPO",
                    "get_warnings:fine-tuning", "search_knowledge:instruction dataset creation training data quality"]
    assert [q.ref for q in queries_for("peft")][1] == "get_decisions:QLoRA vs LoRA"
    with pytest.raises(ValueError):
        queries_for("deployment")


def test_catalog_entries_are_usable():
    ids = [q.id for q in load_catalog()]
    assert len(ids) == len(set(ids))
    for q in load_catalog():
        assert q.id.split(".")[0] in {"consult", *STAGES}
        assert q.vocab_topics and set(q.vocab_topics) <= set(VOCABULARY)
        assert q.fallback_query and q.purpose
        args = q.arguments
        assert ("query" in args) == (q.endpoint == "search_knowledge")
        assert "topic" not in args or args["topic"] is not None  # older servers reject topic: null
