"""Section 5: training data preparation (tp-003)."""

from __future__ import annotations

from agent.interview import FormField, Option
from agent.planning.constraints import Stated, read_constraints
from agent.planning.reading import DPO_UNITS, SFT_UNITS, data_issues, share
from agent.planning import reading as parse
from agent.sections.base import Proposal, SectionInputs, SectionSpec, knowledge_lines, rationale_from, understood_notes

INTRO = """**A. Data Requirements**

| Approach | Minimum Data | Ideal Data | Format |
|----------|--------------|------------|--------|
| **SFT** | 1,000 examples | 10,000+ | Instruction-response pairs |
| **DPO** | 1,000 preferences | 5,000+ | Prompt + chosen + rejected |
| **Combined** | Both requirements | Both ideals | Both formats |

**B. Data Quality Checklist**

| Criterion | Description | Why Important |
|-----------|-------------|---------------|
| **Diversity** | Cover all target use cases | Prevent narrow specialization |
| **Quality** | Responses match ideal output | Model learns from examples |
| **Consistency** | Same style/format throughout | Predictable outputs |
| **No Contamination** | Not in eval set | Valid evaluation |
| **No PII** | Remove sensitive data | Compliance |

> Creating instruction datasets is often the most difficult part of fine-tuning. Natural
> instruction-answer pairs are rare - data must be transformed and quality-checked extensively.
"""

MINIMUM = {"sft": 1_000, "dpo": 1_000}
IDEAL = {"sft": 10_000, "dpo": 5_000}
CHECKS = {
    "diversity": ("diverse", "diversity", "cover", "all use cases", "categories", "balanced"),
    "quality": ("reviewed", "curated", "quality", "rated", "vetted", "filtered", "approved"),
    "consistency": ("consistent", "style guide", "template", "same format", "normalized", "normalised"),
    "no_contamination": ("held-out", "held out", "decontaminat", "dedup", "no overlap", "separate eval", "test set"),
    "no_pii": ("pii", "anonymi", "redact", "scrubbed", "pseudonymi", "masked"),
}

FIELDS = [
    FormField(name="source", label="Source", type="string", description="Where the data comes from and how it was collected"),
    FormField(name="sft_examples", label="SFT examples", type="integer", required=False),
    FormField(name="dpo_pairs", label="DPO preference pairs", type="integer", required=False),
    FormField(name="quality_checks", label="Quality checks done", type="list", description=", ".join(CHECKS)),
    FormField(name="eval_split", label="Held-out fraction", type="number"),
    FormField(name="train_path", label="Train data path", type="string"),
    FormField(name="eval_path", label="Eval data path", type="string"),
]


ISSUE_ACTIONS = {
    "quality": "Quality: \"{words}\"{share}: filter or rewrite those examples before training (human review, or score them "
               "with a judge model and keep the best); the model learns whatever the replies do.",
    "no_pii": "PII: \"{words}\": redact or pseudonymise it before training (a fine-tuned model can reproduce training text).",
    "consistency": "Consistency: \"{words}\": normalise to one format and style first.",
    "no_contamination": "Contamination: \"{words}\": deduplicate and keep the evaluation set apart.",
    "diversity": "Diversity: \"{words}\": add examples for the use cases that are missing.",
}


def _share(text: str) -> str:
    part = share(text)
    return f" (about {part:.0%} of the data)" if part else ""


def below_minimums(fields: dict, approach: str) -> list[str]:
    notes = []
    needs = {"sft": ["sft"], "dpo": ["dpo"], "combined": ["sft", "dpo"]}.get(approach, ["sft"])
    for kind in needs:
        key = "sft_examples" if kind == "sft" else "dpo_pairs"
        count = fields.get(key)
        label = "SFT examples" if kind == "sft" else "DPO preference pairs"
        if count is None:
            notes.append(f"The count of {label} is not known yet; the seed asks for at least {MINIMUM[kind]:,}.")
        elif count < MINIMUM[kind]:
            notes.append(
                f"Only {count:,} {label}: below the minimum of {MINIMUM[kind]:,} (ideal {IDEAL[kind]:,}+). "
                "Fine-tunes on small sets often end up worse than the base model; collect or synthesize more first."
            )
        elif count < IDEAL[kind]:
            notes.append(f"{count:,} {label} meets the minimum; {IDEAL[kind]:,}+ is the ideal.")
    return notes


