"""GPU sizing, training time and cost.

- `fit_gpus`: the smallest GPU class that holds a job, or a sharded multi-GPU layout.
- `parse_gpu`: GPUs named in free text or a cloud instance type, from the catalogue in data/gpus.yaml.
- `throughput` / `estimate_time`: tokens/s from training FLOPs, a card's BF16 peak, achievable
  utilisation and the host's launch floor, measured on an H200 (reference/gpu-measured.csv).
- `estimate_cost`: hours x GPUs x an hourly price from a dated price file.

Memory totals are in decimal GB (see memory.py) and are compared with a card's nominal size
("80 GB"). Cards hold about that many GiB (an 80 GB card ~ 85.9 decimal GB), so the comparison
keeps ~7% headroom for the memory the driver and ECC reserve.
"""

from __future__ import annotations

import os
import re
from datetime import date
from functools import lru_cache
from importlib import resources
from pathlib import Path
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, Field

from agent import yamlio
from agent.planning.memory import CUDA_CONTEXT_GB
from agent.planning.shapes import derive_shape, module_inputs, shape_from

GPU_CLASSES: tuple[int, ...] = (24, 40, 48, 80, 141)
MULTI_GPU_CLASS = 80  # multi-GPU nodes are most commonly rented as 8x A100/H100 80 GB
PRICES_ENV = "TRAINING_PIPELINE_GPU_PRICES"

SHARDING_NOTE = (
    "Multi-GPU counts assume fully sharded data parallelism (FSDP or DeepSpeed ZeRO-3): weights, "
    "gradients and optimizer state are split across GPUs, while activations and the CUDA context "
    "are needed on every GPU. Counts are rounded to 1, 2, 4, 8, then whole 8-GPU nodes."
)

# Throughput model (see `throughput`). Figures measured on an H200 with the stack in memory.STACK
# (reference/gpu-measured.csv): the 16K-token QLoRA step there reaches 41% of the dense BF16 peak;
# small steps are bound by the host launching kernels, about 0.8 ms per adapted linear-layer call
# for QLoRA (bitsandbytes dequantization + peft's Python), less for LoRA and plain layers.
ACHIEVABLE_MFU = 0.40  # share of the datasheet dense BF16 peak that training matmuls reach end to end
HOST_S_PER_LINEAR_CALL = {"qlora": 0.8e-3, "lora": 0.3e-3, "full": 0.05e-3}
STEP_OVERHEAD_S = 0.1  # per optimizer step: collation, metric synchronisation, optimizer launch
DEQUANT_BYTES_PER_PARAM = 4.5  # read 4-bit codes, write and read back a bf16 copy, per pass
MULTI_GPU_EFFICIENCY = 0.9  # communication overhead when sharding across GPUs

THROUGHPUT_ASSUMPTIONS = (
    "Training FLOPs per token: full fine-tuning 6N (forward 2N, backward 4N); LoRA/QLoRA 4N "
    "(frozen weights need input gradients but no weight gradients); gradient checkpointing adds "
    "a forward (2N); DPO adds the reference forward (2N) on chosen and rejected sequences; causal "
    "attention adds 2 x seq_len x attention width per layer and pass. N counts the matmul "
    "parameters (active ones for mixture-of-experts). QLoRA also moves each 4-bit weight through a "
    "bf16 copy per pass (memory bandwidth). A step takes the larger of GPU time and host launch "
    "time, plus a fixed step overhead; every example is assumed to fill the sequence length."
)


# ---------------------------------------------------------------- cards and instances
@lru_cache(maxsize=1)
def _gpu_data() -> dict:
    text = resources.files("agent.planning").joinpath("data", "gpus.yaml").read_text(encoding="utf-8")
    return yamlio.load(text)


def card(name: str) -> dict | None:
    """A card's entry (name, memory_gb, bf16_tflops, source) by exact name, case-insensitive."""
    for c in _gpu_data()["cards"]:
        if c["name"].lower() == (name or "").strip().lower():
            return c
    return None


def reference_card(gpu_class: int) -> dict:
    return card(_gpu_data()["reference_card"][int(gpu_class)])


def class_examples(gpu_class: int) -> list[str]:
    return list(_gpu_data()["classes"].get(int(gpu_class), []))


