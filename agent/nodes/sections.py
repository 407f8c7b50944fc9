"""The four nodes every decision section is made of.

    <section>            fetch the section's knowledge (I/O), post the "Ask:" question to the chat
    <section>_ask        the seed's "Ask:" question (interrupt)
    <section>_recommend  a proposal with its reasoning (rules, or the model), posted to the chat
    <section>_decide     the proposal shown; the user confirms, picks another option or edits (interrupt)

Each question is posted by the node before the one that asks it, so an answer costs three
graph steps (the asking node, the next node, the next question), not four.

Fetching and recommending never share a node with an interrupt, because a node
runs again from its top when it is resumed. For the same reason a free-text answer
to a proposal that the rules cannot read goes back to `<section>_recommend`, where
the model reads it into edits, and the updated proposal is shown again. Only `yes`
(or a submitted form) on a proposal the user has seen records a decision.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from langgraph.runtime import Runtime
from langgraph.types import Command
from pydantic import ValidationError

from agent import llm_tasks, sidecar
from agent.context import Context, get_context, project_folder
from agent.decisions import sidecar_entry
from agent.interview import InvalidAnswer, Option, Question, clean_text, format_validation_error, is_no, is_yes, match_choice, parse_edits
from agent.knowledge.models import cited_refs
from agent.knowledge.stages import knowledge_update, run_stage, section_records
from agent.llm import Facilitator, llm_enabled
from agent.model_catalog import find_model
from agent.nodes.common import after_section, ask_and_parse, post_question, retry, say
from agent.planning.pitfalls import check_pitfalls, open_errors
from agent.sections import SECTION_SPECS
from agent.sections.base import Proposal, SectionInputs, SectionSpec, table
from agent.planning.constraints import Constraints, read_constraints
from agent.state import DECISION_IDS, FIELDS_MODELS, SECTION_TITLES, Decision, PipelineState


def section_node(body: Callable, spec: SectionSpec, name: str) -> Callable:
    """The node `name`: `body` run for one section.

    A thin closure, with the bodies at module level: when a graph compiles, LangGraph reads every
    node's bytecode looking for subgraphs, and 24 copies of the large bodies (with their nested
    functions) took about 15 ms of the terminal chat's start-up.
    """
    async def node(state: PipelineState, runtime: Runtime[Context]) -> Command:
        return await body(state, runtime, spec)

    node.__name__ = name
    return node


async def fetch_node(state: PipelineState, runtime: Runtime[Context], spec: SectionSpec) -> Command:
    decided = spec.name in (state.get("decisions") or {})
    if decided and state.get("revisiting") != spec.name:
        return Command(goto=after_section(state, spec.name))  # restored from the sidecar: ask only what is open
    records = await run_stage(state, get_context(runtime), spec.name)
    # The question goes to the chat with the records it cites: <section>_ask then asks at once.
    fetched = {**state, "knowledge": [*(state.get("knowledge") or []), *records]}
    asked = post_question(fetched, ask_question(fetched, spec), node=f"{spec.name}_ask")
    return Command(goto=f"{spec.name}_ask", update={**knowledge_update(records), **asked})


def ask_prompt(state: PipelineState, spec: SectionSpec) -> str:
    parts = [f"### {spec.seed_section}. {spec.title}", spec.intro]
    project = state.get("project") or {}
    if spec.name == "base_model" and project.get("constraints"):
        parts.append("**From the project spec:** " + "; ".join(project["constraints"]))
    lines, seen = [], set()
    for rec in section_records(state, spec.name):
        if rec.get("error"):
            lines.append(f"- Could not consult `{rec['ref']}`: {rec['error']}")
        for item in [i for i in rec.get("items", []) if i["id"] not in seen][:2]:
            seen.add(item["id"])
            lines.append(f"- **{item['title']}** ({item.get('source_title') or 'source not named'}) `[{item['id'][:8]}]`")
    if lines:
        parts.append("**From the knowledge base:**\n" + "\n".join(lines))
    parts.append(f"**{spec.ask_text}**")
    return "\n\n".join(parts)


def ask_question(state: PipelineState, spec: SectionSpec) -> Question:
    return Question(
        question_id=spec.ask_id,
        section=spec.name,
        kind="text",
        title=spec.ask_title,
        prompt=ask_prompt(state, spec),
        default=(state.get("section_context") or {}).get(spec.name),
        error=(state.get("errors") or {}).get(spec.ask_id),
    )


# Async, with no I/O: it runs on the event loop, without a worker thread's round trip per answer.
async def ask_node(state: PipelineState, runtime: Runtime[Context], spec: SectionSpec) -> Command:
    value, update = ask_and_parse(state, ask_question(state, spec), clean_text)
    if value is None:
        return retry(f"{spec.name}_ask", update)
    return Command(
        goto=f"{spec.name}_recommend",
        update={**update, "section_context": {spec.name: value}, "recommendations": {spec.name: None}},
    )


def section_inputs(state: PipelineState, spec: SectionSpec, overrides: dict[str, Any]) -> SectionInputs:
    decided = {s: d["fields"] for s, d in (state.get("decisions") or {}).items() if s != spec.name}
    said = state.get("section_context") or {}
    return SectionInputs(
        context=said.get(spec.name, ""),
        earlier={s: text for s, text in said.items() if s != spec.name},
        project=state.get("project") or {},
        decisions=decided,
        knowledge=section_records(state, spec.name),
        choice=overrides.get("choice"),
        edits=overrides.get("edits") or {},
    )


def stated_constraints(state: PipelineState, section: str | None = None) -> Constraints:
    """What the user stated in every answer so far and the project files; `section`'s answer first."""
    return read_constraints(state.get("section_context") or {}, state.get("project"), current=section)


