"""Analytical GPU-memory estimate for one fine-tuning run (per job, before any sharding).

Components and the figures behind them (see finetuning-facts.md):
- weights: bytes per parameter by precision. NF4 stores 4 bits plus one fp32 absmax per
  64-weight block (0.5 bit/param); double quantization stores that absmax in 8 bits with an fp32
  constant per 256 blocks (0.127 bit/param), saving ~0.37 bit/param (QLoRA paper, sec. 3).
  bitsandbytes quantizes only linear layers: embeddings and the output head stay 16-bit.
- trainable parameters, their gradients and optimizer state. AdamW keeps two moments per
  parameter in the parameter's dtype (8 B/param for fp32, 4 for bf16); 8-bit AdamW keeps 2 B.
  Paged optimizers hold their state in CUDA unified memory that is evicted to CPU RAM under
  pressure, so they are counted off the GPU (in `cpu_offload_gb`).
- activations: grow with micro-batch x sequence x width x layers; gradient checkpointing keeps
  only each layer's input and recomputes one layer at a time. Assumes fused (flash/SDPA)
  attention, so no sequence-squared score matrices are kept.
- overhead: CUDA context (~1-1.5 GB) plus a reserve for the caching allocator's fragmentation
  and library workspaces.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.planning.shapes import Shape, derive_shape, expand_targets, largest_linear, lora_param_count, shape_from

Method = Literal["full", "lora", "qlora"]
Optimizer = Literal["adamw", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"]
OPTIMIZERS: tuple[str, ...] = ("adamw", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")

GB = 1e9  # decimal gigabytes; see `fits_in` in gpu.py for how this meets a card's nominal size

NF4_BITS = 4 + 32 / 64  # 4-bit codes + fp32 absmax per 64-weight block
NF4_DQ_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # absmax quantized to 8 bits, fp32 constant per 256 blocks
INT8_BYTES = 1.0  # LLM.int8: per-row scales are negligible
CUDA_CONTEXT_GB = 1.25  # CUDA context and kernels, the middle of the usual 1-1.5 GB
ALLOCATOR_RESERVE = 0.10  # caching-allocator fragmentation, cuBLAS/NCCL workspaces
LOGIT_BYTES = 10  # per token per vocabulary entry: bf16 logits, fp32 upcast for the loss, its gradient


class MemoryBreakdown(BaseModel):
    weights: float = Field(description="Model weights (the trained weights for full fine-tuning)")
    trainable_params: float = Field(description="Adapter weights (LoRA/QLoRA); 0 for full fine-tuning")
    gradients: float
    optimizer_states: float
    activations: float = Field(description="Saved activations, logits and dequantization buffers")
    overhead: float = Field(description="CUDA context and allocator reserve")


class MemoryEstimate(BaseModel):
    method: str
    weight_bits: int
    params_b: float
    trainable_params_m: float = Field(description="Trainable parameters, in millions")
    breakdown: MemoryBreakdown
    total_gb: float
    cpu_offload_gb: float = Field(0.0, description="Paged optimizer state that may live in CPU RAM")
    assumptions: list[str]
    inputs: dict[str, Any]


def default_optimizer(method: str) -> str:
    """What the planners assume when none is chosen: the QLoRA paper pairs QLoRA with a paged optimizer."""
    return "paged_adamw_32bit" if method == "qlora" else "adamw"


def _check_inputs(method: str, weight_bits: int, optimizer: str) -> None:
    if method not in ("full", "lora", "qlora"):
        raise ValueError(f"unknown method {method!r}: use full, lora or qlora")
    if weight_bits not in (4, 8, 16, 32):
        raise ValueError(f"weight_bits must be 4, 8, 16 or 32, not {weight_bits}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    if method == "full" and weight_bits < 16:
        raise ValueError("full fine-tuning updates every weight and cannot train quantized weights; use qlora")
    if method == "qlora" and weight_bits > 8:
        raise ValueError("QLoRA loads the base model in 4 or 8 bits")


def _weights_bytes(params: float, shape: Shape, weight_bits: int, double_quant: bool) -> tuple[float, str]:
    if weight_bits in (32, 16):
        return params * weight_bits / 8, f"weights in {'fp32' if weight_bits == 32 else 'bf16'}: {weight_bits // 8} B/param"
    embed = min(shape.embedding_params, params * 0.5)
    linear = params - embed
    if weight_bits == 8:
        per = INT8_BYTES
        what = "linear layers in 8-bit (LLM.int8)"
    else:
        per = (NF4_DQ_BITS if double_quant else NF4_BITS) / 8
        what = f"linear layers in NF4 at {per * 8:.3f} bits/param ({'with' if double_quant else 'without'} double quantization)"
    return linear * per + embed * 2, f"{what}; embeddings and output head ({embed / 1e6:.0f}M params) kept in bf16"


def _optimizer_bytes_per_param(optimizer: str, param_bytes: int) -> float:
    if optimizer == "adamw":
        return 2 * param_bytes  # two moments in the parameter's dtype
    if optimizer == "paged_adamw_32bit":
        return 8.0  # bitsandbytes' 32-bit optimizers keep fp32 state whatever the parameter dtype
    return 2.0  # 8-bit AdamW: two 1-byte moments (block-wise quantized)


def _activation_bytes(shape: Shape, tokens: int, gradient_checkpointing: bool, quantized: bool) -> float:
    h = shape.hidden
    qkv = (shape.num_heads + 2 * shape.num_kv_heads) * shape.head_dim
    mlp_width = shape.intermediate * shape.experts_per_token
    # Per token and layer, bf16 unless noted: two fp32 norm inputs (8h), norm outputs, q/k/v,
    # attention output and residuals (~8h), and the MLP's intermediate tensors.
    per_layer_token = 16 * h + 2 * qkv + (8 if shape.gated_mlp else 4) * mlp_width
    if gradient_checkpointing:
        # Each layer's bf16 input is kept; one layer is recomputed at a time, with its gradients.
        saved = shape.layers * tokens * h * 2 + 2 * tokens * per_layer_token
    else:
        saved = shape.layers * tokens * per_layer_token
    logits = tokens * shape.vocab * LOGIT_BYTES
    dequant = largest_linear(shape) * 2 if quantized else 0  # bf16 copy of the weight being multiplied
    return saved + logits + dequant


def estimate_memory(
    params_b: float,
    method: Method,
    weight_bits: int,
    lora_rank: int = 16,
    target_modules: list[str] | None = None,
    seq_len: int = 2048,
    micro_batch: int = 1,
    gradient_checkpointing: bool = True,
    optimizer: Optimizer = "adamw",
    shape: Any = None,
    *,
    double_quant: bool = True,
    dpo: bool = False,
    adapter_dtype: Literal["fp32", "bf16"] = "fp32",
) -> MemoryEstimate:
    """Peak GPU memory of one training job, with a breakdown and the assumptions behind it.

    `shape` is a ModelSpec, a dict or object with layers/hidden(_size)/intermediate(_size)/vocab(_size),
    or None to derive a Llama-style shape from `params_b`. `dpo=True` runs chosen and rejected
    sequences together and, for full fine-tuning, keeps a frozen bf16 reference model.
    `adapter_dtype` is fp32 by default (peft upcasts adapters); the QLoRA paper's scripts cast them to bf16.
    """
    _check_inputs(method, weight_bits, optimizer)
    if params_b <= 0 or seq_len < 1 or micro_batch < 1 or lora_rank < 1:
        raise ValueError("params_b, seq_len, micro_batch and lora_rank must be positive")
    shp = shape_from(shape) if shape is not None else derive_shape(params_b)
    params = params_b * 1e9
    assumptions: list[str] = []
    if shp.derived:
        assumptions.append(
            f"shape derived from size (Llama-style, {shp.layers} layers, hidden {shp.hidden}, "
            f"MLP {shp.intermediate}, vocab {shp.vocab}); pass a catalogue model for its real shape"
        )

    weights, what = _weights_bytes(params, shp, weight_bits, double_quant)
    assumptions.append(what)
    cpu = 0.0
    paged = optimizer.startswith("paged_")

    if method == "full":
        trainable_count = params
        trainable = 0.0  # the trained weights are the weights above
        param_bytes = weight_bits // 8
        grads = params * param_bytes
        opt = params * _optimizer_bytes_per_param(optimizer, param_bytes)
        if weight_bits == 32:
            assumptions.append("full fine-tuning with fp32 master weights and bf16 autocast (mixed precision): fp32 gradients")
        else:
            assumptions.append("pure bf16 full fine-tuning: bf16 weights, gradients and (with torch AdamW) optimizer moments")
        if dpo:
            weights += params * 2
            assumptions.append("DPO with full fine-tuning keeps a frozen bf16 reference model (precomputing reference log-probs avoids it)")
    else:
        trainable_count, unknown = lora_param_count(shp, lora_rank, target_modules)
        targets = expand_targets(shp, target_modules)
        if not target_modules:
            assumptions.append("target modules not given: all linear layers assumed (more than peft's own default adapts)")
        if unknown:
            assumptions.append(f"modules not in a {shp.family} model, counted as square projections: {', '.join(unknown)}")
        if adapter_dtype not in ("fp32", "bf16"):
            raise ValueError("adapter_dtype must be fp32 or bf16")
        # peft upcasts adapter weights to fp32 by default (autocast_adapter_dtype=True).
        adapter_bytes = 4 if adapter_dtype == "fp32" else 2
        trainable = trainable_count * adapter_bytes
        grads = trainable_count * adapter_bytes
        opt = trainable_count * _optimizer_bytes_per_param(optimizer, adapter_bytes)
        assumptions.append(
            f"LoRA rank {lora_rank} on {', '.join(targets)}: "
            f"{trainable_count / 1e6:.1f}M {adapter_dtype} adapter parameters"
        )
        if dpo:
            assumptions.append("DPO with an adapter uses the base model with the adapter disabled as its reference (no extra copy)")
    if paged:
        cpu, opt = opt, 0.0
        assumptions.append(f"{optimizer}: optimizer state paged to CPU RAM under GPU pressure, not counted on the GPU")
    assumptions.append(
        {"adamw": "AdamW: two moments per trainable parameter in its dtype",
         "adamw_8bit": "8-bit AdamW: 2 B/param of optimizer state",
         "paged_adamw_8bit": "8-bit paged AdamW: 2 B/param of state",
         "paged_adamw_32bit": "32-bit paged AdamW: 8 B/param of state"}[optimizer]
    )

    sequences = micro_batch * (2 if dpo else 1)
    tokens = sequences * seq_len
    acts = _activation_bytes(shp, tokens, gradient_checkpointing, quantized=weight_bits < 16)
    assumptions.append(
        f"activations for {sequences} sequence(s) x {seq_len} tokens"
        + (" (chosen and rejected together)" if dpo else "")
        + (", gradient checkpointing on" if gradient_checkpointing else ", no gradient checkpointing")
        + "; fused (flash/SDPA) attention; logits upcast to fp32 for the loss"
    )
    subtotal = weights + trainable + grads + opt + acts
    overhead = CUDA_CONTEXT_GB * GB + ALLOCATOR_RESERVE * subtotal
    assumptions.append(
        f"overhead: {CUDA_CONTEXT_GB} GB CUDA context + {ALLOCATOR_RESERVE:.0%} allocator/workspace reserve"
    )
    assumptions.append("GB = 10^9 bytes; total is for the whole job on one device (see gpu.fit_gpus for sharding)")

    def gb(x: float) -> float:
        return round(x / GB, 2)

    breakdown = MemoryBreakdown(
        weights=gb(weights),
        trainable_params=gb(trainable),
        gradients=gb(grads),
        optimizer_states=gb(opt),
        activations=gb(acts),
        overhead=gb(overhead),
    )
    return MemoryEstimate(
        method=method,
        weight_bits=weight_bits,
        params_b=params_b,
        trainable_params_m=round(trainable_count / 1e6, 2),
        breakdown=breakdown,
        total_gb=gb(subtotal + overhead),
        cpu_offload_gb=gb(cpu),
        assumptions=assumptions,
        inputs={
            "params_b": params_b,
            "method": method,
            "weight_bits": weight_bits,
            "lora_rank": lora_rank if method != "full" else None,
            "target_modules": list(target_modules) if target_modules else None,
            "seq_len": seq_len,
            "micro_batch": micro_batch,
            "gradient_checkpointing": gradient_checkpointing,
            "optimizer": optimizer,
            "double_quant": double_quant if weight_bits == 4 else None,
            "dpo": dpo,
            "adapter_dtype": adapter_dtype if method != "full" else None,
            "shape": {
                "layers": shp.layers,
                "hidden": shp.hidden,
                "intermediate": shp.intermediate,
                "vocab": shp.vocab,
                "family": shp.family,
                "derived": shp.derived,
            },
        },
    )
