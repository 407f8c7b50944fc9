"""Tokenizing, BM25 and the choice of the items a query keeps."""

from __future__ import annotations

from agent.knowledge.models import KnowledgeItem
from agent.knowledge.ranking import BM25, TitledIndex, select, stem, tokenize


def item(i, title, body="", kind="warning", score=None):
    return KnowledgeItem(id=str(i), type=kind, title=title, body=body, source_title="S", score=score)


def test_word_forms_meet():
    assert stem("tracking") == stem("tracked") == stem("trackers") == stem("tracker")
    assert stem("batches") == stem("batch") and stem("biases") == stem("bias")
    assert stem("tuning") == stem("tune") and stem("rates") == stem("rate")
    assert set(tokenize("fine-tuning")) >= {stem("finetuning")} and set(tokenize("Finetuning")) == set(tokenize("fine-tuning"))
    assert tokenize("licence") == tokenize("license")
    assert tokenize("the rank of a LoRA adapter is 16") == ["rank", "lora", "adapt"]
    assert tokenize("lr 2e-5") == ["lr", "2e5"]


def test_bm25_prefers_rare_terms_and_short_documents():
    docs = [tokenize(t) for t in ("lora rank alpha", "lora rank alpha and many other words about training runs",
                                  "training data quality", "dpo beta")]
    scores = BM25(docs).scores(tokenize("lora alpha"))
    assert scores[0] > scores[1] > 0 and scores[2] == scores[3] == 0


def test_title_matches_count_extra():
    index = TitledIndex(["Learning rate", "Batch size"], ["about batch size and learning rate", "about learning rate"])
    assert index.scores("learning rate")[0] > index.scores("learning rate")[1]


def test_select_drops_duplicates_by_id_and_title():
    items = [item(1, "Overfitting"), item(1, "Overfitting"), item(2, "overfitting!"), item(3, "Forgetting")]
    assert [i.id for i in select(items, "overfitting forgetting", 5)] == ["1", "3"]


def test_select_keeps_the_servers_order_for_search_results():
    items = [item(k, f"title {k}", score=10 - k) for k in range(6)]
    kinds = ["decision", "warning", "pattern", "methodology", "chunk", "decision"]
    items = [i.model_copy(update={"type": t}) for i, t in zip(items, kinds)]
    assert [i.id for i in select(items, "anything", 3)] == ["0", "1", "2"]


def test_select_ranks_filter_results_and_mixes_kinds():
    items = [item(1, "Batch size", "batch"), item(2, "Learning rate too high", "learning rate spikes"),
             item(3, "Learning rate too low", "learning rate slow"), item(4, "Which learning rate?", "learning rate", "decision")]
    chosen = select(items, "learning rate", 3)
    assert {i.id for i in chosen[:2]} == {"2", "4"}, "a decision beats a second warning of equal merit"
    assert [i.id for i in chosen][2] == "3", "then the second warning; the off-topic item last"