def section_pitfalls(state: PipelineState, spec: SectionSpec, proposal: Proposal) -> list[dict[str, Any]]:
    confirmed = {s: d["fields"] for s, d in (state.get("decisions") or {}).items() if s != spec.name}
    stated = stated_constraints(state, spec.name)
    return [
        p.model_dump(mode="json")
        for p in check_pitfalls({**confirmed, spec.name: proposal.fields}, state.get("project"), stated=stated)
        if p.section == spec.name
    ]


# Fields an option decides: picking another option recomputes them; the user's other edits are kept.
CHOICE_FIELDS: dict[str, set[str] | None] = {
    "base_model": None,  # every field comes from the model picked
    "training_approach": {"approach"},
    "peft": {"method", "quantization"},
    "infrastructure": {"platform", "instance_type", "gpu_count", "spot_instances", "estimated_cost"},
}
ADAPTER_FIELDS = {"r", "alpha", "dropout", "target_modules"}


def edits_kept_on_choice(spec: SectionSpec, edits: dict[str, Any], choice: str) -> dict[str, Any]:
    if spec.name not in CHOICE_FIELDS:
        return dict(edits)
    decided = CHOICE_FIELDS[spec.name]
    if decided is None:
        return {}
    kept = {k: v for k, v in edits.items() if k not in decided}
    if spec.name == "peft" and choice == "full":
        kept = {k: v for k, v in kept.items() if k not in ADAPTER_FIELDS}
    return kept


