"""The query catalog: every knowledge query the agent makes, as data (data/catalog.yaml)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from agent import yamlio
from agent.knowledge.models import FILTER_TOOLS, VOCABULARY
from agent.state import SECTIONS

CATALOG_FILE = Path(__file__).resolve().parent / "data" / "catalog.yaml"
# The knowledge consultation before the first decision, then one stage per section.
STAGES: tuple[str, ...] = ("consult_knowledge", *SECTIONS)
# What a new session's first question shows: the knowledge stage and the first section's knowledge.
FIRST_QUESTION_STAGES: tuple[str, ...] = STAGES[:2]
# Results asked of the server per call: more than we keep, so our ranking has a pool to choose from.
FILTER_LIMIT = 200
SEARCH_LIMIT = 20


class CatalogQuery(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    stage: str
    endpoint: Literal["search_knowledge", "get_decisions", "get_patterns", "get_warnings", "get_methodologies"]
    topic: str | None = None
    query: str | None = None
    purpose: str
    vocab_topics: tuple[str, ...] = ()
    fallback_query: str | None = None
    seed: bool = False

    @field_validator("stage")
    @classmethod
    def _known_stage(cls, v: str) -> str:
        if v not in STAGES:
            raise ValueError(f"unknown stage {v!r}: one of {', '.join(STAGES)}")
        return v

    @field_validator("vocab_topics")
    @classmethod
    def _in_vocabulary(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [t for t in v if t not in VOCABULARY]
        if unknown:
            raise ValueError(f"not in the server's topic vocabulary: {unknown}")
        return v

    @model_validator(mode="after")
    def _one_subject(self) -> "CatalogQuery":
        if self.endpoint == "search_knowledge":
            if not self.query or self.topic is not None:
                raise ValueError(f"{self.id}: search_knowledge takes a query and no topic")
        elif not self.topic or self.query is not None:
            raise ValueError(f"{self.id}: {self.endpoint} takes a topic and no query")
        return self

    @property
    def is_filter(self) -> bool:
        return self.endpoint in FILTER_TOOLS

    @property
    def subject(self) -> str:
        """The topic or query text, as the seed writes it."""
        return self.topic if self.is_filter else self.query  # type: ignore[return-value]

    @property
    def ref(self) -> str:
        """Human reference 'endpoint:topic-or-query', e.g. 'get_decisions:SFT vs DPO'."""
        return f"{self.endpoint}:{self.subject}"

    @property
    def arguments(self) -> dict[str, Any]:
        """The arguments of the seed's own call."""
        if self.is_filter:
            return {"topic": self.topic, "limit": FILTER_LIMIT}
        return {"query": self.query, "limit": SEARCH_LIMIT}

    @property
    def rank_text(self) -> str:
        """What results are ranked against: the subject plus what we want from it."""
        return " ".join(t for t in (self.subject, self.purpose, self.fallback_query) if t)


@lru_cache(maxsize=4)
def _load(path: Path) -> tuple[CatalogQuery, ...]:
    raw = yamlio.load(path.read_text(encoding="utf-8")) or []  # libyaml: read on the way to the first question
    queries = tuple(CatalogQuery.model_validate(entry) for entry in raw)
    ids = [q.id for q in queries]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"duplicate catalog ids: {dupes}")
    return queries


def load_catalog(path: Path | None = None) -> list[CatalogQuery]:
    """Every catalog query in file order (parsed once, then cached)."""
    return list(_load(path or CATALOG_FILE))


def queries_for(stage: str) -> list[CatalogQuery]:
    """The queries a stage runs; an unknown stage is a programming error."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")
    return [q for q in load_catalog() if q.stage == stage]


def get_query(query_id: str) -> CatalogQuery:
    for q in load_catalog():
        if q.id == query_id:
            return q
    raise KeyError(query_id)
