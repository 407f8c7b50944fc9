"""The curated knowledge base behind the embedded server: data files in, contract-shaped dicts out.

Items are kept in file order ("storage order"): the real server's get_* tools
are filters that return matches in storage order, and ours must look the same.
"""

from __future__ import annotations

import hashlib
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from agent.knowledge.models import VOCABULARY
from agent.knowledge.ranking import TitledIndex

DATA_DIR = Path(__file__).resolve().parent / "data"
KINDS = ("decision", "pattern", "warning", "methodology")
FILES = {"decision": "decisions.yaml", "pattern": "patterns.yaml",
         "warning": "warnings.yaml", "methodology": "methodologies.yaml"}

_NS = uuid.uuid5(uuid.NAMESPACE_URL, "training-pipeline/knowledge")
_REQUIRED = {
    "decision": ("question", "options", "considerations"),
    "pattern": ("name", "problem", "solution"),
    "warning": ("title", "description"),
    "methodology": ("name", "steps"),
    "chunk": ("content",),
}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader keeps startup fast


def item_id(kind: str, key: str) -> str:
    """Stable UUID of an item: the same key always gets the same id."""
    return str(uuid.uuid5(_NS, f"{kind}/{key}"))


def _object_id(prefix: str, key: str) -> str:
    # The real server's source and chunk ids are 24-hex MongoDB ObjectIds.
    return hashlib.sha1(f"{prefix}/{key}".encode()).hexdigest()[:24]


def flatten(kind: str, r: dict[str, Any]) -> str:
    """The one-line text the real server returns as `content` for an extraction hit."""
    if kind == "decision":
        parts = [f"Question: {r['question']}", f"Options: {', '.join(r['options'])}",
                 f"Considerations: {', '.join(r['considerations'])}"]
        if r.get("recommended_approach"):
            parts.append(f"Recommended: {r['recommended_approach']}")
    elif kind == "warning":
        parts = [f"Warning: {r['title']}", f"Description: {r['description']}"]
        if r.get("prevention"):
            parts.append(f"Prevention: {r['prevention']}")
    elif kind == "pattern":
        parts = [f"Pattern: {r['name']}", f"Problem: {r['problem']}", f"Solution: {r['solution']}"]
        if r.get("code_example"):
            parts.append(f"Code: {r['code_example'][:500]}")
    else:
        # The real server names at most the first five steps, by their titles.
        parts = [f"Methodology: {r['name']}", f"Steps: {'; '.join(step_text(s) for s in r['steps'][:5])}"]
    return " | ".join(parts)


def step_text(step: Any) -> str:
    """A step's title: steps are stored as {order, title, description} objects (or plain strings)."""
    return str(step.get("title") or step.get("description") or "") if isinstance(step, dict) else str(step)


def _step(order: int, text: str) -> dict[str, Any]:
    """Our data writes a step as one line, "Title: details" or just a title; the real data stores
    objects with `order`, `title` and `description`, and get_methodologies serves those."""
    title, sep, description = text.partition(": ")
    if not sep or len(title) > 80:
        title, description = text, ""
    return {"order": order, "title": title.strip(), "description": description.strip()}


def _searchable(kind: str, raw: dict[str, Any], row: dict[str, Any]) -> str:
    """What search matches an extraction on: every step in full (the content names only the
    first five titles), and a pattern's code once (it is in the extra text)."""
    if kind == "methodology":
        return f"Methodology: {row['name']} | Steps: {'; '.join(str(t) for t in raw['steps'])}"
    if kind == "pattern":
        return flatten(kind, {**row, "code_example": None})
    return flatten(kind, row)


def _extra_text(r: dict[str, Any]) -> str:
    """Fields the flattened content leaves out but search should still see."""
    bits: list[str] = []
    for name in ("symptoms", "consequences", "trade_offs", "prerequisites", "outputs"):
        bits.extend(r.get(name) or [])
    for name in ("context", "code_example"):
        if r.get(name):
            bits.append(r[name])
    return " ".join(bits)


class KnowledgeBase:
    """Sources, the four extraction kinds in storage order, and a search index over all of it."""

    def __init__(self, sources: list[dict[str, Any]], items: dict[str, list[dict[str, Any]]],
                 docs: list[dict[str, Any]], titles: list[str], texts: list[str]):
        self.sources = sources  # list_sources results, file order
        self.items = items  # kind -> get_* results, storage order
        self.docs = docs  # search hits without their score
        self._index = TitledIndex(titles, texts)
        self._source_by_id = {s["id"]: s for s in sources}

    def filter(self, kind: str, topic: str | None, limit: int) -> list[dict[str, Any]]:
        """Exact, case-sensitive topic match in storage order (what get_* does); no topic or "": all."""
        rows = self.items[kind]
        if topic:
            rows = [r for r in rows if topic in r["topics"]]
        return [dict(r) for r in rows[:limit]]

    def search(self, query: str, limit: int) -> list[dict[str, Any]]:
        """Chunks and extractions ranked by BM25; only hits sharing a term with the query."""
        scores = self._index.scores(query)
        order = sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: -scores[i])
        return [{**self.docs[i], "score": round(scores[i], 4)} for i in order[:limit]]

    def source(self, source_id: str) -> dict[str, Any] | None:
        return self._source_by_id.get(source_id)

    def compare(self, topic: str, source_ids: list[str], limit_per_source: int) -> list[dict[str, Any]]:
        """Per source, summaries of its extractions tagged with the topic. Unknown ids raise KeyError."""
        out = []
        for sid in source_ids:
            src = self._source_by_id.get(sid)
            if src is None:
                raise KeyError(sid)
            summaries = []
            for kind in KINDS:
                for r in self.items[kind]:
                    if r["source_id"] == sid and topic in r["topics"]:
                        summaries.append(_summary(kind, r))
            out.append({"source_id": sid, "source_title": src["title"],
                        "extractions": summaries[:limit_per_source]})
        return out