def recorded_edits(state: PipelineState, spec: SectionSpec, fresh: Proposal) -> dict[str, Any]:
    """On a revisit with the same answer, the recorded values, as edits over the fresh proposal.

    Values that no longer hold after an earlier decision changed (target modules of another
    model family) are left to the fresh proposal, which then shows the new ones.
    """
    recorded = ((state.get("decisions") or {}).get(spec.name) or {})
    if state.get("revisiting") != spec.name or not recorded:
        return {}
    if recorded.get("context", "") != (state.get("section_context") or {}).get(spec.name, ""):
        return {}  # a new answer: a new proposal
    edits = {k: v for k, v in (recorded.get("fields") or {}).items() if fresh.fields.get(k) != v}
    if spec.name == "peft" and "target_modules" in edits:
        trial = {s: d["fields"] for s, d in (state.get("decisions") or {}).items()}
        trial["peft"] = {**fresh.fields, **edits}
        if any(p.id == "target-module-not-in-model" for p in check_pitfalls(trial)):
            edits.pop("target_modules")
    if spec.name == "hyperparameters":
        edits.pop("budget", None)
        trial = {s: d["fields"] for s, d in (state.get("decisions") or {}).items()}
        trial["hyperparameters"] = {**fresh.fields, **edits}
        # Misfits the user kept (acknowledged) stay as recorded; new ones are fitted again.
        kept = set(recorded.get("warnings_acknowledged") or [])
        misfit = {"plan-does-not-fit-gpu", "plan-over-time-budget", "plan-over-money-budget"} - kept
        if any(p.id in misfit for p in check_pitfalls(trial, state.get("project"), stated=stated_constraints(state))):
            for name in ("batch_size", "gradient_accumulation_steps", "max_length", "num_epochs"):
                edits.pop(name, None)  # recorded values that no longer fit: the planner fits them again
    return edits


async def recommend_node(state: PipelineState, runtime: Runtime[Context], spec: SectionSpec) -> Command:
    """Rules first; with a model, the model improves the first proposal or reads a free-text answer.

    Overrides the user gave (an option, `field: value` edits) are applied by the rules alone, so
    the model never overrules them.
    """
    current = (state.get("recommendations") or {}).get(spec.name) or {}
    overrides = current.get("overrides") or {}
    fac = await Facilitator.open(get_context(runtime), state.get("project")) if not overrides or "text" in overrides else None
    if fac is not None and "text" in overrides:
        return await _read_answer(state, spec, fac, current, overrides)
    inputs = section_inputs(state, spec, overrides)
    proposal = spec.recommend(inputs)
    if not overrides:
        pinned = recorded_edits(state, spec, proposal)
        if pinned:
            overrides = {"choice": proposal.choice_value, "edits": pinned}
            proposal = spec.recommend(section_inputs(state, spec, overrides))
            fac = None  # the recorded values stand; the model proposes only on a new answer
    record: dict[str, Any] = {}
    if fac is not None:
        known = llm_tasks.known_items(state.get("knowledge") or [])
        made = await llm_tasks.recommend(fac, spec, inputs, proposal, state.get("project") or {}, known)
        if made is not None:
            proposal, overrides = made
        elif fac.notice:
            record["notice"] = fac.notice
    if current.get("shown_options"):  # the same question again: its options keep their numbers
        record["shown_options"] = current["shown_options"]
    record = {"proposal": proposal.model_dump(mode="json"), "pitfalls": section_pitfalls(state, spec, proposal), "overrides": overrides, **record}
    return Command(goto=f"{spec.name}_decide", update={"recommendations": {spec.name: record}, **post_decision(state, spec, record), **(fac.state_update() if fac else {})})


async def _read_answer(state: PipelineState, spec: SectionSpec, fac: Facilitator, current: dict[str, Any], overrides: dict[str, Any]) -> Command:
    """A decision answer the rules could not read, read by the model into an updated proposal.

    Nothing is recorded here: the updated proposal goes back to the user, who confirms with yes.
    """
    text = overrides["text"]
    kept = {k: v for k, v in overrides.items() if k != "text"}
    proposal = Proposal.model_validate(current["proposal"])
    inputs = section_inputs(state, spec, {})
    result = await llm_tasks.read_answer(fac, spec, inputs, proposal, kept, text)
    if result is None or result[0] is None:
        # Back to the same proposal, with the reason the answer was not used.
        try:
            parse_edits(text, spec.fields)
            reason = "I could not read that as a change to the proposal."
        except InvalidAnswer as exc:
            reason = str(exc)
        said = result[2] if result is not None else fac.notice
        error = f"{said} {reason}" if said else reason
        same = {k: v for k, v in current.items() if k != "notice"} | {"overrides": kept}
        posted = post_decision({**state, "errors": {**(state.get("errors") or {}), spec.decision_id: error}}, spec, same)
        return Command(goto=f"{spec.name}_decide", update={"recommendations": {spec.name: same}, "errors": {spec.decision_id: error}, **posted, **fac.state_update()})
    new_overrides, updated, summary = result
    record = {
        **({"shown_options": current["shown_options"]} if current.get("shown_options") else {}),
        "proposal": updated.model_dump(mode="json"),
        "pitfalls": section_pitfalls(state, spec, updated),
        "overrides": new_overrides,
        "notice": f"Read from your answer: {summary}",
    }
    return Command(goto=f"{spec.name}_decide", update={"recommendations": {spec.name: record}, **post_decision(state, spec, record), **fac.state_update()})


