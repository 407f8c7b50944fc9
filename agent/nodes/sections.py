"""The four nodes every decision section is made of.

    <section>            fetch the section's knowledge (I/O, no question)
    <section>_ask        the seed's "Ask:" question (interrupt)
    <section>_recommend  a proposal with its reasoning (rules, or the model; no question)
    <section>_decide     the proposal shown; the user confirms, picks another option or edits (interrupt)

Fetching and recommending never share a node with an interrupt, because a node
runs again from its top when it is resumed. For the same reason a free-text answer
to a proposal that the rules cannot read goes back to `<section>_recommend`, where
the model reads it into edits, and the updated proposal is shown again. Only `yes`
(or a submitted form) on a proposal the user has seen records a decision.
"""

from __future__ import annotations

from typing import Any, Callable

from langgraph.runtime import Runtime
from langgraph.types import Command
from pydantic import ValidationError

from agent import llm_tasks, sidecar
from agent.context import Context, get_context
from agent.decisions import sidecar_entry
from agent.interview import InvalidAnswer, Question, clean_text, format_validation_error, is_no, is_yes, match_choice, parse_edits
from agent.knowledge.models import cited_refs
from agent.knowledge.stages import run_stage, section_records
from agent.llm import Facilitator, llm_enabled
from agent.model_catalog import find_model
from agent.nodes.common import after_section, ask_and_parse, retry, say
from agent.planning.pitfalls import check_pitfalls
from agent.sections import SECTION_SPECS
from agent.sections.base import Proposal, SectionInputs, SectionSpec, table
from agent.sections.parse import gpu_memory
from agent.state import DECISION_IDS, FIELDS_MODELS, SECTION_TITLES, Decision, PipelineState


def make_fetch(spec: SectionSpec) -> Callable:
    async def fetch(state: PipelineState, runtime: Runtime[Context]) -> Command:
        decided = spec.name in (state.get("decisions") or {})
        if decided and state.get("revisiting") != spec.name:
            return Command(goto=after_section(state, spec.name))  # restored from the sidecar: ask only what is open
        records = await run_stage(state, get_context(runtime), spec.name)
        return Command(goto=f"{spec.name}_ask", update={"knowledge": records})

    fetch.__name__ = spec.name
    return fetch


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


def make_ask(spec: SectionSpec) -> Callable:
    def ask_node(state: PipelineState) -> Command:
        previous = (state.get("section_context") or {}).get(spec.name)
        question = Question(
            question_id=spec.ask_id,
            section=spec.name,
            kind="text",
            title=spec.ask_title,
            prompt=ask_prompt(state, spec),
            default=previous,
        )
        value, update = ask_and_parse(state, question, clean_text)
        if value is None:
            return retry(f"{spec.name}_ask", update)
        return Command(
            goto=f"{spec.name}_recommend",
            update={**update, "section_context": {spec.name: value}, "recommendations": {spec.name: None}},
        )

    ask_node.__name__ = f"{spec.name}_ask"
    return ask_node


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


def gpu_budget_gb(state: PipelineState) -> float | None:
    texts = [(state.get("section_context") or {}).get(s, "") for s in ("peft", "infrastructure", "base_model")]
    texts += (state.get("project") or {}).get("constraints", [])
    for text in texts:
        found = gpu_memory(text)
        if found:
            return found[0] * found[1]
    return None


def section_pitfalls(state: PipelineState, spec: SectionSpec, proposal: Proposal) -> list[dict[str, Any]]:
    confirmed = {s: d["fields"] for s, d in (state.get("decisions") or {}).items() if s != spec.name}
    return [
        p.model_dump(mode="json")
        for p in check_pitfalls({**confirmed, spec.name: proposal.fields}, state.get("project"), gpu_budget_gb(state))
        if p.section == spec.name
    ]