class GpuSpec(BaseModel):
    card: str
    memory_gb: float
    count: int
    bf16_tflops: float | None = None
    instance: str | None = None
    memory_bw_gbs: float | None = Field(None, description="Memory bandwidth per GPU, GB/s")

    @property
    def label(self) -> str:
        return f"{self.count}x {self.card}" + (f" ({self.instance})" if self.instance else "")


_WORD_COUNTS = {"one": 1, "single": 1, "a pair of": 2, "pair of": 2, "couple of": 2, "two": 2, "dual": 2, "twin": 2,
                "three": 3, "four": 4, "quad": 4, "six": 6, "eight": 8, "sixteen": 16}
_CARD_PREFIX = r"(?:nvidia\s+)?(?:geforce\s+)?(?:rtx\s*|tesla\s*|quadro\s*)?"


_COUNT_PATTERNS = (
    r"(?:^|[\s(,])(\d+)\s*[x×*]\s*(?=[a-z]|\d+(?:\.\d+)?\s*gi?b)",  # "2x A100", "8xH100", "2 x 24GB" (not "g5.2xlarge")
    r"(?:[\d)]|\s)[x×*]\s*(\d+)\b(?!\s*gi?b)",  # "A100 x2", "RTX 3090 x 2" (not the x of "rtx")
    # "4 GPUs", not "10 GPU hours" (a budget)
    r"\b(\d+)\s+(?:gpus?|cards?|nodes? of)\b(?![\s-]*(?:hours?|hrs?|h\b|days?|minutes?|mins?|weeks?))",
    rf"(?:^|\s)(\d+)\s+{_CARD_PREFIX}[a-z]*\d",  # "2 RTX 3090s", "8 A100s"
)


def _count_in(text: str) -> int | None:
    for pattern in _COUNT_PATTERNS:
        for m in re.finditer(pattern, text):
            if 0 < int(m.group(1)) <= 1024:
                return int(m.group(1))
    for word, n in _WORD_COUNTS.items():
        if re.search(rf"\b{word}\b", text):
            return n
    return None


def _spec(c: dict, count: int, instance: str | None = None) -> GpuSpec:
    return GpuSpec(card=c["name"], memory_gb=c["memory_gb"], count=count, bf16_tflops=c["bf16_tflops"],
                   instance=instance, memory_bw_gbs=c.get("memory_bw_gbs"))


def parse_gpu(instance_type: str, gpu_count: int | None = None) -> GpuSpec | None:
    """Read GPUs from an instance type ("g5.2xlarge", "ml.p4d.24xlarge") or text ("2x A100 80GB", "dual 4090s").

    An instance type fixes the count; free text uses `gpu_count` when above 1, else a count
    written in the text ("two", "4 x", "8xH100"), else 1. A size without a known card ("one 24 GB
    GPU") gives a generic card of that size. Returns None when nothing can be recognised.
    """
    text = (instance_type or "").strip().lower()
    if not text:
        return None
    found = _parse_gpu(text, gpu_count)
    return found.model_copy() if found is not None else None


@lru_cache(maxsize=256)
def _parse_gpu(text: str, gpu_count: int | None) -> GpuSpec | None:
    # Cached: a plan reads the same few GPU texts many times; callers get a copy (see parse_gpu).
    instances = _gpu_data()["instances"]
    for token in re.split(r"[\s,;()]+", text):
        name = token[3:] if token.startswith("ml.") else token
        if name in instances:
            inst = instances[name]
            return _spec(card(inst["card"]), inst["count"], instance=token)
    count = gpu_count if gpu_count and gpu_count > 1 else (_count_in(text) or gpu_count or 1)
    sized = re.search(r"(\d+(?:\.\d+)?)\s*gi?b\b", text)
    for c in _gpu_data()["cards"]:
        if re.search(c["match"], text):
            spec = _spec(c, count)
            # "A100 40GB" vs "80GB": a stated size picks the matching variant of the same card family.
            if sized and float(sized.group(1)) != c["memory_gb"]:
                family = c["name"].split()[0]
                for other in _gpu_data()["cards"]:
                    if other["name"].split()[0] == family and other["memory_gb"] == float(sized.group(1)):
                        return _spec(other, count)
            return spec
    if sized:
        return GpuSpec(card=f"{sized.group(1)} GB GPU", memory_gb=float(sized.group(1)), count=count)
    return None