def _value_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    if value is None:
        return "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def decide_prompt(spec: SectionSpec, proposal: Proposal, pitfalls: list[dict[str, Any]], updated: bool, notice: str | None = None) -> str:
    parts = [f"### {spec.title}: recommendation" + (" (updated)" if updated else "")]
    if notice:
        parts.append(f"*{notice}*")
    parts.append("**Reasoning**\n" + "\n".join(f"{i}. {r}" for i, r in enumerate(proposal.reasoning, 1)))
    parts.append(f"**Proposal: {proposal.choice}**\n\n" + table(["Field", "Value"], [[k, _value_text(v)] for k, v in proposal.fields.items()]))
    if proposal.notes:
        parts.append("**Notes**\n" + "\n".join(f"- {n}" for n in proposal.notes))
    if pitfalls:
        parts.append(
            "**Warnings** (confirming acknowledges them)\n"
            + "\n".join(f"- ⚠ {p['message']} Fix: {p['fix']} ({p['knowledge_ref']})" for p in pitfalls)
        )
    parts.append(
        "Answer **yes** to record this decision, pick another option by number or name, "
        "or edit fields as `field: value` (for example `" + _example_edit(spec) + "`)."
    )
    return "\n\n".join(parts)


def _example_edit(spec: SectionSpec) -> str:
    f = spec.fields[-1] if spec.name != "peft" else spec.fields[2]
    return f"{f.name}: ..." if f.type == "string" else {"integer": f"{f.name}: 32", "number": f"{f.name}: 0.1", "boolean": f"{f.name}: yes", "list": f"{f.name}: a, b"}[f.type]


def _user_changed(overrides: dict[str, Any]) -> bool:
    """Whether the user changed the proposal (the model's own first proposal is not an update)."""
    return bool(overrides) and overrides.get("source") != "model"


def _names_a_field(text: str, spec: SectionSpec) -> bool:
    """`field: value` with a real field name: a typo in it gets the rules' precise error, not the model."""
    names = {n.casefold() for f in spec.fields for n in (f.name, f.name.replace("_", " "), f.label)}
    for line in text.splitlines():
        key, sep, _ = line.partition(":") if ":" in line else line.partition("=")
        if sep and key.strip().casefold().replace("-", "_") in names:
            return True
    return False


def _free_choice(spec: SectionSpec, text: str) -> str | None:
    """Base models may be named outright: a catalogue key or a Hugging Face repo id."""
    if spec.name != "base_model":
        return None
    model = find_model(text)
    if model:
        return model.key
    return None


def _validated(spec: SectionSpec, fields: dict[str, Any]) -> dict[str, Any]:
    try:
        return FIELDS_MODELS[spec.name].model_validate(fields).model_dump(mode="json")
    except ValidationError as exc:
        raise InvalidAnswer(format_validation_error(exc)) from None


def in_shown_order(options: list[Option], shown: list[str] | None) -> list[Option]:
    """`options` with those already shown for this question first, at the numbers they had;
    a new one (a model named outright) comes after them."""
    if not shown:
        return list(options)
    rank = {value: i for i, value in enumerate(shown)}
    return sorted(options, key=lambda o: rank.get(o.value, len(rank)))