def _summary(kind: str, r: dict[str, Any]) -> dict[str, Any]:
    title = r.get("name") or r.get("title") or r.get("question") or "Untitled extraction"
    text = r.get("description") or r.get("problem") or r.get("solution") or ""
    if not text and r.get("steps"):
        # The real server prints the first step object as a Python dict here (a bug): we give its title.
        text = f"Step 1: {step_text(r['steps'][0])[:150]}"
    if not text and r.get("options"):
        text = f"Options: {', '.join(r['options'][:3])}"
    if len(text) > 200:
        text = text[:197] + "..."
    return {"id": r["id"], "type": kind, "title": title, "summary": text or "No summary available",
            "topics": list(r["topics"])}


def _read(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=_Loader)


def _check(kind: str, raw: dict[str, Any], source_keys: set[str]) -> None:
    where = f"{kind} {raw.get('key')!r}"
    for name in ("key", "topics", "source", *_REQUIRED[kind]):
        if not raw.get(name):
            raise ValueError(f"{where}: missing {name}")
    if raw["source"] not in source_keys:
        raise ValueError(f"{where}: unknown source {raw['source']!r}")
    if not set(raw["topics"]) & set(VOCABULARY):
        raise ValueError(f"{where}: no topic from the vocabulary {VOCABULARY}")


def _result(kind: str, raw: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """A get_* result row in the contract's field order."""
    common = {"topics": list(raw["topics"]), "source_title": src["title"], "source_id": src["id"],
              "chunk_id": _object_id("chunk", f"{kind}/{raw['key']}")}
    rid = item_id(kind, raw["key"])
    if kind == "decision":
        body = {"question": raw["question"], "options": list(raw["options"]),
                "considerations": list(raw["considerations"]),
                "recommended_approach": raw.get("recommended_approach")}
    elif kind == "pattern":
        body = {"name": raw["name"], "problem": raw["problem"], "solution": raw["solution"],
                "code_example": raw.get("code_example"), "context": raw.get("context"),
                "trade_offs": raw.get("trade_offs")}
    elif kind == "warning":
        body = {"title": raw["title"], "description": raw["description"],
                "symptoms": raw.get("symptoms"), "consequences": raw.get("consequences"),
                "prevention": raw.get("prevention")}
    else:
        body = {"name": raw["name"], "steps": [_step(i, str(t)) for i, t in enumerate(raw["steps"], 1)],
                "prerequisites": raw.get("prerequisites"), "outputs": raw.get("outputs")}
    return {"id": rid, **body, **common}


def _attribution(src: dict[str, Any], chunk_id: str | None) -> dict[str, Any]:
    return {"source_id": src["id"], "chunk_id": chunk_id, "title": src["title"],
            "authors": list(src["authors"]), "position": None}


def load(data_dir: Path = DATA_DIR) -> KnowledgeBase:
    """Read and check the data files; raise ValueError naming the first bad entry."""
    meta = _read(data_dir / "sources.yaml")
    sources: list[dict[str, Any]] = []
    by_key: dict[str, dict[str, Any]] = {}
    for s in meta["sources"]:
        src = {"id": _object_id("source", s["key"]), "title": s["title"], "authors": list(s["authors"]),
               "type": s["type"], "path": s["locator"], "ingested_at": meta["ingested_at"],
               "status": "complete", "extraction_counts": {}}
        if s["key"] in by_key:
            raise ValueError(f"duplicate source key {s['key']!r}")
        by_key[s["key"]] = src
        sources.append(src)

    items: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    docs: list[dict[str, Any]] = []
    titles: list[str] = []
    texts: list[str] = []
    seen: set[str] = set()
    for kind in KINDS:
        for raw in _read(data_dir / FILES[kind]):
            _check(kind, raw, set(by_key))
            src = by_key[raw["source"]]
            row = _result(kind, raw, src)
            if row["id"] in seen:
                raise ValueError(f"{kind} {raw['key']!r}: duplicate key")
            seen.add(row["id"])
            items[kind].append(row)
            counts = src["extraction_counts"]
            counts[kind] = counts.get(kind, 0) + 1
            content = flatten(kind, row)
            docs.append({"id": row["id"], "type": "extraction", "content": content,
                         "source": _attribution(src, row["chunk_id"])})
            titles.append(content.split(" | ", 1)[0].split(": ", 1)[1])
            texts.append(f"{_searchable(kind, raw, row)} {_extra_text(row)} {' '.join(row['topics'])}")
    for raw in _read(data_dir / "chunks.yaml"):
        _check("chunk", raw, set(by_key))
        src = by_key[raw["source"]]
        cid = _object_id("chunk", f"chunk/{raw['key']}")
        docs.append({"id": item_id("chunk", raw["key"]), "type": "chunk", "content": raw["content"],
                     "source": _attribution(src, cid)})
        titles.append(raw["content"].split(". ", 1)[0])  # a passage's first sentence is its title
        texts.append(f"{raw['content']} {' '.join(raw['topics'])}")
    return KnowledgeBase(sources, items, docs, titles, texts)


@lru_cache(maxsize=1)
def default_knowledge_base() -> KnowledgeBase:
    return load(DATA_DIR)