def make_recommend(spec: SectionSpec) -> Callable:
    """Rules first; with a model, the model improves the first proposal or reads a free-text answer.

    Overrides the user gave (an option, `field: value` edits) are applied by the rules alone, so
    the model never overrules them.
    """
    node = f"{spec.name}_decide"

    async def recommend(state: PipelineState, runtime: Runtime[Context]) -> Command:
        current = (state.get("recommendations") or {}).get(spec.name) or {}
        overrides = current.get("overrides") or {}
        fac = await Facilitator.open(get_context(runtime), state.get("project")) if not overrides or "text" in overrides else None
        if fac is not None and "text" in overrides:
            return await _read_answer(state, spec, fac, current, overrides)
        inputs = section_inputs(state, spec, overrides)
        proposal = spec.recommend(inputs)
        record: dict[str, Any] = {}
        if fac is not None:
            known = llm_tasks.known_items(state.get("knowledge") or [])
            made = await llm_tasks.recommend(fac, spec, inputs, proposal, state.get("project") or {}, known)
            if made is not None:
                proposal, overrides = made
            elif fac.notice:
                record["notice"] = fac.notice
        record = {"proposal": proposal.model_dump(mode="json"), "pitfalls": section_pitfalls(state, spec, proposal), "overrides": overrides, **record}
        return Command(goto=node, update={"recommendations": {spec.name: record}, **(fac.state_update() if fac else {})})

    recommend.__name__ = f"{spec.name}_recommend"
    return recommend


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
        return Command(goto=f"{spec.name}_decide", update={"recommendations": {spec.name: same}, "errors": {spec.decision_id: error}, **fac.state_update()})
    new_overrides, updated, summary = result
    record = {
        "proposal": updated.model_dump(mode="json"),
        "pitfalls": section_pitfalls(state, spec, updated),
        "overrides": new_overrides,
        "notice": f"Read from your answer: {summary}",
    }
    return Command(goto=f"{spec.name}_decide", update={"recommendations": {spec.name: record}, **fac.state_update()})


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


def make_decide(spec: SectionSpec) -> Callable:
    node = f"{spec.name}_decide"

    def decide(state: PipelineState, runtime: Runtime[Context]) -> Command:
        current = state["recommendations"][spec.name]
        proposal = Proposal.model_validate(current["proposal"])
        overrides = current.get("overrides") or {}
        online = llm_enabled(get_context(runtime))
        question = Question(
            question_id=spec.decision_id,
            section=spec.name,
            kind="form",
            title=f"{spec.title}: your decision",
            prompt=decide_prompt(spec, proposal, current.get("pitfalls") or [], updated=_user_changed(overrides), notice=current.get("notice")),
            options=proposal.options,
            default=proposal.fields,
            fields=spec.fields,
        )

        def parse(raw: Any) -> tuple[str, Any]:
            if isinstance(raw, dict):  # a submitted form: every value explicit
                return "record", _validated(spec, {**proposal.fields, **raw})
            text = clean_text(raw)
            if is_yes(text):
                return "record", _validated(spec, proposal.fields)
            choice = match_choice(text, proposal.options) or _free_choice(spec, text)
            if choice is not None:
                return "choose", choice
            if is_no(text):
                raise InvalidAnswer("Then pick another option, or edit fields as `field: value`.")
            try:
                edits = parse_edits(text, spec.fields)
            except InvalidAnswer:
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
            return Command(goto=f"{spec.name}_recommend", update={**update, "recommendations": {spec.name: {**current, "overrides": {**overrides, "text": payload}}}})
        if action == "choose":
            return Command(goto=f"{spec.name}_recommend", update={**update, "recommendations": {spec.name: {**current, "overrides": {"choice": payload, "edits": {}}}}})
        if action == "edit":
            new_overrides = {"choice": proposal.choice_value, "edits": payload}
            return Command(goto=f"{spec.name}_recommend", update={**update, "recommendations": {spec.name: {**current, "overrides": new_overrides}}})
        return record(state, spec, proposal, payload, current.get("pitfalls") or [], get_context(runtime), update)

    decide.__name__ = node
    return decide


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
    project_dir = state["project_dir"]
    acknowledged = [f"{decision['id']}:{p['id']}" for p in pitfalls]
    sidecar.upsert_decision(project_dir, sidecar_entry(decision), acknowledged=acknowledged)
    out: dict[str, Any] = {
        **update,
        "decisions": {spec.name: decision},
        "recommendations": {spec.name: None},
        **say(f"Recorded **{decision['id'].upper()}**: {decision['choice']}."),
    }
    out["messages"] = update.get("messages", []) + out["messages"]
    if previous is not None and previous != decision:
        out["superseded"] = [{**previous, "superseded_on": ctx.date()}]
    if state.get("phase_status") == "pending":
        out["phase_status"] = "in_progress"
    goto = after_section({**state, "decisions": {**(state.get("decisions") or {}), spec.name: decision}}, spec.name)
    return Command(goto=goto, update=out)


def section_nodes() -> list[tuple[str, Callable, tuple[str, ...]]]:
    """(name, function, where it may go) for the four nodes of each section, in the seed's order."""
    onward = (*SECTION_SPECS, "write_artifacts")  # after a decision: the next open section, or the artifacts
    nodes: list[tuple[str, Callable, tuple[str, ...]]] = []
    for name, spec in SECTION_SPECS.items():
        ask, rec, dec = f"{name}_ask", f"{name}_recommend", f"{name}_decide"
        nodes += [
            (name, make_fetch(spec), (ask, *onward)),
            (ask, make_ask(spec), (ask, rec)),
            (rec, make_recommend(spec), (dec,)),
            (dec, make_decide(spec), (dec, rec, *onward)),
        ]
    return nodes
