"""What the facilitator asks the model: synthesis, recommendations, reading answers, menu answers.

Each task renders its prompt, asks for a pydantic schema, and checks the result
against the state before anything reaches the user: citations must name
knowledge items the run actually fetched, field values must pass the section's
fields model, choices must be the section's options. A task returns None when
the model's answer cannot be used; the node then takes the offline path.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field, create_model

from agent import offline
from agent.llm import Facilitator
from agent.model_catalog import find_model
from agent.prompts import render
from agent.sections.base import KNOWLEDGE_PREFIX, Proposal, SectionInputs, SectionSpec
from agent.state import FIELDS_MODELS, MAX_TEXT, SECTION_TITLES

# The field that names the choice, where one does: the model must keep the two consistent.
CHOICE_FIELDS = {"base_model": "model_id", "training_approach": "approach", "peft": "method"}
BODY_CHARS = 300  # of each knowledge item shown to the model: enough to ground a claim


# --- knowledge and citations --------------------------------------------------------------


def known_items(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every knowledge item in the given query records, by id."""
    return {item["id"]: item for rec in records for item in rec.get("items") or []}


def resolve_ids(cited: list[str], known: dict[str, dict[str, Any]]) -> list[str]:
    """Cited ids that name a fetched item (exactly, or by the 8-character prefix we display); others dropped."""
    out: list[str] = []
    for raw in cited:
        ref = str(raw).strip().strip("`[]")
        match = ref if ref in known else None
        if match is None and len(ref) >= 8:
            found = [i for i in known if i.startswith(ref)]
            match = found[0] if len(found) == 1 else None
        if match and match not in out:
            out.append(match)
    return out


def short_ids(records: list[dict[str, Any]]) -> dict[str, str]:
    """Each item's id as the model is shown it: the 8-character prefix users see, which
    resolve_ids maps back, or the whole id where two items share that prefix."""
    ids = set(known_items(records))
    prefixes: dict[str, int] = {}
    for i in ids:
        prefixes[i[:8]] = prefixes.get(i[:8], 0) + 1
    return {i: i[:8] if len(i) > 8 and prefixes[i[:8]] == 1 else i for i in ids}


def knowledge_block(records: list[dict[str, Any]], per_record: int = 3, limit: int = 6) -> str:
    lines: list[str] = []
    seen: set[str] = set()
    shown = short_ids(records)
    for rec in records:
        if len(seen) >= limit:  # the best few are enough to ground a proposal; more only costs tokens
            break
        if rec.get("error"):
            lines.append(f"- (`{rec['ref']}` could not be consulted: {rec['error']})")
        for item in [i for i in rec.get("items") or [] if i["id"] not in seen][:per_record]:
            seen.add(item["id"])
            body = " ".join(str(item.get("body", "")).split())
            if len(body) > BODY_CHARS:
                body = body[: BODY_CHARS - 1] + "…"
            source = item.get("source_title") or "source not named"
            lines.append(f"- id `{shown[item['id']]}` ({item.get('type', 'item')}) **{item['title']}**: {body} (source: {source})")
    return "\n".join(lines) or "- (nothing was found)"


def cited_line(ids: list[str], known: dict[str, dict[str, Any]]) -> str:
    parts = [f"{known[i]['title']} ({known[i].get('source_title') or 'unknown source'}) [{i[:8]}]" for i in ids]
    return KNOWLEDGE_PREFIX + "; ".join(parts)


def _json(value: Any) -> str:
    # Compact: models read it as well as indented JSON, at about two thirds of the characters.
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


# --- section 2: synthesis -----------------------------------------------------------------

ASPECTS = [aspect for aspect, _ in offline.SYNTHESIS_ASPECTS]


class Insight(BaseModel):
    aspect: str = Field(description="One of the aspect names, exactly as given")
    text: str = Field(min_length=1, max_length=600, description="One or two sentences on what matters for this project")
    cited_ids: list[str] = Field(description="Ids of the knowledge items this insight rests on")


class KnowledgeSynthesis(BaseModel):
    """Insights drawn from the mandatory knowledge queries, each citing its items."""

    insights: list[Insight] = Field(min_length=1, max_length=12)
    dataset_note: str = Field(max_length=600, description="What the dataset-creation warning means for this project")


