"""Section 7: hyperparameter configuration (tp-005)."""

from __future__ import annotations

from agent.interview import FormField
from agent.interview import Option
from agent.model_catalog import find_model
from agent.sections import parse
from agent.sections.base import Proposal, SectionInputs, SectionSpec, knowledge_lines, rationale_from

INTRO = """**A. Key Hyperparameters** (ranges evolve with research)

| Parameter | Typical Range | Guidance |
|-----------|---------------|----------|
| **Learning Rate** | 1e-5 to 2e-4 (SFT) | Lower for larger models; LoRA needs about 10x the full fine-tuning rate |
| **Epochs** | 1-5 | 2-5 often optimal; watch for overfitting |
| **Batch Size** | 4-32 | Limited by memory, use gradient accumulation |
| **Warmup** | 3-10% of steps | Stabilizes early training |

> Too few epochs -> underfitting. Too many epochs -> overfitting (model memorizes training data).
> Monitor validation performance and implement early stopping.

**B. DPO (if applicable)**: beta controls the KL penalty (TRL and the DPO paper: 0.1; Zephyr: 0.01);
a reference model is needed unless a reference-free variant is used.

**C. Monitoring**: training/validation loss curves, gradient norms, early stopping on validation.
"""

FIELDS = [
    FormField(name="learning_rate", label="Learning rate", type="number"),
    FormField(name="batch_size", label="Micro-batch size", type="integer"),
    FormField(name="gradient_accumulation_steps", label="Gradient accumulation", type="integer"),
    FormField(name="num_epochs", label="Epochs", type="number"),
    FormField(name="warmup_ratio", label="Warmup ratio", type="number"),
    FormField(name="weight_decay", label="Weight decay", type="number"),
    FormField(name="max_length", label="Max sequence length", type="integer"),
    FormField(name="dpo_beta", label="DPO beta", type="number", required=False),
    FormField(name="reference_free", label="Reference-free DPO", type="boolean", required=False),
    FormField(name="budget", label="Training budget", type="string", required=False),
]


def recommend(inputs: SectionInputs) -> Proposal:
    d = inputs.decisions
    params_b = float(d.get("base_model", {}).get("params_b") or 7)
    spec = find_model(d.get("base_model", {}).get("model_id", ""))
    ctx_len = int(d.get("base_model", {}).get("context_length") or (spec.context_length if spec else 4096))
    method = d.get("peft", {}).get("method", "lora")
    approach = d.get("training_approach", {}).get("approach", "sft")
    data = d.get("training_data", {})
    n = max(data.get("sft_examples") or 0, data.get("dpo_pairs") or 0)
    reasoning: list[str] = []

    if approach == "dpo":
        lr = 5e-6 if method != "full" else 5e-7
        reasoning.append(
            f"DPO-only: learning rate {lr:g} (TRL and the DPO paper use 1e-6 for full training, Zephyr 5e-7; "
            "LoRA-DPO about 5e-6)."
        )
    elif method == "full":
        lr = 2e-5 if params_b < 30 else 1e-5
        reasoning.append(f"Full fine-tuning: {lr:g} (TRL's SFT default is 2e-5; lower for larger models).")
    else:
        lr = 2e-4 if params_b < 30 else 1e-4
        reasoning.append(
            f"{ {'lora': 'LoRA', 'qlora': 'QLoRA'}.get(method, method)} at {params_b:g}B: {lr:g} (QLoRA paper: 2e-4 up to 13B, 1e-4 for 33B/65B; torchtune uses 3e-4, "
            "LLaMA-Factory 1e-4)."
        )
    if n >= 50_000:
        epochs = 1
    elif n >= 5_000:
        epochs = 2
    else:
        epochs = 3
    if approach == "dpo":
        epochs = 1
    reasoning.append(
        f"Epochs: {epochs} for {n:,} examples (sources disagree: Unsloth 1-3, the seed 2-5; multi-epoch on instruction data "
        "often overfits): keep early stopping on the validation loss."
    )
    micro = 1 if params_b >= 30 else (2 if method == "qlora" else 4)
    target_effective = 16 if approach != "dpo" else 32
    accum = max(1, target_effective // micro)
    reasoning.append(f"Batch: micro-batch {micro} x {accum} accumulation steps = effective {micro * accum} per device.")
    said = " ".join([inputs.context, *inputs.earlier.values(), *inputs.project.get("constraints", [])])
    needed = parse.context_tokens(said)
    if needed:
        max_len = min(1 << (needed - 1).bit_length(), ctx_len)  # next power of two, within the window
        reasoning.append(f"Max length {max_len:,} tokens: you expect inputs of about {needed:,} tokens (the model's window is {ctx_len:,}).")
    else:
        max_len = min(2048, ctx_len)
        reasoning.append(f"Max length {max_len:,} tokens (within the model's {ctx_len:,}-token window); measure your data's length distribution.")
    budget_h = parse.hours(inputs.context)
    budget_usd = parse.money(inputs.context)
    if budget_h or budget_usd:
        reasoning.append(
            "Budget noted: " + ", ".join(x for x in [f"{budget_h:g} GPU hours" if budget_h else "", f"${budget_usd:,.0f}" if budget_usd else ""] if x)
            + "; the infrastructure section checks the plan against it."
        )
    fields = {
        "learning_rate": lr,
        "batch_size": micro,
        "gradient_accumulation_steps": accum,
        "num_epochs": epochs,
        "warmup_ratio": 0.03 if approach != "dpo" else 0.1,
        "weight_decay": 0.0 if method != "full" else 0.01,
        "max_length": max_len,
        "dpo_beta": 0.1 if approach in ("dpo", "combined") else None,
        "reference_free": False if approach in ("dpo", "combined") else None,
        "budget": inputs.context,
    }
    if approach in ("dpo", "combined"):
        reasoning.append("DPO beta 0.1 with a reference model (TRL default, DPO paper); lower beta (0.01) lets the policy move further.")
    fields.update(inputs.edits)
    cited, ids = knowledge_lines(inputs.knowledge)
    if cited:
        reasoning.append("Knowledge consulted: " + "; ".join(cited))
    choice = (
        f"lr {fields['learning_rate']:g}, batch {fields['batch_size']}x{fields['gradient_accumulation_steps']}, "
        f"{fields['num_epochs']:g} epochs, max length {fields['max_length']}"
    )
    return Proposal(
        choice_value="proposed",
        choice=choice,
        fields=fields,
        reasoning=reasoning,
        rationale=rationale_from(reasoning, 2),
        options=[Option(value="proposed", label="Proposed values", description=choice)],
        options_considered=["Published defaults for the method and size", "Values tuned to the data volume and budget"],
        consequences=["Track training and validation loss and gradient norms; stop early when validation loss rises."],
        knowledge_items=ids,
    )


SPEC = SectionSpec(
    name="hyperparameters",
    seed_section=7,
    title="Hyperparameter configuration",
    ask_id="hyperparameters.budget",
    ask_title="Training budget",
    ask_text="What's your training budget (time, compute)? This affects hyperparameter choices.",
    intro=INTRO,
    fields=FIELDS,
    recommend=recommend,
    ask_placeholder="e.g. one overnight run, about 12 GPU hours",
)