def _said(stated: Stated | None) -> int | None:
    return int(stated.value) if stated is not None else None


def recommend(inputs: SectionInputs) -> Proposal:
    text = inputs.context
    approach = inputs.decisions.get("training_approach", {}).get("approach", "sft")
    # Counts said in any earlier answer or the project files count too (the newest first, as the
    # planner reads them), unless this answer gives its own.
    stated = read_constraints({**inputs.earlier, "training_data": text}, inputs.project, current="training_data")
    sft = parse.count_near(text, SFT_UNITS) or _said(stated.sft_examples)
    dpo = parse.count_near(text, DPO_UNITS) or _said(stated.dpo_pairs)
    if dpo is not None and sft == dpo and approach == "dpo":
        sft = None  # "1,200 preference pairs" counts once, as preferences
    if approach == "sft":
        dpo = None
    elif approach == "dpo" and dpo is None:
        dpo, sft = sft, None
    issues = data_issues(text)  # "30% of replies are low quality" reports a problem, not a check done
    checks = [name for name, words in CHECKS.items() if parse.mentions(text, *words) and name not in issues]
    fields = {
        "source": text or "Not described",
        "sft_examples": sft,
        "dpo_pairs": dpo,
        "quality_checks": checks,
        "eval_split": 0.05 if (sft or dpo or 0) >= 20_000 else 0.1,
        "train_path": "data/train.jsonl",
        "eval_path": "data/eval.jsonl",
    }
    fields.update(inputs.edits)
    reasoning = []
    counts = []
    if fields.get("sft_examples") is not None:
        counts.append(f"{fields['sft_examples']:,} instruction-response examples")
    if fields.get("dpo_pairs") is not None:
        counts.append(f"{fields['dpo_pairs']:,} preference pairs")
    reasoning.append("From your description: " + (", ".join(counts) if counts else "no counts given yet (add them as `sft_examples: N`)") + ".")
    missing = [c for c in CHECKS if c not in fields["quality_checks"]]
    if fields["quality_checks"]:
        reasoning.append("Quality checks already covered: " + ", ".join(fields["quality_checks"]) + ".")
    if missing:
        reasoning.append("Still to plan from the checklist: " + ", ".join(missing) + ".")
    problems = [ISSUE_ACTIONS.get(check, "plan a fix before training").format(words=words, share=_share(text))
                for check, words in issues.items()]
    if problems:
        reasoning.insert(1, "Issues you reported: " + " ".join(problems))
    reasoning.append(f"Hold out {fields['eval_split']:.0%} for validation so overfitting shows during training.")
    notes = understood_notes(stated, "training_data") + below_minimums(fields, approach)
    cited, ids = knowledge_lines(inputs.knowledge)
    if cited:
        reasoning.append("Knowledge consulted: " + "; ".join(cited))
    fmt = {"sft": "instruction-response pairs", "dpo": "prompt + chosen + rejected", "combined": "both formats"}[approach] if approach in ("sft", "dpo", "combined") else "instruction-response pairs"
    return Proposal(
        choice_value="as-described",
        choice=f"{', '.join(counts) or 'Data as described'} ({fmt})",
        fields=fields,
        reasoning=reasoning,
        rationale=rationale_from(reasoning, 2),
        options=[Option(value="as-described", label="Data as described", description="Counts and checks read from your answer")],
        options_considered=["Use existing data as described", "Collect or synthesize more data first"],
        consequences=[f"Data format: {fmt}.", *problems, *[n for n in notes if "below" in n]],
        knowledge_items=ids,
        notes=notes,
    )


SPEC = SectionSpec(
    name="training_data",
    seed_section=5,
    title="Training data preparation",
    ask_id="training_data.description",
    ask_title="Your training data",
    ask_text="Tell me about your training data. How was it collected? What's the quality like?",
    intro=INTRO,
    fields=FIELDS,
    recommend=recommend,
    ask_placeholder="e.g. 12,000 resolved tickets, reviewed by leads, PII redacted",
)