# ---------------------------------------------------------------- fitting
def _per_gpu(total_gb: float, replicated_gb: float, count: int) -> float:
    return (total_gb - replicated_gb) / count + replicated_gb


def _default_replicated(total_gb: float) -> float:
    # Without a breakdown: CUDA context plus 5% of the job (at most 8 GB) for activations and buffers.
    return min(total_gb, CUDA_CONTEXT_GB + min(0.05 * total_gb, 8.0))


def _counts():
    yield from (1, 2, 4, 8)
    n = 16
    while n <= 1024:
        yield n
        n += 8


def fits_in(total_gb: float, gpu_gb: float, count: int = 1, replicated_gb: float | None = None) -> bool:
    """Whether a job of `total_gb` fits `count` GPUs of `gpu_gb` each (sharded when count > 1)."""
    rep = _default_replicated(total_gb) if replicated_gb is None else min(replicated_gb, total_gb)
    return _per_gpu(total_gb, rep, max(1, count)) <= gpu_gb


def gpus_needed(total_gb: float, gpu_class: float, replicated_gb: float | None = None) -> int | None:
    """GPUs of one size needed for the job, or None if the replicated part alone is too big."""
    rep = _default_replicated(total_gb) if replicated_gb is None else min(replicated_gb, total_gb)
    if rep >= gpu_class:
        return None
    for n in _counts():
        if _per_gpu(total_gb, rep, n) <= gpu_class:
            return n
    return None


def fit_gpus(total_gb: float, replicated_gb: float | None = None) -> tuple[int, int] | None:
    """(GPU class in GB, count): one GPU of the smallest class that holds the job, else sharded 80 GB GPUs.

    `replicated_gb` is the part every GPU needs when sharding (activations, CUDA context); by
    default it is estimated. See SHARDING_NOTE. None when nothing fits: the part every GPU needs
    is larger than any card, so only a smaller micro-batch or sequence length (or activation
    offloading) helps.
    """
    if total_gb <= 0:
        raise ValueError("total_gb must be positive")
    for cls in GPU_CLASSES:
        if total_gb <= cls:
            return cls, 1
    for cls in (MULTI_GPU_CLASS, max(GPU_CLASSES)):
        n = gpus_needed(total_gb, cls, replicated_gb)
        if n is not None:
            return cls, n
    return None


# ---------------------------------------------------------------- time
class TimeEstimate(BaseModel):
    hours: float
    low_hours: float = Field(description="If examples average 40% of the sequence length")
    high_hours: float = Field(description="If utilisation is two thirds of the assumed one")
    tokens: float
    tokens_per_second: float
    card: str
    assumptions: list[str]


def _card_for(card_name: str | None, gpu_class: float) -> dict:
    c = card(card_name) if card_name else None
    if c is None:  # only the size is known: use the class's reference card
        c = reference_card(min(GPU_CLASSES, key=lambda g: abs(g - gpu_class)))
    return c


def throughput(
    params_b: float,
    method: str,
    seq_len: int,
    micro_batch: int = 1,
    card_name: str | None = None,
    count: int = 1,
    *,
    gpu_class: float = 80,
    gradient_checkpointing: bool = True,
    dpo: bool = False,
    reference_free: bool = False,
    shape: Any = None,
) -> tuple[float, list[str]]:
    """Training tokens per second for the whole job (DPO counts chosen and rejected tokens), and why."""
    shp = shape_from(shape) if shape is not None else derive_shape(params_b)
    c = _card_for(card_name, gpu_class)
    n = params_b * 1e9 - (0 if shp.tie_word_embeddings else shp.vocab * shp.hidden)  # the input embedding is a lookup
    n = max(n, params_b * 1e9 * 0.5)
    reference = dpo and not reference_free
    passes = 2 + (1 if gradient_checkpointing else 0) + (1 if reference else 0)  # forward, backward, recompute, reference
    flops = n * ((6 if method == "full" else 4) + (2 if gradient_checkpointing else 0) + (2 if reference else 0))
    attention_passes = 3 + (1 if gradient_checkpointing else 0) + (1 if reference else 0)  # backward counts twice
    flops += 2 * seq_len * shp.q_dim * shp.layers * attention_passes
    tokens = micro_batch * seq_len * (2 if dpo else 1)
    gpu_s = tokens * flops / (c["bf16_tflops"] * 1e12 * ACHIEVABLE_MFU)
    if method == "qlora":
        linear = params_b * 1e9 - shp.embedding_params
        gpu_s += linear * DEQUANT_BYTES_PER_PARAM * (passes - 1) / (float(c.get("memory_bw_gbs") or 1000) * 1e9)
    calls = len(module_inputs(shp))
    host_s = passes * shp.layers * calls * HOST_S_PER_LINEAR_CALL.get(method, 0.3e-3)
    step_s = max(gpu_s, host_s) + STEP_OVERHEAD_S
    efficiency = 1.0 if count == 1 else MULTI_GPU_EFFICIENCY
    tps = count * efficiency * tokens / step_s
    bound = "compute" if gpu_s >= host_s else "host (kernel launch)"
    notes = [
        f"{count}x {c['name']} at {c['bf16_tflops']} BF16 TFLOPS ({c['source']}), {ACHIEVABLE_MFU:.0%} achievable"
        + (f", {efficiency:.0%} multi-GPU efficiency" if count > 1 else "")
        + f": {flops / n:.1f}N FLOPs per token, {tokens:,} tokens per step, {bound}-bound",
        THROUGHPUT_ASSUMPTIONS,
    ]
    return tps, notes


