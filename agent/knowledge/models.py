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
# Our client asks the embedded stdio servers it starts to leave after this many idle seconds.
IDLE_EXIT_ENV = "KNOWLEDGE_MCP_SERVER_IDLE_EXIT"


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


class MethodologyResult(_Extraction):
    name: str
    steps: list[str]  # often [] on the real server: still a usable item
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

    @property
    def citation(self) -> str:
        """'Title (Author, Author)' or just the title; '(unknown source)' if the server gave none."""
        title = self.source_title or "(unknown source)"
        return f"{title} ({', '.join(self.source_authors)})" if self.source_authors else title


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


def normalize(tool_name: str, raw: dict[str, Any]) -> KnowledgeItem:
    """One result of `tool_name` (search_knowledge or a get_* tool) as a KnowledgeItem.

    Raises pydantic.ValidationError if the result lacks a field the contract requires,
    ValueError for tools whose results are not knowledge items.
    """
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
        body = _join(_lines("Steps", m.steps), _lines("Prerequisites", m.prerequisites),
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
    fallback: str | None = None  # the ref(s) actually answered, when the seed's own call came back empty
    latency_ms: float = 0

    @property
    def ok(self) -> bool:
        return self.error is None
