"""Section 4: training approach, SFT, DPO or combined (tp-002)."""

from __future__ import annotations

from agent.interview import FormField, Option
from agent.planning import reading as parse
from agent.planning.constraints import read_constraints
from agent.sections.base import Proposal, SectionInputs, SectionSpec, knowledge_lines, rationale_from, understood_notes

INTRO = """**A. SFT (Supervised Fine-Tuning)**: teaches the model to follow instructions using example pairs.

```
Input: "Summarize this document: [doc]"
Output: "[summary]"
```

When to use: you have high-quality instruction-response pairs; the task is well defined (classification,
extraction, generation); you need a consistent output format.

**B. DPO (Direct Preference Optimization)**: aligns the model using preference data (chosen vs rejected).

```
Prompt: "Explain quantum computing"
Chosen: [Good, helpful response]
Rejected: [Poor, unhelpful response]
```

When to use: you have preference data or can generate it; you need subtle behaviour alignment; you want
to reduce harmful outputs.

**C. Combined**: SFT first for capability, then DPO for alignment.

```
Stage 1: SFT -> Task capability
Stage 2: DPO -> Behavior refinement
```
"""

APPROACHES = {
    "sft": ("SFT", "Instruction-response pairs; teaches the task and the output format"),
    "dpo": ("DPO", "Prompt + chosen + rejected pairs; aligns behaviour, starts from an instruction-following model"),
    "combined": ("SFT then DPO", "Both data formats; SFT for capability, then DPO for behaviour"),
}

FIELDS = [FormField(name="approach", label="Approach", type="string", choices=list(APPROACHES))]

_PREFERENCE_WORDS = ("preference", "chosen", "rejected", "ranked", "ranking", "thumbs", "rated", "ratings", "comparison", "a/b", "pairwise", "better answer")
_SFT_WORDS = ("instruction", "example", "pairs", "q&a", "question-answer", "tickets", "conversations", "demonstration", "drafts", "transcripts")


def recommend(inputs: SectionInputs) -> Proposal:
    text = inputs.context
    has_pref = parse.mentions(text, *_PREFERENCE_WORDS) and not parse.mentions(text, "no preference", "without preference")
    has_sft = parse.mentions(text, *_SFT_WORDS)
    wants_alignment = parse.mentions(text, "tone", "style", "harmful", "safety", "refus", "polite", "alignment", "behaviour", "behavior")
    reasoning: list[str] = []
    if has_pref and has_sft:
        value = "combined"
        reasoning.append("You describe both demonstrations and preference judgements: SFT can teach the task, then DPO refines behaviour.")
    elif has_pref:
        value = "dpo"
        reasoning.append("You describe preference data (chosen vs rejected); DPO learns from it directly.")
        reasoning.append("DPO works best from a model that already follows instructions: start from an instruction-tuned checkpoint or run SFT first.")
    else:
        value = "sft"
        if has_sft:
            reasoning.append("You describe demonstrations (inputs with good outputs): SFT learns the task and format from them.")
        else:
            reasoning.append("No preference data is mentioned, and DPO needs it: SFT is the starting point.")
        if wants_alignment:
            reasoning.append("Behaviour goals (tone, safety) can be added later with DPO once preference pairs are collected.")
    if inputs.choice in APPROACHES:
        value = inputs.choice
    cited, ids = knowledge_lines(inputs.knowledge)
    if cited:
        reasoning.append("Knowledge consulted: " + "; ".join(cited))
    label, need = APPROACHES[value]
    fields = {"approach": value, **inputs.edits}
    value = fields["approach"]
    label, need = APPROACHES.get(value, (value, ""))
    consequences = {
        "sft": ["Training data: instruction-response pairs (minimum 1,000, ideally 10,000+)."],
        "dpo": ["Training data: preference pairs (minimum 1,000, ideally 5,000+).", "Needs a reference model (the starting checkpoint) unless a reference-free variant is used."],
        "combined": ["Two training stages and both data formats to prepare.", "The DPO stage starts from the SFT checkpoint, which doubles as its reference model."],
    }[value]
    return Proposal(
        choice_value=value,
        choice=label,
        fields=fields,
        reasoning=reasoning,
        rationale=rationale_from(reasoning, 2),
        options=[Option(value=k, label=v[0], description=v[1]) for k, v in APPROACHES.items()],
        options_considered=[v[0] for v in APPROACHES.values()],
        consequences=consequences + [f"Needs: {need}."],
        knowledge_items=ids,
        notes=understood_notes(read_constraints({**inputs.earlier, "training_approach": text}, inputs.project, current="training_approach"), "training_approach"),
    )


SPEC = SectionSpec(
    name="training_approach",
    seed_section=4,
    title="Training approach selection",
    ask_id="training_approach.goals",
    ask_title="Data and goals",
    ask_text="Based on your data and goals, which approach fits best?",
    intro=INTRO,
    fields=FIELDS,
    recommend=recommend,
    ask_placeholder="e.g. 40k resolved tickets as instruction pairs; no preference data yet",
)