def estimate_time(
    examples: int,
    seq_len: int,
    epochs: float,
    params_b: float,
    method: str,
    gpu_class: float,
    count: int = 1,
    tokens_per_second: float | None = None,
    *,
    card_name: str | None = None,
    gradient_checkpointing: bool = True,
    dpo: bool = False,
    reference_free: bool = False,
    micro_batch: int = 1,
    shape: Any = None,
) -> TimeEstimate:
    """Training time with its throughput assumptions; `tokens_per_second` (whole job) overrides them."""
    if examples < 0 or seq_len < 1 or epochs <= 0 or count < 1 or micro_batch < 1:
        raise ValueError("examples >= 0, seq_len >= 1, epochs > 0, count >= 1 and micro_batch >= 1 are required")
    sequences = 2 if dpo else 1  # a DPO pair is a chosen and a rejected sequence
    tokens = examples * seq_len * epochs * sequences
    if tokens_per_second:
        tps = float(tokens_per_second)
        chosen = card_name or f"{int(gpu_class)} GB GPU"
        assumptions = [f"throughput given: {tps:,.0f} tokens/s for the whole job"]
    else:
        chosen = _card_for(card_name, gpu_class)["name"]
        tps, assumptions = throughput(
            params_b, method, seq_len, micro_batch, chosen, count, gpu_class=gpu_class,
            gradient_checkpointing=gradient_checkpointing, dpo=dpo, reference_free=reference_free, shape=shape,
        )
    hours = tokens / tps / 3600
    return TimeEstimate(
        hours=round(hours, 2),
        low_hours=round(hours * 0.4, 2),
        high_hours=round(hours * 1.5, 2),
        tokens=tokens,
        tokens_per_second=round(tps, 1),
        card=chosen,
        assumptions=assumptions,
    )


def training_time_hours(
    examples: int,
    seq_len: int,
    epochs: float,
    params_b: float,
    method: str,
    gpu_class: float,
    count: int = 1,
    tokens_per_second: float | None = None,
) -> float:
    """Point estimate in hours (see `estimate_time` for the range and assumptions)."""
    return estimate_time(examples, seq_len, epochs, params_b, method, gpu_class, count, tokens_per_second).hours


# ---------------------------------------------------------------- cost
class CostEstimate(BaseModel):
    platform: str
    platform_name: str
    gpu_class_gb: int
    card: str
    count: int
    hours: float
    spot: bool
    usd_per_gpu_hour: float
    total_usd: float
    low_usd: float | None = None
    high_usd: float | None = None
    as_of: str
    source: str
    notes: list[str] = Field(default_factory=list)


def load_prices(path: str | Path | None = None) -> Mapping[str, Any]:
    """The price table (read-only): `path`, else $TRAINING_PIPELINE_GPU_PRICES, else the shipped file."""
    override = path or os.environ.get(PRICES_ENV)
    if override:
        return _parse_prices(Path(override).read_text(encoding="utf-8"))
    return _shipped_prices()