def decide_question(state: PipelineState, spec: SectionSpec, current: dict[str, Any]) -> Question:
    """The proposal in `current` (a section's recommendation record), as the decision question."""
    proposal = Proposal.model_validate(current["proposal"])
    return Question(
        question_id=spec.decision_id,
        section=spec.name,
        kind="form",
        title=f"{spec.title}: your decision",
        prompt=decide_prompt(spec, proposal, current.get("pitfalls") or [], updated=_user_changed(current.get("overrides") or {}), notice=current.get("notice")),
        options=in_shown_order(proposal.options, current.get("shown_options")),
        default=proposal.fields,
        fields=spec.fields,
        error=(state.get("errors") or {}).get(spec.decision_id),
    )


def post_decision(state: PipelineState, spec: SectionSpec, current: dict[str, Any]) -> dict[str, Any]:
    """The decision question, posted by the node that made the proposal: <section>_decide then asks at once."""
    return post_question(state, decide_question(state, spec, current), node=f"{spec.name}_decide")


# Async: reading the answer runs on the event loop; only recording it (files) goes to a thread.
async def decide_node(state: PipelineState, runtime: Runtime[Context], spec: SectionSpec) -> Command:
    node = f"{spec.name}_decide"
    current = state["recommendations"][spec.name]
    question = decide_question(state, spec, current)
    proposal = Proposal.model_validate(current["proposal"])
    overrides = current.get("overrides") or {}
    online = llm_enabled(get_context(runtime))
    options = question.options
    shown = {"shown_options": [o.value for o in options]}

    def parse(raw: Any) -> tuple[str, Any]:
        if isinstance(raw, dict):  # a submitted form: every value explicit
            return "record", _validated(spec, {**proposal.fields, **raw})
        text = clean_text(raw)
        if is_yes(text):
            return "record", _validated(spec, proposal.fields)
        choice = match_choice(text, options) or _free_choice(spec, text)
        if choice is not None:
            return "choose", choice
        if is_no(text):
            raise InvalidAnswer("Then pick another option, or edit fields as `field: value`.")
        try:
            edits = parse_edits(text, spec.fields)
        except InvalidAnswer:
            if not _names_a_field(text, spec) and read_constraints({spec.name: text}).understood(spec.name):
                return "restate", text  # GPUs, budget, volumes or lengths: a corrected answer, read again
            if online and not _names_a_field(text, spec):
                return "read", text  # prose: the model reads it, in the recommend node
            raise
        merged = {**(overrides.get("edits") or {}), **edits}
        _validated(spec, {**proposal.fields, **merged})
        return "edit", merged

    value, update = ask_and_parse(state, question, parse)
    if value is None:
        return retry(node, update)
    action, payload = value
    if action == "read":
        return Command(goto=f"{spec.name}_recommend", update={**update, "recommendations": {spec.name: {**current, **shown, "overrides": {**overrides, "text": payload}}}})
    if action == "choose":
        kept = edits_kept_on_choice(spec, overrides.get("edits") or {}, payload)
        return Command(goto=f"{spec.name}_recommend", update={**update, "recommendations": {spec.name: {**current, **shown, "overrides": {"choice": payload, "edits": kept}}}})
    if action == "restate":  # the answer to the section's question, corrected: read it again
        kept = {k: v for k, v in overrides.items() if k != "text"}
        return Command(goto=f"{spec.name}_recommend", update={**update, "section_context": {spec.name: payload}, "recommendations": {spec.name: {**current, **shown, "overrides": kept}}})
    if action == "edit":
        new_overrides = {"choice": proposal.choice_value, "edits": payload}
        return Command(goto=f"{spec.name}_recommend", update={**update, "recommendations": {spec.name: {**current, **shown, "overrides": new_overrides}}})
    return await asyncio.to_thread(record, state, spec, proposal, payload, current.get("pitfalls") or [], get_context(runtime), update)


