"""A knowledge client that answers from a transcript's recorded results instead of a server.

It has the two methods the graph calls (`run` and `ask`) and returns the QueryRecords
recorded for each query_id in the order they were recorded, so a failure followed by a
successful retry replays as it happened. A query the transcript never recorded comes back
as an error record, which the graph shows like any failed query: the replay then diverges
visibly instead of crashing.
"""

from __future__ import annotations

import hashlib
from typing import Any

from agent.knowledge.catalog import CatalogQuery
from agent.knowledge.models import QueryRecord


class RecordedKnowledge:
    def __init__(self, records: dict[str, list[dict[str, Any]]]):
        self._queues = {qid: list(recs) for qid, recs in records.items()}
        self.unrecorded: list[str] = []  # query ids asked for that the transcript has no (more) results for

    async def run(self, queries: list[CatalogQuery]) -> list[QueryRecord]:
        base = lambda q: {"query_id": q.id, "section": q.stage, "endpoint": q.endpoint,  # noqa: E731
                          "arguments": q.arguments, "ref": q.ref}
        return [self._next(q.id, base(q)) for q in queries]

    async def ask(self, text: str, stage: str = "menu", limit: int = 5) -> QueryRecord:
        text = text.strip()
        query_id = f"{stage}.ask.{hashlib.sha1(text.encode()).hexdigest()[:8]}"  # the live client's ids
        return self._next(query_id, {"query_id": query_id, "section": stage, "endpoint": "search_knowledge",
                                     "arguments": {"query": text, "limit": max(limit * 2, 10)},
                                     "ref": f"search_knowledge:{text}"})

    def _next(self, query_id: str, base: dict[str, Any]) -> QueryRecord:
        queue = self._queues.get(query_id) or []
        if not queue:
            self.unrecorded.append(query_id)
            return QueryRecord(**base, error=f"no recorded result for {query_id} in this transcript")
        return QueryRecord.model_validate(queue.pop(0))

    async def aclose(self) -> None:
        return None
