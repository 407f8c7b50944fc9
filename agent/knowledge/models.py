"""Knowledge MCP result models: the real server's contract, our normalized item, and the query record.

The contract models mirror what the public Knowledge MCP server returns (see
the knowledge-mcp contract): they let tests prove that our embedded server
answers in the same shapes, and let the client read either server.
`KnowledgeItem` is the one shape the rest of the agent sees, and
`QueryRecord` is what the graph state keeps for every query made.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The real server's topic tags: get_* filters only ever match these (plus a few free-form ones).
VOCABULARY: tuple[str, ...] = ("rag", "fine-tuning", "embeddings", "llm", "prompting", "evaluation",
                               "deployment", "training", "inference", "agents")
FILTER_TOOLS = {"get_decisions": "decision", "get_patterns": "pattern",
                "get_warnings": "warning", "get_methodologies": "methodology"}
TOOLS = ("search_knowledge", *FILTER_TOOLS, "list_sources", "compare_sources")


class _Contract(BaseModel):
    # Real servers add fields over time; accept them, require the ones we read.
    model_config = ConfigDict(extra="allow")


class Metadata(_Contract):
    query: str
    sources_cited: list[str]
    result_count: int
    search_type: Literal["semantic", "filtered", "list", "comparison"]
    latency_ms: float | None = None


class Position(_Contract):
    chapter: str | None = None
    section: str | None = None
    page: int | None = None


class SourceAttribution(_Contract):
    source_id: str
    chunk_id: str | None = None
    title: str
    authors: list[str] = Field(default_factory=list)
    position: Position | None = None


class SearchResult(_Contract):
    id: str
    score: float
    type: Literal["chunk", "extraction"]
    content: str
    source: SourceAttribution


class _Extraction(_Contract):
    id: str
    topics: list[str] = Field(default_factory=list)
    source_title: str
    source_id: str
    chunk_id: str | None = None


class DecisionResult(_Extraction):
    question: str
    options: list[str] = Field(default_factory=list)
    considerations: list[str] = Field(default_factory=list)
    recommended_approach: str | None = None


class PatternResult(_Extraction):
    name: str
    problem: str
    solution: str
    code_example: str | None = None
    context: str | None = None
    trade_offs: list[str] | None = None


class WarningResult(_Extraction):
    title: str
    description: str
    symptoms: list[str] | None = None
    consequences: list[str] | None = None
    prevention: str | None = None


class MethodologyStep(_Contract):
    """A stored step: the real data keeps steps as objects, not strings."""

    order: int | None = None
    title: str = ""
    description: str = ""

    @property
    def text(self) -> str:
        """'Title: description', or whichever of the two there is."""
        return ": ".join(t for t in (self.title.strip(), self.description.strip()) if t)


class MethodologyResult(_Extraction):
    name: str
    # Strings (the contract's declared shape) or step objects (the stored shape); often [] on
    # the real server: still a usable item.
    steps: list[str | MethodologyStep]
    prerequisites: list[str] | None = None
    outputs: list[str] | None = None


class SourceResult(_Contract):
    id: str
    title: str
    authors: list[str] = Field(default_factory=list)
    type: str
    path: str
    ingested_at: str
    status: str
    extraction_counts: dict[str, int] = Field(default_factory=dict)


class ExtractionSummary(_Contract):
    id: str
    type: str
    title: str
    summary: str
    topics: list[str] = Field(default_factory=list)


class ComparisonResult(_Contract):
    source_id: str
    source_title: str
    extractions: list[ExtractionSummary] = Field(default_factory=list)


class _Envelope(_Contract):
    metadata: Metadata


class SearchResponse(_Envelope):
    results: list[SearchResult]


class DecisionsResponse(_Envelope):
    results: list[DecisionResult]


class PatternsResponse(_Envelope):
    results: list[PatternResult]


class WarningsResponse(_Envelope):
    results: list[WarningResult]


class MethodologiesResponse(_Envelope):
    results: list[MethodologyResult]


class SourcesResponse(_Envelope):
    results: list[SourceResult]


class CompareResponse(_Envelope):
    results: list[ComparisonResult]


RESPONSE_MODELS: dict[str, type[_Envelope]] = {
    "search_knowledge": SearchResponse, "get_decisions": DecisionsResponse,
    "get_patterns": PatternsResponse, "get_warnings": WarningsResponse,
    "get_methodologies": MethodologiesResponse, "list_sources": SourcesResponse,
    "compare_sources": CompareResponse,
}

ItemType = Literal["decision", "pattern", "warning", "methodology", "chunk", "extraction"]


class KnowledgeItem(BaseModel):
    """One piece of knowledge, whatever tool returned it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    type: ItemType
    title: str
    body: str
    source_title: str
    source_authors: list[str] = Field(default_factory=list)
    score: float | None = None
    topics: list[str] = Field(default_factory=list)
    via: str | None = None  # the call that returned it, "endpoint:topic-or-query"

    @property
    def citation(self) -> str:
        """'Title (Author, Author)' or just the title; '(unknown source)' if the server gave none."""
        title = self.source_title or "(unknown source)"
        return f"{title} ({', '.join(self.source_authors)})" if self.source_authors else title


