"""Section 8: training infrastructure and experiment tracking (tp-006)."""

from __future__ import annotations

import re

from agent.interview import FormField, Option
from agent.planning import gpu as gpus
from agent.planning.constraints import gpu_text, read_constraints, source_name
from agent.planning.fit import fits_gpu, gpu_hours, tradeoffs, within
from agent.planning.plan import try_plan
from agent.planning import reading as parse
from agent.sections.base import Proposal, SectionInputs, SectionSpec, knowledge_lines, understood_notes

INTRO = """**A. Compute Options**

| Platform | Cost Model | Best For |
|----------|------------|----------|
| **Local GPU** | CapEx | Iteration, privacy |
| **Cloud GPU** | Per-hour | Scale, flexibility |
| **SageMaker** | Managed | Enterprise, integration |
| **Lambda Labs** | Simple pricing | Cost-effective |
| **Vast.ai** | Marketplace | Budget training |

The knowledge base's reference design uses AWS SageMaker: managed training jobs, spot instances for
cost savings, integration with the feature pipeline.

**B. Experiment Tracking**

| Tool | Features | Integration |
|------|----------|-------------|
| **Comet ML** | Full MLOps | Used in the knowledge base's reference design |
| **Weights & Biases** | Popular | Good ecosystem |
| **MLflow** | Open source | Self-hosted |
"""

PLATFORMS = {
    "local": ("Local GPU", "CapEx; iteration and privacy"),
    "sagemaker": ("AWS SageMaker", "Managed training jobs, spot instances"),
    "cloud": ("Cloud GPU", "Per-hour VMs on any cloud"),
    "lambda": ("Lambda Labs", "Simple per-hour pricing"),
    "vast": ("Vast.ai", "Marketplace, budget training"),
}
TRACKERS = {"comet": "Comet ML", "wandb": "Weights & Biases", "mlflow": "MLflow"}

FIELDS = [
    FormField(name="platform", label="Platform", type="string"),
    FormField(name="instance_type", label="Instance type", type="string"),
    FormField(name="gpu_count", label="GPUs", type="integer"),
    FormField(name="spot_instances", label="Spot instances", type="boolean"),
    FormField(name="tracking_tool", label="Experiment tracking", type="string"),
    FormField(name="project", label="Tracking project", type="string"),
    FormField(name="experiment", label="Experiment name", type="string"),
    FormField(name="estimated_cost", label="Estimated cost", type="string", required=False),
]

_PRIVATE = ("on prem", "on-prem", "on premises", "no data leaves", "air-gapped", "offline", "local", "own gpu", "our gpu", "workstation", "vpc")


def _platform(text: str, constraints: str) -> tuple[str, str]:
    low = text.lower()
    for key, words in (("sagemaker", ("sagemaker",)), ("lambda", ("lambda",)), ("vast", ("vast",)),
                       ("cloud", ("gcp", "azure", "aws", "cloud", "runpod", "coreweave")), ("local", _PRIVATE)):
        if any(w in low for w in words):
            return key, "you asked for it"
    if parse.mentions(constraints, *_PRIVATE):
        return "local", "the project's constraints keep data and training on your own hardware"
    return "sagemaker", "no preference stated; the knowledge base's reference design uses it (managed jobs, spot instances)"


def _tracker(text: str, platform: str) -> tuple[str, str]:
    low = text.lower()
    if "wandb" in low or "weights" in low:
        return "wandb", "you asked for it"
    if "mlflow" in low:
        return "mlflow", "you asked for it"
    if "comet" in low:
        return "comet", "you asked for it"
    if platform == "local":
        return "mlflow", "self-hosted, so runs and data stay on your network"
    return "comet", "the knowledge base's reference design uses it"


def _instance(key: str, gpu: gpus.GpuSpec | None, first) -> tuple[str, int]:
    """An instance type for the platform: the GPUs the user has or named, or the smallest class that fits."""
    if gpu is not None:
        return (gpu.instance or gpu.card), gpu.count
    if first is None:
        return "to be sized", 1
    platform = gpus.match_platform(PLATFORMS[key][0])
    offer = (gpus.load_prices()["platforms"].get(platform or "", {}).get("gpus") or {}).get(first.gpu_class_gb)
    if offer and offer.get("instance"):
        return f"{offer['instance']} ({offer['card']})", first.gpu_count
    if offer:  # marketplaces and owned hardware list cards, not instance types
        return offer["card"], first.gpu_count
    return first.gpu_card, first.gpu_count


def _cost_line(sized) -> str:
    if sized is None:
        return ""
    if sized.cost is not None:
        c = sized.cost
        if c.usd_per_gpu_hour == 0:
            return f"No hourly cost on {c.platform_name} (about {sized.hours:.1f} h of GPU time)"
        return f"about ${c.total_usd:,.0f} ({sized.hours:.1f} h at ${c.usd_per_gpu_hour:,.2f}/GPU-hour, prices as of {c.as_of})"
    if sized.cost_options:
        c = sized.cost_options[0]
        return f"from about ${c.total_usd:,.0f} ({c.platform_name}, prices as of {c.as_of})"
    return "needs data counts and epochs"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "project"