def record(
    state: PipelineState,
    spec: SectionSpec,
    proposal: Proposal,
    fields: dict[str, Any],
    pitfalls: list[dict[str, Any]],
    ctx: Context,
    update: dict[str, Any],
) -> Command:
    """Store the confirmed decision in the state and the sidecar at once."""
    records = section_records(state, spec.name)
    consulted = section_records(state, "consult_knowledge")
    # The calls that produced the cited items (a fallback's, when the seed's call found nothing);
    # with nothing cited, the queries that were consulted.
    refs = cited_refs(records + consulted, proposal.knowledge_items)
    if not refs:
        refs = [r["ref"] for r in records if not r.get("error")]
    if not refs:
        refs = [r["ref"] for r in consulted if not r.get("error")][:1]
    decision = Decision(
        id=DECISION_IDS[spec.name],
        section=spec.name,
        title=SECTION_TITLES[spec.name],
        choice=proposal.choice,
        rationale=proposal.rationale,
        options_considered=proposal.options_considered,
        consequences=proposal.consequences,
        knowledge_refs=refs,
        knowledge_items=proposal.knowledge_items,
        warnings_acknowledged=[p["id"] for p in pitfalls],
        fields=fields,
        context=(state.get("section_context") or {}).get(spec.name, ""),
        date=ctx.date(),
    ).model_dump(mode="json")
    previous = (state.get("decisions") or {}).get(spec.name)
    project_dir = project_folder(state, ctx)
    acknowledged = [f"{decision['id']}:{p['id']}" for p in pitfalls]
    try:
        sidecar.upsert_decision(project_dir, sidecar_entry(decision), acknowledged=acknowledged)
    except sidecar.ProjectError as exc:
        # Not saved (full disk, read-only folder, ...): ask again, the confirmed fields as the default.
        kept = {**state["recommendations"][spec.name], "proposal": {**proposal.model_dump(mode="json"), "fields": fields}}
        answers = [{**a, "accepted": False, "error": str(exc)} for a in update.get("answers", [])]
        return retry(f"{spec.name}_decide", {**update, "answers": answers, "errors": {spec.decision_id: str(exc)},
                                             "recommendations": {spec.name: kept}})
    out: dict[str, Any] = {
        **update,
        "decisions": {spec.name: decision},
        "recommendations": {spec.name: None},
        **say(f"Recorded **{decision['id'].upper()}**: {decision['choice']}."),
    }
    stale = [e for e in open_errors({**(state.get("decisions") or {}), spec.name: decision}, state.get("project"), stated_constraints(state))
             if e.section != spec.name and e.section in (state.get("decisions") or {})]
    if stale:
        out["messages"] += say(stale_text(stale))["messages"]
    out["messages"] = update.get("messages", []) + out["messages"]
    if previous is not None and previous != decision:
        out["superseded"] = [{**previous, "superseded_on": ctx.date()}]
    if state.get("phase_status") == "pending":
        out["phase_status"] = "in_progress"
    goto = after_section({**state, "decisions": {**(state.get("decisions") or {}), spec.name: decision}}, spec.name)
    return Command(goto=goto, update=out)


def stale_text(errors: list) -> str:
    """Decisions an edit made invalid: each must be revisited (menu A) or kept before Phase 3."""
    lines = [f"- **{DECISION_IDS[e.section].upper()} {SECTION_TITLES[e.section]}**: {e.message} Fix: {e.fix}" for e in errors]
    return ("**These decisions no longer hold with this change** (revisit them with A, or keep them at the menu):\n"
            + "\n".join(lines))


def section_nodes() -> list[tuple[str, Callable, tuple[str, ...]]]:
    """(name, function, where it may go) for the four nodes of each section, in the seed's order."""
    onward = (*SECTION_SPECS, "write_artifacts")  # after a decision: the next open section, or the artifacts
    nodes: list[tuple[str, Callable, tuple[str, ...]]] = []
    for name, spec in SECTION_SPECS.items():
        ask, rec, dec = f"{name}_ask", f"{name}_recommend", f"{name}_decide"
        nodes += [
            (name, section_node(fetch_node, spec, name), (ask, *onward)),
            (ask, section_node(ask_node, spec, ask), (ask, rec)),
            (rec, section_node(recommend_node, spec, rec), (dec,)),
            (dec, section_node(decide_node, spec, dec), (dec, rec, *onward)),
        ]
    return nodes