@lru_cache(maxsize=1)
def _shipped_prices() -> Mapping[str, Any]:
    return _parse_prices(resources.files("agent.planning").joinpath("data", "gpu-prices.yaml").read_text(encoding="utf-8"))


@lru_cache(maxsize=8)
def _parse_prices(text: str) -> Mapping[str, Any]:
    # Cached by content, and frozen so that every plan can share it: every plan reads the
    # table, and parsing (then copying) it dominated a plan's time.
    data = yamlio.load(text)
    if not isinstance(data, dict) or not isinstance(data.get("platforms"), dict):
        raise ValueError("price file needs a 'platforms' mapping")
    return _frozen(data)


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def match_platform(platform: str, prices: Mapping[str, Any] | None = None) -> str | None:
    """The price-table key for free text such as "AWS SageMaker" or "Lambda Labs"."""
    prices = prices or load_prices()
    text = (platform or "").strip().lower()
    if text in prices["platforms"]:
        return text
    for key, entry in prices["platforms"].items():
        if any(alias in text for alias in entry.get("match", [])):
            return key
    return None


def _months_old(as_of: str, today: date | None = None) -> int | None:
    m = re.match(r"(\d{4})-(\d{2})", str(as_of))
    if not m:
        return None
    today = today or date.today()
    return (today.year - int(m.group(1))) * 12 + today.month - int(m.group(2))


def estimate_cost(
    hours: float,
    gpu_class: float,
    count: int = 1,
    platform: str = "aws",
    spot: bool = False,
    *,
    prices: Mapping[str, Any] | None = None,
    prices_path: str | Path | None = None,
    hours_range: tuple[float, float] | None = None,
    today: date | None = None,
) -> CostEstimate:
    """Cost of `count` GPUs of `gpu_class` GB for `hours` on `platform` (free text is matched)."""
    prices = prices or load_prices(prices_path)
    key = match_platform(platform, prices)
    notes: list[str] = []
    if key is None:
        raise ValueError(
            f"no prices for platform {platform!r}; known: {', '.join(prices['platforms'])} "
            f"(add it to a price file and set {PRICES_ENV})"
        )
    entry = prices["platforms"][key]
    offers = {int(k): v for k, v in entry["gpus"].items()}
    cls = int(gpu_class)
    if cls not in offers:
        bigger = sorted(k for k in offers if k >= cls)
        if not bigger:
            raise ValueError(f"{entry['name']} lists no GPU with {cls} GB or more in the price file")
        notes.append(f"{entry['name']} lists no {cls} GB GPU: priced with its {bigger[0]} GB offer")
        cls = bigger[0]
    offer = offers[cls]
    rate = float(offer["usd_per_gpu_hour"])
    factor = entry.get("spot_factor")
    if spot and factor is None:
        notes.append(f"{entry['name']} has no spot offering: on-demand price used")
        spot = False
    elif spot:
        rate *= float(factor)
        notes.append(f"spot/interruptible at ~{factor:.0%} of on-demand; budget for restarts from checkpoints")
    total = hours * count * rate
    as_of = str(prices.get("as_of", "unknown"))
    age = _months_old(as_of, today)
    notes.append(f"indicative prices as of {as_of}" + (f" ({age} months old)" if age and age > 6 else "") + "; check the provider")
    if key == "local":
        notes.append("owned hardware: no hourly price; electricity and depreciation not included")
    low = high = None
    if hours_range:
        low, high = (round(h * count * rate, 2) for h in hours_range)
    return CostEstimate(
        platform=key,
        platform_name=entry["name"],
        gpu_class_gb=cls,
        card=offer.get("card", ""),
        count=count,
        hours=round(hours, 2),
        spot=spot,
        usd_per_gpu_hour=round(rate, 3),
        total_usd=round(total, 2),
        low_usd=low,
        high_usd=high,
        as_of=as_of,
        source=str(entry.get("source", "")),
        notes=notes,
    )


def gpu_class_for(memory_gb: float) -> int:
    """The smallest recommendation class at least as big as a card (24 for smaller cards)."""
    return next((c for c in GPU_CLASSES if c >= memory_gb - 0.5), max(GPU_CLASSES))


def describe_fit(gpu_class: int, count: int) -> str:
    examples = ", ".join(class_examples(gpu_class)[:3])
    return f"{count}x {gpu_class} GB GPU{'s' if count > 1 else ''} ({examples})"