# What one item may keep: a server's row can be any size, and what we keep is stored in every
# checkpoint and shown in the spec. Longer text is cut, and ends with CUT_MARK.
MAX_TITLE = 200
MAX_BODY = 2000
MAX_SOURCE = 200
MAX_NAMES = 10  # authors, topics
MAX_NAME = 100
MAX_ID = 128  # ids are UUIDs or ObjectIds; a longer one is not an id we can cite
MAX_ITEMS = 200  # items read from one call (our own calls ask for at most this many)
CUT_MARK = " [...cut]"


class EmptyItem(ValueError):
    """A result with no text (the real server returns such chunks after re-embedding): skipped, not cited."""


def cut(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else its start ending in CUT_MARK (`limit` in all)."""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(CUT_MARK), 0)].rstrip() + CUT_MARK


def _capped(item: KnowledgeItem) -> KnowledgeItem:
    if not (item.title.strip() or item.body.strip()):
        raise EmptyItem(item.id)
    if len(item.id) > MAX_ID:
        raise ValueError(f"id longer than {MAX_ID} characters")
    return item.model_copy(update={
        "title": cut(item.title.strip() or cut(item.body.strip(), MAX_TITLE), MAX_TITLE),
        "body": cut(item.body, MAX_BODY),
        "source_title": cut(item.source_title, MAX_SOURCE),
        "source_authors": [cut(a, MAX_NAME) for a in item.source_authors[:MAX_NAMES]],
        "topics": [cut(t, MAX_NAME) for t in item.topics[:MAX_NAMES]],
    })


# Flattened extraction content starts with one of these labels (see the contract).
_LABELS = {"Question": "decision", "Warning": "warning", "Pattern": "pattern", "Methodology": "methodology"}


def _lines(label: str, values: list[str] | None) -> str | None:
    return f"{label}: {'; '.join(values)}" if values else None


def _join(*parts: str | None) -> str:
    return "\n".join(p for p in parts if p)


def _from_search(raw: dict[str, Any]) -> KnowledgeItem:
    hit = SearchResult.model_validate(raw)
    kind: ItemType = hit.type
    title = hit.content.strip()
    body = hit.content.strip()
    if hit.type == "extraction":
        head, _, rest = hit.content.partition(" | ")
        label, sep, text = head.partition(": ")
        if sep and label in _LABELS:
            kind = _LABELS[label]  # type: ignore[assignment]
            title = text.strip()
            body = "\n".join(s.strip() for s in rest.split(" | ") if s.strip()) or title
    else:
        first = title.split(". ")[0]
        title = first if len(first) <= 120 else first[:117].rstrip() + "..."
    return KnowledgeItem(id=hit.id, type=kind, title=title, body=body, source_title=hit.source.title,
                         source_authors=list(hit.source.authors), score=hit.score, topics=[])


def normalize(tool_name: str, raw: dict[str, Any], via: str | None = None) -> KnowledgeItem:
    """One result of `tool_name` (search_knowledge or a get_* tool) as a KnowledgeItem, its text
    capped (see MAX_TITLE ...) and `via` naming the call that returned it.

    Raises EmptyItem for a result without text, pydantic.ValidationError if the result lacks a
    field the contract requires, ValueError for tools whose results are not knowledge items.
    """
    item = _capped(_normalize(tool_name, raw))
    return item.model_copy(update={"via": via}) if via else item


def _normalize(tool_name: str, raw: dict[str, Any]) -> KnowledgeItem:
    if tool_name == "search_knowledge":
        return _from_search(raw)
    kind = FILTER_TOOLS.get(tool_name)
    res: _Extraction
    if kind == "decision":
        res = d = DecisionResult.model_validate(raw)
        title = d.question
        body = _join(_lines("Options", d.options), _lines("Considerations", d.considerations),
                     f"Recommended: {d.recommended_approach}" if d.recommended_approach else None)
    elif kind == "pattern":
        res = p = PatternResult.model_validate(raw)
        title = p.name
        body = _join(f"Problem: {p.problem}", f"Solution: {p.solution}",
                     f"When: {p.context}" if p.context else None, _lines("Trade-offs", p.trade_offs))
    elif kind == "warning":
        res = w = WarningResult.model_validate(raw)
        title = w.title
        body = _join(w.description, _lines("Symptoms", w.symptoms), _lines("Consequences", w.consequences),
                     f"Prevention: {w.prevention}" if w.prevention else None)
    elif kind == "methodology":
        res = m = MethodologyResult.model_validate(raw)
        title = m.name
        steps = [s if isinstance(s, str) else s.text for s in m.steps]
        body = _join(_lines("Steps", [s for s in steps if s]), _lines("Prerequisites", m.prerequisites),
                     _lines("Outputs", m.outputs))
    else:
        raise ValueError(f"{tool_name} does not return knowledge items")
    return KnowledgeItem(id=res.id, type=kind, title=title, body=body or title, source_title=res.source_title,
                         source_authors=[], score=None, topics=list(res.topics))


class QueryRecord(BaseModel):
    """One knowledge query as made, with what came back: stored in state as model_dump(mode="json")."""

    model_config = ConfigDict(extra="forbid")

    query_id: str
    section: str
    endpoint: str
    arguments: dict[str, Any]
    ref: str  # "endpoint:topic-or-query", as the seed writes it
    items: list[KnowledgeItem] = Field(default_factory=list)
    result_ids: list[str] = Field(default_factory=list)
    error: str | None = None
    fallback: str | None = None  # the call(s) whose items were kept, when the seed's own call came back empty
    attempt: int = 1  # 2 and up: the query failed before and was run again
    latency_ms: float = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def answered_refs(record: dict[str, Any]) -> list[str]:
    """The calls that produced a record's items, in item order (a record as stored in state)."""
    refs: list[str] = []
    for item in record.get("items") or []:
        ref = item.get("via") or record.get("fallback") or record.get("ref")
        if ref and ref not in refs:
            refs.append(ref)
    return refs


def cited_refs(records: list[dict[str, Any]], item_ids: list[str]) -> list[str]:
    """The calls that produced the cited items `item_ids`, in citation order."""
    by_id: dict[str, str] = {}
    for rec in records:
        for item in rec.get("items") or []:
            ref = item.get("via") or rec.get("fallback") or rec.get("ref")
            if ref:
                by_id.setdefault(item["id"], ref)
    refs: list[str] = []
    for i in item_ids:
        if i in by_id and by_id[i] not in refs:
            refs.append(by_id[i])
    return refs
