"""Seed sections 1 and 2: the welcome and the mandatory knowledge queries."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Command

from agent import llm_tasks, offline
from agent.context import Context, get_context
from agent.interview import Option, Question, parse_choice
from agent.knowledge.stages import knowledge_update, run_stage, section_records
from agent.llm import Facilitator
from agent.nodes.common import SectionNode, ask_and_parse, first_open, retry, say
from agent.state import SECTIONS, PipelineState

CONSULT_STAGE = "consult_knowledge"


def welcome(state: PipelineState) -> dict[str, Any]:
    arch = state["project"].get("architecture") or state.get("architecture")
    decided = [s for s in SECTIONS if s in (state.get("decisions") or {})]
    text = (
        "**Phase 2: Training Pipeline - Fine-tuning Your Model**\n\n"
        f"Based on your **{arch}** architecture, we'll design a training pipeline for customizing an LLM to your use case.\n\n"
        "**Key Decisions:**\n- Base model selection\n- Training approach (SFT, DPO, or combined)\n"
        "- Data preparation for training\n- Hyperparameter configuration\n- Compute requirements\n\n"
        "Let's design this systematically."
    )
    if decided:
        text += (
            f"\n\nResuming: {len(decided)} of 6 decisions are already recorded in the sidecar; I'll ask only the open ones. "
            "You can revisit the others from the menu at the end (A)."
        )
    return say(text)


def failed_queries(state: PipelineState, stage: str) -> list[dict[str, Any]]:
    """The latest record of each query of `stage` that ended in an error."""
    return [r for r in section_records(state, stage) if r.get("error")]


def _tries(rec: dict[str, Any]) -> str:
    n = int(rec.get("attempt") or 1)
    return f" (failed {n} times)" if n > 1 else ""


async def consult_knowledge(
    state: PipelineState, runtime: Runtime[Context]
) -> Command[Literal["consult_retry", "synthesize"]]:
    records = await run_stage(state, get_context(runtime), CONSULT_STAGE)
    merged = {**state, "knowledge": [*(state.get("knowledge") or []), *records]}
    goto = "consult_retry" if failed_queries(merged, CONSULT_STAGE) else "synthesize"
    return Command(goto=goto, update=knowledge_update(records))


RETRY_OPTIONS = [
    Option(value="retry", label="Retry", description="Run the failed queries again"),
    Option(value="continue", label="Continue without them", description="The spec will say they could not be consulted"),
]


def consult_retry(state: PipelineState) -> Command[Literal["consult_knowledge", "synthesize", "consult_retry"]]:
    failed = failed_queries(state, CONSULT_STAGE)
    listing = "\n".join(f"- `{r['ref']}`{_tries(r)}: {r['error']}" for r in failed)
    question = Question(
        question_id="consult_knowledge.retry",
        section="consult_knowledge",
        kind="choice",
        title="Knowledge queries failed",
        prompt=f"Some mandatory knowledge queries failed:\n\n{listing}\n\nRetry them, or continue without them?",
        options=RETRY_OPTIONS,
        default="retry",
    )
    value, update = ask_and_parse(state, question, lambda raw: parse_choice(raw, RETRY_OPTIONS))
    if value is None:
        return retry("consult_retry", update)
    if value == "retry":
        return Command(goto="consult_knowledge", update=update)
    notice = "Not consulted: " + ", ".join(f"`{r['ref']}`" for r in failed)
    return Command(goto="synthesize", update={**update, "notices": [notice]})


async def synthesize(state: PipelineState, runtime: Runtime[Context]) -> Command[Literal[SectionNode, "write_artifacts"]]:
    """Section 2: the model's synthesis when there is a model and something to synthesize, else the quoted items."""
    records = section_records(state, CONSULT_STAGE)
    text, insights = offline.synthesize(records)
    usage: dict[str, Any] = {}
    if any(r.get("items") for r in records):
        fac = await Facilitator.open(get_context(runtime), state.get("project"))
        if fac is not None:
            made = await llm_tasks.synthesize(fac, records)
            if made is not None:
                text, insights = made
            elif fac.notice:
                text = f"*{fac.notice}*\n\n{text}"
            usage = fac.state_update()
    return Command(goto=first_open(state), update={"insights": insights, **say(text), **usage})
