"""A stage's catalog queries: running those not answered yet, and reading back the latest record of each."""

from __future__ import annotations

from typing import Any

from agent.context import Context, knowledge_client
from agent.knowledge.catalog import queries_for
from agent.state import PipelineState


def knowledge_update(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The state update that adds `records`: none when there are none, since each update of the
    knowledge channel stores the whole list (tens of kB) in that checkpoint (see agent/state.py)."""
    return {"knowledge": records} if records else {}


def section_records(state: PipelineState, section: str) -> list[dict[str, Any]]:
    """The latest record of each query of `section` (a stage: a decision section or consult_knowledge)."""
    latest: dict[str, dict[str, Any]] = {}
    for rec in state.get("knowledge") or []:
        if rec.get("section") == section:
            latest[rec["query_id"]] = rec
    return list(latest.values())


def _succeeded_ids(state: PipelineState) -> set[str]:
    return {r["query_id"] for r in state.get("knowledge") or [] if not r.get("error")}


def _attempts(state: PipelineState) -> dict[str, int]:
    """How many times each query has run so far."""
    counts: dict[str, int] = {}
    for rec in state.get("knowledge") or []:
        counts[rec["query_id"]] = counts.get(rec["query_id"], 0) + 1
    return counts


async def run_stage(state: PipelineState, ctx: Context, stage: str) -> list[dict[str, Any]]:
    """Run the stage's catalog queries that have not succeeded yet (concurrently, in the client).

    A query run again after a failure records its attempt number, so that what is listed
    later can show each query once, with its attempts."""
    done = _succeeded_ids(state)
    queries = [q for q in queries_for(stage) if q.id not in done]
    if not queries:
        return []
    records = await knowledge_client(ctx).run(queries)
    before = _attempts(state)
    return [{**r.model_dump(mode="json"), "attempt": before.get(r.query_id, 0) + 1} for r in records]