async def synthesize(fac: Facilitator, records: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]] | None:
    """Section 2's text and insights from the consult records, or None for the offline synthesis."""
    known = known_items(records)
    by_query = {r["query_id"]: r for r in records}
    expected = [a for a, qid in offline.SYNTHESIS_ASPECTS if (by_query.get(qid) or {}).get("items")]
    prompt = render(
        "synthesis",
        knowledge=knowledge_block(records),
        aspects="\n".join(f"- {a}" for a in ASPECTS),
        critical_warning=offline.CRITICAL_WARNING,
    )

    def check(out: KnowledgeSynthesis) -> tuple[str, list[dict[str, Any]]]:
        canonical = {a.casefold(): a for a in ASPECTS}
        grouped: dict[str, list[tuple[str, list[str]]]] = {a: [] for a in ASPECTS}
        for ins in out.insights:
            aspect = canonical.get(ins.aspect.strip().casefold())
            if aspect is None:
                raise ValueError(f"insights.aspect: '{ins.aspect}' is not one of: {', '.join(ASPECTS)}")
            ids = resolve_ids(ins.cited_ids, known)
            if ids:  # an insight no fetched item supports is left out
                grouped[aspect].append((ins.text.strip(), ids))
        missing = [a for a in expected if not grouped[a]]
        if missing:
            raise ValueError("no insight citing a listed item id for: " + ", ".join(missing))
        return _synthesis_text(grouped, out.dataset_note.strip(), known)

    return await fac.structured("synthesis", KnowledgeSynthesis, prompt, check)


