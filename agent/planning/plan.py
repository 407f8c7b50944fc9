"""One call from the state's decisions to memory, GPU fit, time and cost, with a summary.

`decisions` maps a section name ("base_model", "peft", ...) to that section's fields dict (the
structured part of a Decision), or to a whole Decision dict whose "fields" are used.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.model_catalog import ModelSpec, find_model
from agent.planning import gpu as gpus
from agent.planning.memory import ALLOCATOR_RESERVE, CUDA_CONTEXT_GB, MemoryEstimate, default_optimizer, estimate_memory


def section_fields(decisions: dict[str, Any] | None) -> dict[str, dict]:
    """Section -> fields dict, unwrapping Decision dicts; sections without a dict are left out."""
    out: dict[str, dict] = {}
    for section, value in (decisions or {}).items():
        if isinstance(value, dict):
            inner = value.get("fields")
            out[section] = dict(inner) if isinstance(inner, dict) else dict(value)
    return out


def resolve_model(base: dict | None) -> ModelSpec | None:
    if not base:
        return None
    return find_model(str(base.get("model_id") or "")) or find_model(str(base.get("name") or ""))


def weight_bits_for(peft: dict) -> int:
    """Bits of the frozen or trained weights implied by the PEFT decision."""
    method = peft.get("method", "lora")
    quant = peft.get("quantization", "none")
    if method == "full":
        return 32  # bf16 autocast over fp32 master weights (mixed precision), the robust default
    if quant == "4bit":
        return 4
    if quant == "8bit":
        return 8
    return 4 if method == "qlora" else 16


class StagePlan(BaseModel):
    stage: Literal["sft", "dpo"]
    memory: MemoryEstimate
    time: gpus.TimeEstimate | None = None


class Plan(BaseModel):
    model: str
    params_b: float
    method: str
    weight_bits: int
    approach: str
    optimizer: str
    stages: list[StagePlan]
    memory: MemoryEstimate = Field(description="The stage with the highest peak")
    gpu_class_gb: int
    gpu_count: int
    gpu_card: str
    gpu_source: Literal["infrastructure", "stated", "recommended"]
    fits: bool
    hours: float | None = None
    hours_low: float | None = None
    hours_high: float | None = None
    cost: gpus.CostEstimate | None = None
    cost_options: list[gpus.CostEstimate] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    summary: str


def try_plan(decisions: dict[str, Any], **kwargs: Any) -> Plan | None:
    """`plan`, or None when the decisions are not enough (or not valid enough) to estimate."""
    try:
        return plan(decisions, **kwargs)
    except (ValueError, ArithmeticError, TypeError, KeyError):
        return None


def replicated_gb(est: MemoryEstimate) -> float:
    """Memory each GPU needs when the job is sharded: activations, CUDA context and their reserve."""
    return est.breakdown.activations * (1 + ALLOCATOR_RESERVE) + CUDA_CONTEXT_GB


def _money(x: float) -> str:
    return f"${x:,.0f}" if x >= 10 else f"${x:,.2f}"


METHOD_NAMES = {"full": "full fine-tuning", "lora": "LoRA", "qlora": "QLoRA"}


def _summary(p: Plan) -> str:
    m = p.memory
    parts = [
        f"{p.model} ({p.params_b:g}B) with {METHOD_NAMES.get(p.method, p.method)}"
        f" ({p.weight_bits}-bit weights, {p.optimizer})"
        f" needs about {m.total_gb:.0f} GB of GPU memory at its peak ({', '.join(s.stage.upper() for s in p.stages)}):"
        f" weights {m.breakdown.weights:.1f} GB, adapters/gradients/optimizer"
        f" {m.breakdown.trainable_params + m.breakdown.gradients + m.breakdown.optimizer_states:.1f} GB,"
        f" activations {m.breakdown.activations:.1f} GB, overhead {m.breakdown.overhead:.1f} GB."
    ]
    where = f"{p.gpu_count}x {p.gpu_card}" + {"infrastructure": " (your infrastructure choice)", "stated": " (the GPUs you stated)"}.get(p.gpu_source, "")
    if p.fits:
        parts.append(f"That fits {where}" + (", sharded with FSDP/ZeRO-3." if p.gpu_count > 1 else "."))
    else:
        remedies = "a larger GPU, more GPUs" + (", QLoRA" if p.method != "qlora" else "") + " or a shorter sequence/smaller micro-batch"
        parts.append(f"That does NOT fit {where}; consider {remedies}.")
    if p.hours is not None:
        parts.append(
            f"Training takes roughly {p.hours:.1f} hours of wall-clock time (range {p.hours_low:.1f}-{p.hours_high:.1f})."
        )
    if p.cost is not None and p.cost.usd_per_gpu_hour == 0:
        parts.append(f"{p.cost.platform_name}: no hourly cost (electricity and depreciation not included).")
    elif p.cost is not None:
        c = p.cost
        rng = f" ({_money(c.low_usd)}-{_money(c.high_usd)})" if c.low_usd is not None else ""
        parts.append(
            f"Estimated cost on {c.platform_name}{' (spot)' if c.spot else ''}: {_money(c.total_usd)}{rng}"
            f" at {_money(c.usd_per_gpu_hour)}/GPU-hour, prices as of {c.as_of}."
        )
    elif p.cost_options:
        cheapest = p.cost_options[0]
        parts.append(
            f"Cheapest listed on-demand option: {cheapest.platform_name} {cheapest.card} at about"
            f" {_money(cheapest.total_usd)} (prices as of {cheapest.as_of}, indicative)."
        )
    return " ".join(parts)


def plan(
    decisions: dict[str, Any],
    *,
    optimizer: str | None = None,
    gradient_checkpointing: bool = True,
    prices_path: str | Path | None = None,
    today: date | None = None,
    gpu: gpus.GpuSpec | None = None,
) -> Plan:
    """Memory, fit, time and cost for the decided sections. Needs base_model and peft.

    Where it runs: the infrastructure decision's GPUs, else `gpu` (the GPUs the user stated), else
    the smallest layout that holds the job.
    """
    f = section_fields(decisions)
    base, peft = f.get("base_model"), f.get("peft")
    if not base or not peft:
        raise ValueError("a plan needs the base_model and peft decisions")
    hyper = f.get("hyperparameters") or {}
    data = f.get("training_data") or {}
    infra = f.get("infrastructure") or {}
    approach = (f.get("training_approach") or {}).get("approach", "sft")
    notes: list[str] = []

    spec = resolve_model(base)
    params_b = float(base.get("params_b") or (spec.params_b if spec else 0))
    if params_b <= 0:
        raise ValueError("base_model needs params_b")
    if spec is None:
        notes.append("model not in the catalogue: shape derived from its size")
    method = peft.get("method", "lora")
    bits = weight_bits_for(peft)
    opt = optimizer or default_optimizer(method)
    context = int(base.get("context_length") or (spec.context_length if spec else 2048))
    seq_len = int(hyper.get("max_length") or min(2048, context))
    micro_batch = int(hyper.get("batch_size") or 1)
    if not hyper:
        notes.append(f"hyperparameters not decided yet: assumed sequence length {seq_len}, micro-batch 1")
    epochs = float(hyper.get("num_epochs") or 0) or None

    stage_names = {"sft": ["sft"], "dpo": ["dpo"], "combined": ["sft", "dpo"]}.get(approach, ["sft"])
    stages: list[StagePlan] = []
    for stage in stage_names:
        est = estimate_memory(
            params_b,
            method,
            bits,
            lora_rank=int(peft.get("r") or 16),
            target_modules=list(peft.get("target_modules") or []) or None,
            seq_len=seq_len,
            micro_batch=micro_batch,
            gradient_checkpointing=gradient_checkpointing,
            optimizer=opt,
            shape=spec,
            dpo=stage == "dpo",
            gradient_accumulation_steps=int(hyper.get("gradient_accumulation_steps") or 1),
        )
        stages.append(StagePlan(stage=stage, memory=est))
    peak = max(stages, key=lambda s: s.memory.total_gb).memory
    rep = replicated_gb(peak)

    # Where it runs: the decided infrastructure if we can read its GPU, else a recommendation.
    stated = gpus.parse_gpu(str(infra.get("instance_type") or ""), infra.get("gpu_count")) if infra else None
    source = "infrastructure"
    if infra and stated is None:
        notes.append(f"could not read a GPU from instance type {infra.get('instance_type')!r}: recommending one")
    if stated is None and gpu is not None:
        stated, source = gpu, "stated"
    if stated:
        cls = gpus.gpu_class_for(stated.memory_gb)
        count, card_name = stated.count, stated.card
        fits = gpus.fits_in(peak.total_gb, stated.memory_gb, stated.count, rep)
        tflops_card = stated.card if stated.bf16_tflops else None
    else:
        fit = gpus.fit_gpus(peak.total_gb, rep)
        cls, count = fit or (max(gpus.GPU_CLASSES), 1)
        card_name = gpus.reference_card(cls)["name"]
        source, fits, tflops_card = "recommended", fit is not None, card_name
        if fit is None:
            notes.append(f"no GPU holds the {rep:.0f} GB every GPU needs: shorten the sequence or the micro-batch")
    if count > 1:
        notes.append(gpus.SHARDING_NOTE)

    hours = low = high = None
    if epochs and data:
        counts = {"sft": data.get("sft_examples"), "dpo": data.get("dpo_pairs")}
        if all(counts[s.stage] for s in stages):
            hours = low = high = 0.0
            for s in stages:
                t = gpus.estimate_time(
                    int(counts[s.stage]), seq_len, epochs, params_b if not spec or not spec.active_params_b else spec.active_params_b,
                    method, cls, count, card_name=tflops_card, gradient_checkpointing=gradient_checkpointing,
                    dpo=s.stage == "dpo", reference_free=bool(hyper.get("reference_free")),
                    micro_batch=micro_batch, shape=spec,
                )
                s.time = t
                hours, low, high = hours + t.hours, low + t.low_hours, high + t.high_hours
        else:
            notes.append("training time needs the example / pair counts for every stage")
    else:
        notes.append("training time needs the training data and the number of epochs")

    cost, options = None, []
    if hours is not None:
        if infra.get("platform"):
            try:
                cost = gpus.estimate_cost(hours, cls, count, str(infra["platform"]), bool(infra.get("spot_instances")),
                                          prices_path=prices_path, hours_range=(low, high), today=today)
            except ValueError as exc:
                notes.append(str(exc))
        if cost is None:
            prices = gpus.load_prices(prices_path)
            for key in prices["platforms"]:
                if key == "local":
                    continue
                try:
                    options.append(gpus.estimate_cost(hours, cls, count, key, False, prices=prices,
                                                      hours_range=(low, high), today=today))
                except ValueError:
                    continue
            options.sort(key=lambda c: c.total_usd)

    p = Plan(
        model=(spec.name if spec else str(base.get("name") or base.get("model_id"))),
        params_b=params_b,
        method=method,
        weight_bits=bits,
        approach=approach,
        optimizer=opt,
        stages=stages,
        memory=peak,
        gpu_class_gb=cls,
        gpu_count=count,
        gpu_card=card_name,
        gpu_source=source,
        fits=fits,
        hours=None if hours is None else round(hours, 2),
        hours_low=None if low is None else round(low, 2),
        hours_high=None if high is None else round(high, 2),
        cost=cost,
        cost_options=options,
        notes=notes,
        summary="",
    )
    p.summary = _summary(p)
    return p
