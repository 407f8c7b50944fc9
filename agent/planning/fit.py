"""Reconcile a plan with the stated GPUs and budget: adjust what may change, else name what has to give.

Every function here returns a result; none raises. A plan "fits" a GPU when its peak memory, sharded
over the stated count, stays under HEADROOM of each card (the rest is left for allocator spikes and
longer-than-usual batches). Time is checked against a stated GPU-hour budget, cost against a stated
money budget.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from agent.model_catalog import find_model, load_catalog
from agent.planning import gpu as gpus
from agent.planning.plan import Plan, replicated_gb, section_fields, try_plan

HEADROOM = 0.9  # plan to use at most 90% of each GPU's memory
MIN_LENGTH = 512  # shorter than this, most chat and instruction examples are cut
LARGER_CARDS = ("L40S", "A100 80GB", "H100 80GB", "H200")


class Fitting(BaseModel):
    hyper: dict[str, Any]
    plan: Plan | None = None
    fits: bool | None = Field(None, description="None when no GPU is stated")
    within_budget: bool | None = Field(None, description="None when no budget or no time estimate")
    steps: list[str] = Field(default_factory=list, description="What was changed to fit")
    before: str = Field("", description="The plan's figures before the changes")
    tradeoffs: list[str] = Field(default_factory=list, description="When it still does not fit: what has to give")


def fits_gpu(p: Plan | None, gpu: gpus.GpuSpec | None, headroom: float = HEADROOM) -> bool | None:
    if p is None or gpu is None:
        return None
    return gpus.fits_in(p.memory.total_gb, gpu.memory_gb * headroom, gpu.count, replicated_gb(p.memory))


def hours_of(p: Plan | None) -> float | None:
    return None if p is None else p.hours


def within(p: Plan | None, budget_hours: float | None, budget_usd: float | None = None) -> bool | None:
    if p is None or p.hours is None or (not budget_hours and not budget_usd):
        return None
    ok = True
    if budget_hours:
        ok = ok and p.hours * max(1, p.gpu_count) <= budget_hours * 1.0001
    if budget_usd and p.cost is not None:
        ok = ok and p.cost.total_usd <= budget_usd
    return ok


def gpu_hours(p: Plan) -> float:
    """GPU hours of the plan: wall-clock hours times the GPUs used."""
    return (p.hours or 0.0) * max(1, p.gpu_count)


def figure(p: Plan | None) -> str:
    if p is None:
        return "not estimable"
    text = f"peak {p.memory.total_gb:.1f} GB"
    if p.hours is not None:
        text += f", {gpu_hours(p):.1f} GPU hours"
    return text


def _with(decisions: dict[str, Any], section: str, **changes: Any) -> dict[str, Any]:
    f = section_fields(decisions)
    return {**f, section: {**(f.get(section) or {}), **changes}}


def _plan(decisions: dict[str, Any], gpu: gpus.GpuSpec | None) -> Plan | None:
    return try_plan(decisions, gpu=gpu)


def _int(v: Any, default: int) -> int:
    try:
        return max(1, int(v))
    except (TypeError, ValueError, OverflowError):
        return default


def fit_hyperparameters(
    decisions: dict[str, Any],
    hyper: dict[str, Any],
    gpu: gpus.GpuSpec | None,
    budget_hours: float | None = None,
    budget_usd: float | None = None,
    fixed: set[str] | frozenset[str] = frozenset(),
    min_length: int = MIN_LENGTH,
    stated_length: int | None = None,
) -> Fitting:
    """Hyperparameters adjusted to fit `gpu` and the budget; fields in `fixed` (the user's edits) are kept.

    Memory first (micro-batch down to 1 with accumulation raised to keep the effective batch, then a
    shorter max_length, never below `min_length`), then time (one epoch, then a shorter max_length).
    """
    h = dict(hyper)
    base = section_fields(decisions)

    def current() -> Plan | None:
        return _plan({**base, "hyperparameters": h}, gpu)

    p = current()
    start = figure(p)
    changed: dict[str, str] = {}  # field -> what it became, in the order first changed
    floor = max(16, min(int(min_length), _int(h.get("max_length"), MIN_LENGTH)))

    def shorten() -> bool:
        """Halve max_length, not below the floor nor when the user set it; False when it cannot."""
        length = _int(h.get("max_length"), 2048)
        if length <= floor or "max_length" in fixed:
            return False
        h["max_length"] = max(floor, length // 2)
        changed["length"] = f"max length {h['max_length']:,} tokens (longer examples are truncated)"
        return True

    for _ in range(24):  # each step halves something: bounded
        if p is None or gpu is None or fits_gpu(p, gpu):
            break
        micro, accum = _int(h.get("batch_size"), 1), _int(h.get("gradient_accumulation_steps"), 1)
        if micro > 1 and "batch_size" not in fixed:
            h["batch_size"] = micro // 2
            if "gradient_accumulation_steps" not in fixed:
                h["gradient_accumulation_steps"] = min(4096, accum * 2)
            p = current()
            changed["batch"] = f"micro-batch {h['batch_size']} x {h['gradient_accumulation_steps']} accumulation steps (effective batch kept)"
        elif shorten():
            p = current()
        else:
            break
    for _ in range(24):
        if p is None or not budget_hours or p.hours is None or gpu_hours(p) <= budget_hours:
            break
        epochs = h.get("num_epochs")
        if isinstance(epochs, (int, float)) and epochs > 1 and "num_epochs" not in fixed:
            h["num_epochs"] = 1
            p = current()
            changed["epochs"] = "1 epoch"
        elif shorten():
            p = current()
        else:
            break
    steps = list(changed.values())
    out = Fitting(hyper=h, plan=p, fits=fits_gpu(p, gpu), within_budget=within(p, budget_hours, budget_usd), steps=steps,
                  before=start if steps else "")
    if out.fits is False or out.within_budget is False:
        out.tradeoffs = tradeoffs({**base, "hyperparameters": h}, gpu, budget_hours, budget_usd, stated_length or 0)
    return out


def _model_fields(key: str) -> dict[str, Any] | None:
    m = find_model(key)
    if m is None:
        return None
    return {"model_id": m.key, "name": m.hf_repo, "params_b": m.params_b, "context_length": m.context_length, "family": m.family, "license": m.license}


def tradeoffs(
    decisions: dict[str, Any],
    gpu: gpus.GpuSpec | None,
    budget_hours: float | None = None,
    budget_usd: float | None = None,
    min_length: int = 0,
) -> list[str]:
    """The smallest changes that would make the plan fit, each with its figures; the binding constraint first."""
    f = section_fields(decisions)
    p = _plan(f, gpu)
    if p is None:
        return []
    out: list[str] = []
    mem_ok = fits_gpu(p, gpu) is not False
    time_ok = not budget_hours or p.hours is None or gpu_hours(p) <= budget_hours
    if not mem_ok and gpu is not None:
        out.append(f"Memory is the binding constraint: {figure(p)} against {gpu.count} x {gpu.card} "
                   f"({gpu.memory_gb * HEADROOM:.1f} GB usable each at {HEADROOM:.0%}).")
    if not time_ok:
        out.append(f"Time is the binding constraint: about {gpu_hours(p):.1f} GPU hours against a budget of {budget_hours:g}.")
    if mem_ok and time_ok:
        return out

    def ok(q: Plan | None, g: gpus.GpuSpec | None = gpu) -> bool:
        if q is None:
            return False
        return fits_gpu(q, g) is not False and (not budget_hours or q.hours is None or gpu_hours(q) <= budget_hours)

    def offer(label: str, q: Plan | None, g: gpus.GpuSpec | None = gpu) -> None:
        if q is not None:
            out.append(f"{label}: {figure(q)}" + ("" if ok(q, g) else " (not enough alone)"))

    hyper = f.get("hyperparameters") or {}
    micro = _int(hyper.get("batch_size"), 1)
    first = ""  # the cheapest change every other option builds on
    if micro > 1:
        accum = _int(hyper.get("gradient_accumulation_steps"), 1) * micro
        f = _with(f, "hyperparameters", batch_size=1, gradient_accumulation_steps=min(4096, accum))
        q = _plan(f, gpu)
        offer(f"Micro-batch 1 with {min(4096, accum)} accumulation steps (same effective batch)", q)
        if q is not None and ok(q):
            return out
        first = "micro-batch 1 and "
    length = _int(hyper.get("max_length"), 2048)
    shorter = length // 2
    while shorter >= 256:
        q = _plan(_with(f, "hyperparameters", max_length=shorter), gpu)
        if ok(q) or shorter // 2 < 256:
            cut = " (below the lengths you stated: those examples are truncated)" if shorter < min_length else " (longer examples are truncated)"
            offer(f"{first.capitalize() or ''}{'max' if first else 'Max'} length {shorter:,} tokens{cut}", q)
            break
        shorter //= 2
    epochs = hyper.get("num_epochs")
    if not time_ok and isinstance(epochs, (int, float)) and epochs > 1:
        offer("One epoch", _plan(_with(f, "hyperparameters", num_epochs=1), gpu))
    if not time_ok and p.hours_low is not None:
        out.append(f"Packing short examples into full sequences (if examples average 40% of max_length): about "
                   f"{p.hours_low * max(1, p.gpu_count):.1f} GPU hours")
    peft = f.get("peft") or {}
    if not mem_ok and peft.get("method") != "qlora":
        changes = {"method": "qlora", "quantization": "4bit", "r": peft.get("r") or 16, "alpha": peft.get("alpha") or 32}
        offer(f"{first.capitalize()}QLoRA (4-bit base)" if first else "QLoRA (4-bit base)", _plan(_with(f, "peft", **changes), gpu))
    if not time_ok and peft.get("method") == "qlora":
        q = _plan(_with(f, "peft", method="lora", quantization="none"), gpu)
        if q is not None and fits_gpu(q, gpu) is not False:
            offer("LoRA on a 16-bit base (faster than QLoRA, and it fits)", q)
    data = f.get("training_data") or {}
    n = data.get("sft_examples") or data.get("dpo_pairs")
    if not time_ok and n and p.hours and budget_hours / gpu_hours(p) >= 0.05:
        share = budget_hours / gpu_hours(p)
        out.append(f"Train on a subset of about {int(n * share):,} examples ({share:.0%}) to stay within {budget_hours:g} GPU hours")
    base = f.get("base_model") or {}
    params = float(base.get("params_b") or 0)
    # Same licence (a constraint may have chosen it), the same family first.
    smaller = sorted((m for m in load_catalog() if 0 < m.params_b < params and m.family != "gpt2"
                      and (m.license == base.get("license") or m.family == base.get("family"))),
                     key=lambda m: (m.family != base.get("family"), -m.params_b))
    for m in smaller[:8]:
        fields = _model_fields(m.key)
        q = _plan({**f, "base_model": fields}, gpu) if fields else None
        if ok(q):
            offer(f"{first.capitalize()}a smaller model, {m.name} ({m.params_b:g}B)" if first else f"A smaller model, {m.name} ({m.params_b:g}B)", q)
            break
    if gpu is not None:
        for n_gpus in (2, 4, 8):
            if n_gpus <= gpu.count:
                continue
            g = gpu.model_copy(update={"count": n_gpus})
            q = _plan(f, g)
            if ok(q, g):
                offer(f"{first.capitalize()}{n_gpus} x {gpu.card} (sharded)", q, g)
                break
        for name in LARGER_CARDS:
            c = gpus.card(name)
            if not c or c["memory_gb"] <= gpu.memory_gb and (c.get("bf16_tflops") or 0) <= (gpu.bf16_tflops or 0):
                continue
            g = gpus.GpuSpec(card=c["name"], memory_gb=c["memory_gb"], count=1, bf16_tflops=c.get("bf16_tflops"))
            q = _plan(f, g)
            if ok(q, g):
                offer(f"{first.capitalize()}one {c['name']} instead" if first else f"One {c['name']} instead", q, g)
                break
    return out