def _synthesis_text(grouped: dict[str, list[tuple[str, list[str]]]], note: str, known: dict[str, dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    lines = ["Here's what the knowledge base tells us about fine-tuning approaches:", ""]
    insights: list[dict[str, Any]] = []
    for aspect, entries in grouped.items():
        if not entries:
            continue
        lines.append(f"**{aspect}**")
        for text, ids in entries:
            sources = "; ".join(dict.fromkeys(known[i].get("source_title") or "source not named" for i in ids))
            lines.append(f"- {text} *({sources})* " + " ".join(f"`[{i[:8]}]`" for i in ids))
            first = known[ids[0]]
            insights.append({"aspect": aspect, "item_id": ids[0], "item_ids": ids, "title": first["title"],
                             "source": first.get("source_title", ""), "summary": text})
        lines.append("")
    lines += ["**Critical warning**", f"> {offline.CRITICAL_WARNING}"]
    if note:
        lines += ["", note]
    return "\n".join(lines), insights


# --- sections 3-8: recommendations --------------------------------------------------------


@lru_cache(maxsize=None)
def recommendation_schema(section: str) -> type[BaseModel]:
    """The tool the model fills for a section: reasoning first, then the proposal."""
    camel = "".join(part.title() for part in section.split("_"))
    return create_model(
        f"{camel}Recommendation",
        __doc__=f"Your recommendation for the {SECTION_TITLES[section]} decision, reasoning first. The user confirms it.",
        reasoning=(list[str], Field(min_length=1, max_length=8, description="Short reasoning steps, shown before the proposal")),
        choice_value=(str, Field(min_length=1, max_length=200, description="The recommended option's value")),
        fields=(FIELDS_MODELS[section], Field(description="Every field of the decision")),
        rationale=(str, Field(min_length=1, max_length=1500, description="One paragraph for the decision record")),
        cited_ids=(list[str], Field(default_factory=list, description="Ids of the knowledge items relied on")),
    )


def resolve_choice(spec: SectionSpec, value: str, proposal: Proposal) -> str:
    """An option value; for the base model also any catalogue model. ValueError otherwise."""
    values = [o.value for o in proposal.options]
    folded = {v.casefold(): v for v in values}
    if value.strip().casefold() in folded:
        return folded[value.strip().casefold()]
    if spec.name == "base_model":
        model = find_model(value)
        if model:
            return model.key
        raise ValueError(f"choice_value: '{value}' is not a model of the catalogue (for example: {', '.join(values)})")
    raise ValueError(f"choice_value: '{value}' is not one of the options: {', '.join(values)}")


def _same_choice(spec: SectionSpec, choice: str, fields: dict[str, Any]) -> None:
    name = CHOICE_FIELDS.get(spec.name)
    if name is None:
        return
    value = str(fields.get(name, ""))
    if spec.name == "base_model":
        model = find_model(value)
        same = model is not None and model.key == choice
    else:
        same = value == choice
    if not same:
        raise ValueError(f"fields.{name} is '{value}' but choice_value is '{choice}': they must agree")


def _catalogue_facts(spec: SectionSpec, choice: str, fields: dict[str, Any]) -> None:
    """A catalogue model's licence, size, context and family are facts, not the model's to change."""
    model = find_model(choice) if spec.name == "base_model" else None
    if model is None:
        return
    facts = {"params_b": model.params_b, "license": model.license, "context_length": model.context_length, "family": model.family}
    wrong = [f"fields.{k} of {model.key} is {v!r} in the catalogue, not {fields.get(k)!r}" for k, v in facts.items() if fields.get(k) != v]
    if fields.get("name") not in (model.hf_repo, model.instruct_repo):
        wrong.append(f"fields.name must be {model.hf_repo}" + (f" or {model.instruct_repo}" if model.instruct_repo else ""))
    if wrong:
        raise ValueError("; ".join(wrong))


def apply_choice(spec: SectionSpec, inputs: SectionInputs, choice: str, fields: dict[str, Any]) -> tuple[Proposal, dict[str, Any]]:
    """The section's own proposal for `choice` with `fields` applied, and the edits that made it.

    Going through the section's rules keeps the label, options, consequences and notes
    consistent with the fields, exactly as when the user picks an option or edits a field.
    """
    at_choice = spec.recommend(inputs.model_copy(update={"choice": choice, "edits": {}}))
    edits = {k: v for k, v in fields.items() if at_choice.fields.get(k) != v}
    proposal = spec.recommend(inputs.model_copy(update={"choice": choice, "edits": edits}))
    FIELDS_MODELS[spec.name].model_validate(proposal.fields)
    return proposal, edits


async def recommend(
    fac: Facilitator,
    spec: SectionSpec,
    inputs: SectionInputs,
    baseline: Proposal,
    project: dict[str, Any],
    known: dict[str, dict[str, Any]],
) -> tuple[Proposal, dict[str, Any]] | None:
    """The model's proposal (built through the section's rules) and the overrides that give it."""
    prompt = render(
        "recommend",
        section_title=SECTION_TITLES[spec.name],
        question=spec.ask_text,
        guidance=render(f"recommend/{spec.name}").strip(),
        project=_json({k: project.get(k) for k in ("name", "architecture", "use_case", "requirements", "constraints")}),
        user_answer=inputs.context or "(no answer)",
        earlier=_json(inputs.earlier),
        decided=_json(inputs.decisions),
        knowledge=knowledge_block(inputs.knowledge),
        baseline=_json({"choice_value": baseline.choice_value, "choice": baseline.choice, "fields": baseline.fields,
                        "reasoning": [r for r in baseline.reasoning if not r.startswith(KNOWLEDGE_PREFIX)],
                        "notes": baseline.notes}),
        options="\n".join(f"- {o.value}: {o.label}, {o.description}" for o in baseline.options),
    )

    def check(out: Any) -> tuple[Proposal, dict[str, Any]]:
        choice = resolve_choice(spec, out.choice_value, baseline)
        fields = out.fields.model_dump(mode="json")
        _same_choice(spec, choice, fields)
        _catalogue_facts(spec, choice, fields)
        proposal, edits = apply_choice(spec, inputs, choice, fields)
        ids = resolve_ids(out.cited_ids, known)
        reasoning = [r.strip() for r in out.reasoning if r.strip()]
        if not reasoning:
            raise ValueError("reasoning: give at least one step")
        if ids:
            reasoning.append(cited_line(ids, known))
        proposal = proposal.model_copy(update={
            "reasoning": reasoning,
            "rationale": out.rationale.strip()[:MAX_TEXT],
            "knowledge_items": ids or proposal.knowledge_items,
        })
        return proposal, {"choice": choice, "edits": edits, "source": "model"}

    return await fac.structured(f"recommend:{spec.name}", recommendation_schema(spec.name), prompt, check)


# --- reading a free-text answer at a decision ---------------------------------------------


class AnswerReading(BaseModel):
    """How the user's answer changes the proposal. You cannot accept it for them."""

    understood: bool = Field(description="False when the answer asks for no change you can express")
    choice_value: str | None = Field(default=None, description="Another option's value, only if the user asks for it")
    edits: dict[str, Any] = Field(default_factory=dict, description="Only the fields to change, with typed values")
    summary: str = Field(min_length=1, max_length=400, description="One sentence to the user: what you understood")


async def read_answer(
    fac: Facilitator,
    spec: SectionSpec,
    inputs: SectionInputs,
    proposal: Proposal,
    overrides: dict[str, Any],
    text: str,
) -> tuple[dict[str, Any], Proposal, str] | tuple[None, None, str] | None:
    """(new overrides, updated proposal, summary), or (None, None, summary) when the model
    found no change to make, or None when the model failed."""
    model = FIELDS_MODELS[spec.name]
    prompt = render(
        "read_answer",
        section_title=SECTION_TITLES[spec.name],
        proposal=_json({"choice_value": proposal.choice_value, "choice": proposal.choice, "fields": proposal.fields}),
        fields="\n".join(f"- {f.name} ({f.type}{', one of ' + '/'.join(f.choices) if f.choices else ''}): {f.description or f.label}" for f in spec.fields),
        options="\n".join(f"- {o.value}: {o.label}" for o in proposal.options),
        answer=text,
    )

    def check(out: AnswerReading) -> Any:
        summary = out.summary.strip()
        if not out.understood or (not out.edits and not out.choice_value):
            return None, None, summary
        unknown = sorted(set(out.edits) - set(model.model_fields))
        if unknown:
            raise ValueError(f"edits: no field {', '.join(unknown)} in this decision; its fields are {', '.join(model.model_fields)}")
        choice = resolve_choice(spec, out.choice_value, proposal) if out.choice_value else proposal.choice_value
        kept = (overrides.get("edits") or {}) if choice == proposal.choice_value else {}
        base = proposal.fields if choice == proposal.choice_value else spec.recommend(inputs.model_copy(update={"choice": choice, "edits": {}})).fields
        typed = model.model_validate({**base, **kept, **out.edits}).model_dump(mode="json")
        edits = {**kept, **{k: typed[k] for k in out.edits}}
        updated = spec.recommend(inputs.model_copy(update={"choice": choice, "edits": edits}))
        model.model_validate(updated.fields)
        return {"choice": choice, "edits": edits}, updated, summary

    return await fac.structured(f"read_answer:{spec.name}", AnswerReading, prompt, check)


# --- the menu -----------------------------------------------------------------------------


class MenuAnswer(BaseModel):
    """Your answer to the user's question about this phase."""

    in_scope: bool = Field(description="False for deployment, serving, inference (Phase 3) or evaluation (Phase 4)")
    answer: str = Field(min_length=1, max_length=3000, description="Markdown, a few sentences")
    cited_ids: list[str] = Field(default_factory=list)


async def answer_question(fac: Facilitator, question: str, record: dict[str, Any], decisions: dict[str, Any]) -> str | None:
    known = known_items([record])
    prompt = render(
        "menu_answer",
        question=question,
        decisions=_json({s: {"choice": d.get("choice"), "fields": d.get("fields")} for s, d in decisions.items()}),
        knowledge=knowledge_block([record], per_record=5),
    )

    def check(out: MenuAnswer) -> str:
        if not out.in_scope:
            return offline.out_of_scope_answer()
        ids = resolve_ids(out.cited_ids, known)
        text = out.answer.strip()
        if ids:
            text += "\n\n**Sources**\n" + "\n".join(
                f"- **{known[i]['title']}** *({known[i].get('source_title') or 'source not named'})* `[{i[:8]}]`" for i in ids
            )
        return text

    return await fac.structured("menu_answer", MenuAnswer, prompt, check)