def _where(key: str, stated, inputs: SectionInputs) -> tuple[gpus.GpuSpec | None, str]:
    """The GPUs to plan on: named in this answer, or the user's own GPUs when training locally."""
    if stated.gpu is None:
        return None, ""
    if stated.gpu.source == "infrastructure" or key == "local":
        return stated.gpu_spec, source_name(stated.gpu.source)
    return None, ""


def recommend(inputs: SectionInputs) -> Proposal:
    constraints = " ".join(inputs.project.get("constraints", []))
    key, why_platform = _platform(inputs.context, constraints)
    if inputs.choice in PLATFORMS:
        key, why_platform = inputs.choice, "your choice"
    tracker, why_tracker = _tracker(inputs.context, key)
    stated = read_constraints({**inputs.earlier, "infrastructure": inputs.context}, inputs.project, current="infrastructure")
    decided = {"base_model", "peft"} <= set(inputs.decisions)
    first = try_plan(inputs.decisions) if decided else None
    gpu, gpu_from = _where(key, stated, inputs)
    instance, count = _instance(key, gpu, first)
    spot = key == "sagemaker" or (key == "cloud" and parse.mentions(inputs.context, "spot", "cheap", "budget", "cost"))
    name = inputs.project.get("name", "project")
    approach = inputs.decisions.get("training_approach", {}).get("approach", "sft")
    fields = {
        "platform": PLATFORMS[key][0],
        "instance_type": instance,
        "gpu_count": count,
        "spot_instances": bool(spot),
        "tracking_tool": TRACKERS[tracker],
        "project": _slug(name),
        "experiment": f"{_slug(inputs.decisions.get('base_model', {}).get('model_id', 'model'))}-{approach}-v1",
        "estimated_cost": "",
    }
    fields.update(inputs.edits)
    sized = try_plan({**inputs.decisions, "infrastructure": fields}) if decided else None
    if "estimated_cost" not in inputs.edits:
        fields["estimated_cost"] = _cost_line(sized)
    reasoning = [
        f"Platform: {fields['platform']}, because {why_platform}.",
        f"Sizing: {sized.summary}" if sized else "Sizing: decide the base model and PEFT method first for an estimate.",
        f"Tracking: {fields['tracking_tool']}, because {why_tracker}.",
    ]
    if gpu is not None:
        reasoning.insert(1, f"GPUs: {gpu_text(gpu)}, from {gpu_from}.")
    notes = understood_notes(stated, "infrastructure")
    if sized is not None:
        where = gpus.parse_gpu(str(fields["instance_type"]), fields.get("gpu_count"))
        budget_h = float(stated.budget_hours.value) if stated.budget_hours else None
        budget_usd = float(stated.budget_usd.value) if stated.budget_usd else None
        ok_memory = fits_gpu(sized, where) if where is not None else sized.fits
        ok_budget = within(sized, budget_h, budget_usd)
        if budget_h and sized.hours is not None:
            reasoning.append(f"Time: about {gpu_hours(sized):.1f} GPU hours, {'within' if ok_budget else 'OVER'} the {budget_h:g} "
                             f"GPU hours from {source_name(stated.budget_hours.source)}.")
        if ok_memory is False or ok_budget is False:
            reasoning.append("This plan does not fit what you stated; a constraint has to give (see the notes).")
            notes += tradeoffs({**inputs.decisions, "infrastructure": fields}, where, budget_h, budget_usd)
    if fields["spot_instances"]:
        reasoning.append("Spot instances cut cost; checkpoint often (every few hundred steps) so an interruption loses little.")
    cited, ids = knowledge_lines(inputs.knowledge)
    if cited:
        reasoning.append("Knowledge consulted: " + "; ".join(cited))
    return Proposal(
        choice_value=key,
        choice=f"{fields['platform']} ({fields['gpu_count']}x {fields['instance_type']}) with {fields['tracking_tool']}",
        fields=fields,
        reasoning=reasoning,
        rationale=f"{reasoning[0]} {next(r for r in reasoning if r.startswith('Tracking:'))}",
        options=[Option(value=k, label=v[0], description=v[1]) for k, v in PLATFORMS.items()],
        options_considered=[v[0] for v in PLATFORMS.values()],
        consequences=[f"Estimated cost: {fields['estimated_cost'] or 'not estimated'}.", f"Runs are logged to {fields['tracking_tool']} project '{fields['project']}'."],
        knowledge_items=ids,
        notes=notes,
    )


SPEC = SectionSpec(
    name="infrastructure",
    seed_section=8,
    title="Training infrastructure",
    ask_id="infrastructure.preference",
    ask_title="Infrastructure and tracking",
    ask_text="What's your preference for training infrastructure and experiment tracking?",
    intro=INTRO,
    fields=FIELDS,
    recommend=recommend,
    ask_placeholder="e.g. our own GPU and MLflow",
)
