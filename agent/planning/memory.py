"""Peak GPU memory of one fine-tuning job (per job, before any sharding), as nvidia-smi reports it.

The model follows what the Hugging Face training stack does, read from its code (STACK below):

- Weights. NF4 stores 4-bit codes plus one absmax per 64-weight block; double quantization keeps
  that absmax in 8 bits with an fp32 constant per 256 blocks (QLoRA paper, sec. 3). bitsandbytes
  quantizes only the decoder's linear layers: embeddings, output head and norms stay bf16.
- Adapters. peft upcasts adapters to fp32 (`autocast_adapter_dtype=True`); TRL casts them back to
  bf16 when the base is quantized (the QLoRA paper's recipe). Gradients share the adapter dtype.
- Optimizer. torch AdamW keeps two moments in the parameter's dtype; bitsandbytes' 32-bit
  optimizers keep fp32 moments, 8-bit ones 2 B/param. Paged optimizers put their state in CUDA
  unified memory: it stays on the GPU (outside torch's allocator) unless memory runs out, so it is
  counted on the GPU and reported as what can move to CPU RAM under pressure.
- Loss. TRL's SFT and DPO trainers replace the LM head with a fused, tiled log-prob kernel: no
  (tokens x vocabulary) logits exist; one bf16 tile of 4,096 tokens x 32,768 vocabulary entries,
  the gathered final hidden states and an fp32 hidden-state gradient do.
- Activations. Each decoder layer keeps its fp32 RMSNorm inputs, the post-RoPE q/k/v and output
  of fused (SDPA/flash) attention, the MLP's gate, activation and up tensors, and for each LoRA
  branch the dropout output and mask. Frozen linear layers (and bitsandbytes' 4-bit matmul) keep
  no input. Full fine-tuning also keeps every linear layer's input; fp32 weights under bf16
  autocast add a bf16 copy of every weight for the forward pass. Gradient checkpointing keeps each
  layer's input and recomputes one layer at a time during backward.
- DPO runs chosen and rejected sequences as one batch. With an adapter the reference is the same
  model with the adapter disabled, run under no_grad (no copy); full fine-tuning loads a reference
  copy in the model's dtype unless reference log-probs are precomputed.
- Overhead: the CUDA context, cuBLAS/Triton workspaces and the caching allocator's reserve.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.planning.shapes import Shape, derive_shape, expand_targets, largest_linear, lora_param_count, module_inputs, shape_from

Method = Literal["full", "lora", "qlora"]
Optimizer = Literal["adamw", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"]
OPTIMIZERS: tuple[str, ...] = ("adamw", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")

# The versions whose code this model follows; measured against them in reference/gpu-measured.csv.
STACK = "TRL 1.16 (SFTTrainer/DPOTrainer), transformers 5.x, peft 0.21, bitsandbytes 0.50, accelerate 1.15, torch 2.11"

GB = 1e9  # decimal gigabytes; see `fits_in` in gpu.py for how this meets a card's nominal size

NF4_BITS = 4 + 32 / 64  # 4-bit codes + fp32 absmax per 64-weight block
NF4_DQ_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # absmax quantized to 8 bits, fp32 constant per 256 blocks
INT8_BYTES = 1.0  # LLM.int8: per-row scales are negligible
CUDA_CONTEXT_GB = 0.8  # CUDA context and loaded kernels: nvidia-smi minus torch's reserved memory, measured on an H200
WORKSPACE_GB = 0.15  # cuBLAS/cuBLASLt workspaces (forward and autograd threads), Triton and bitsandbytes scratch
ALLOCATOR_RESERVE = 0.10  # caching-allocator blocks reserved but not in use: 3-9% of the peak measured, upper end kept
HEAD_TILE_TOKENS = 4096  # TRL's fused LM head: tokens per projection tile
HEAD_TILE_VOCAB = 32768  # and vocabulary entries per tile
LOGIT_BYTES = 2  # the tile is in the autocast dtype (bf16)


class MemoryBreakdown(BaseModel):
    weights: float = Field(description="Model weights (the trained weights for full fine-tuning)")
    trainable_params: float = Field(description="Adapter weights (LoRA/QLoRA); 0 for full fine-tuning")
    gradients: float = Field(description="Gradients alive at the peak")
    optimizer_states: float = Field(description="Optimizer state on the GPU (paged state included while it fits)")
    activations: float = Field(description="Saved activations, recompute and loss buffers, dequantization buffers")
    overhead: float = Field(description="CUDA context, library workspaces and allocator reserve")


class MemoryEstimate(BaseModel):
    method: str
    weight_bits: int
    params_b: float
    trainable_params_m: float = Field(description="Trainable parameters, in millions")
    breakdown: MemoryBreakdown
    total_gb: float = Field(description="Peak GPU memory as nvidia-smi shows it")
    cpu_offload_gb: float = Field(0.0, description="Paged optimizer state that can move to CPU RAM under memory pressure")
    min_gb: float = Field(0.0, description="Peak with the paged optimizer state moved to CPU RAM: the least GPU memory that runs")
    peak_phase: str = Field("", description="Where the peak happens: loss head, layer recompute or optimizer step")
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


def _layer_bytes_per_token(shape: Shape, method: str, residual: int, lora_inputs: list[int], lora_dropout: float) -> float:
    """Bytes one decoder layer keeps for backward, per token (bf16 autocast compute)."""
    h, q, kv = shape.hidden, shape.q_dim, shape.kv_dim
    mlp = shape.intermediate * shape.experts_per_token
    kept = 2 * 4 * h  # two RMSNorms keep their fp32-upcast input
    kept += 2 * (q + kv) + 2 * kv + 2 * q  # SDPA keeps post-RoPE q, k, v and its output
    if shape.qk_norm:
        kept += 4 * (q + kv)  # per-head q/k RMSNorm inputs in fp32
    kept += (6 if shape.gated_mlp else 2) * mlp  # gate (SiLU input), activation and up; GELU input
    if method == "full":
        # Trained weights need their inputs; fp32 weights under autocast cast the input once per linear layer.
        copies_qkv, copies_mlp = (3, 2) if residual == 4 else (1, 1)
        kept += 2 * residual * h  # normalised outputs, for the norm weights' gradients
        kept += 2 * h * copies_qkv + 2 * q + 2 * h * (copies_mlp if shape.gated_mlp else 1) + 2 * mlp
    elif lora_dropout > 0:
        kept += sum(3 * width for width in lora_inputs)  # each branch keeps its bf16 dropout output and bool mask
    else:
        kept += 2 * sum(set(lora_inputs))  # without dropout the branches share the module input
    return kept


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
    adapter_dtype: Literal["fp32", "bf16"] | None = None,
    lora_dropout: float = 0.05,
    precompute_ref_log_probs: bool = False,
    gradient_accumulation_steps: int = 1,
) -> MemoryEstimate:
    """Peak GPU memory of one training job, with a breakdown and the assumptions behind it.

    `shape` is a ModelSpec, a dict or object with layers/hidden(_size)/intermediate(_size)/vocab(_size),
    or None to derive a Llama-style shape from `params_b`. `dpo=True` runs chosen and rejected
    sequences together and, for full fine-tuning, keeps a frozen reference copy unless
    `precompute_ref_log_probs`. `adapter_dtype` defaults to what TRL uses: bf16 on a quantized
    base, fp32 otherwise (peft's upcast).
    """
    _check_inputs(method, weight_bits, optimizer)
    if params_b <= 0 or seq_len < 1 or micro_batch < 1 or lora_rank < 1:
        raise ValueError("params_b, seq_len, micro_batch and lora_rank must be positive")
    if adapter_dtype not in (None, "fp32", "bf16"):
        raise ValueError("adapter_dtype must be fp32 or bf16")
    shp = shape_from(shape) if shape is not None else derive_shape(params_b)
    params = params_b * 1e9
    quantized = weight_bits < 16
    assumptions: list[str] = [f"models the Hugging Face stack of {STACK}"]
    if shp.derived:
        assumptions.append(
            f"shape derived from size (Llama-style, {shp.layers} layers, hidden {shp.hidden}, "
            f"MLP {shp.intermediate}, vocab {shp.vocab}); pass a catalogue model for its real shape"
        )

    weights, what = _weights_bytes(params, shp, weight_bits, double_quant)
    assumptions.append(what)
    paged = optimizer.startswith("paged_")
    lora_inputs: list[int] = []

    if method == "full":
        trainable_count = params
        trainable = 0.0  # the trained weights are the weights above
        param_bytes = weight_bits // 8
        grads = params * param_bytes
        opt = params * _optimizer_bytes_per_param(optimizer, param_bytes)
        if weight_bits == 32:
            assumptions.append("full fine-tuning with fp32 weights and bf16 autocast (mixed precision): fp32 gradients")
        else:
            assumptions.append("pure bf16 full fine-tuning: bf16 weights, gradients and (with torch AdamW) optimizer moments")
        if dpo and not precompute_ref_log_probs:
            weights += params * param_bytes
            assumptions.append(f"DPO loads a frozen reference copy in the model's dtype ({param_bytes} B/param); "
                               "precompute_ref_log_probs avoids it")
    else:
        trainable_count, unknown = lora_param_count(shp, lora_rank, target_modules)
        targets = expand_targets(shp, target_modules)
        widths = module_inputs(shp)
        lora_inputs = [widths.get(t) or widths.get(t.rsplit(".", 1)[-1]) or shp.hidden for t in targets]
        if shp.num_experts > 1:  # each token passes through experts_per_token experts' adapters
            lora_inputs = [w * (shp.experts_per_token if t in ("w1", "w2", "w3") else 1) for t, w in zip(targets, lora_inputs)]
        if not target_modules:
            assumptions.append("target modules not given: all linear layers assumed (more than peft's own default adapts)")
        if unknown:
            assumptions.append(f"modules not in a {shp.family} model, counted as square projections: {', '.join(unknown)}")
        dtype = adapter_dtype or ("bf16" if quantized else "fp32")
        adapter_bytes = 4 if dtype == "fp32" else 2
        trainable = trainable_count * adapter_bytes
        grads = trainable_count * adapter_bytes
        opt = trainable_count * _optimizer_bytes_per_param(optimizer, adapter_bytes)
        assumptions.append(
            f"LoRA rank {lora_rank} on {', '.join(targets)}: {trainable_count / 1e6:.1f}M {dtype} adapter parameters"
            + (" (TRL casts adapters on a quantized base to bf16)" if dtype == "bf16" and adapter_dtype is None else
               " (peft upcasts adapters to fp32)" if adapter_dtype is None else "")
        )
        if dpo:
            assumptions.append("DPO with an adapter uses the model with the adapter disabled as its reference, "
                               "run under no_grad after the policy forward (no extra copy)")
    assumptions.append(
        {"adamw": "AdamW: two moments per trainable parameter in its dtype",
         "adamw_8bit": "8-bit AdamW: 2 B/param of optimizer state",
         "paged_adamw_8bit": "8-bit paged AdamW: 2 B/param of state in CUDA unified memory",
         "paged_adamw_32bit": "32-bit paged AdamW: 8 B/param of fp32 state in CUDA unified memory"}[optimizer]
    )
    if paged:
        assumptions.append("paged optimizer state stays on the GPU while there is room (counted in the total) "
                           "and moves to CPU RAM under pressure (cpu_offload_gb; min_gb is the peak without it)")

    if dpo and method != "full" and lora_dropout > 0:
        # DPOConfig.disable_dropout (default True) sets every dropout, LoRA's included, to p=0.
        lora_dropout = 0.0
        assumptions.append("DPO disables dropout (TRL's default): LoRA branches share their module's input")
    acts, grads_at_peak, phase = _dynamic_peak(
        shp, method, weight_bits, params, grads, lora_inputs, lora_dropout,
        seq_len, micro_batch * (2 if dpo else 1), gradient_checkpointing, quantized,
        accumulating=gradient_accumulation_steps > 1,
    )
    sequences = micro_batch * (2 if dpo else 1)
    assumptions.append(
        f"activations for {sequences} sequence(s) x {seq_len} tokens"
        + (" (chosen and rejected together)" if dpo else "")
        + (", gradient checkpointing on (each layer's input kept, one layer recomputed)" if gradient_checkpointing
           else ", no gradient checkpointing (every layer's activations kept)")
        + "; fused SDPA/flash attention; TRL's fused LM head (no full-vocabulary logits); peak in the " + phase
    )
    if method == "full" and gradient_accumulation_steps > 1:
        assumptions.append(f"gradient accumulation over {gradient_accumulation_steps} micro-batches: "
                           "every gradient stays allocated through the next forward and backward")
    if method != "full" and lora_dropout > 0:
        assumptions.append(f"LoRA dropout {lora_dropout:g}: each adapted module keeps its dropout output and mask")

    allocated = weights + trainable + grads_at_peak + (0.0 if paged else opt) + acts + WORKSPACE_GB * GB
    reserve = ALLOCATOR_RESERVE * allocated
    paged_state = opt if paged else 0.0
    overhead = CUDA_CONTEXT_GB * GB + WORKSPACE_GB * GB + reserve
    total = weights + trainable + grads_at_peak + opt + acts + overhead
    assumptions.append(
        f"overhead: {CUDA_CONTEXT_GB} GB CUDA context + {WORKSPACE_GB} GB library workspaces + "
        f"{ALLOCATOR_RESERVE:.0%} caching-allocator reserve"
    )
    assumptions.append("GB = 10^9 bytes; total is nvidia-smi's peak for the whole job on one device "
                       "(see gpu.fit_gpus for sharding); every example assumed to fill the sequence length")

    def gb(x: float) -> float:
        return round(x / GB, 2)

    breakdown = MemoryBreakdown(
        weights=gb(weights),
        trainable_params=gb(trainable),
        gradients=gb(grads_at_peak),
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
        total_gb=gb(total),
        cpu_offload_gb=gb(paged_state),
        min_gb=gb(total - paged_state),
        peak_phase=phase,
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
            "adapter_dtype": (adapter_dtype or ("bf16" if quantized else "fp32")) if method != "full" else None,
            "lora_dropout": lora_dropout if method != "full" else None,
            "gradient_accumulation_steps": gradient_accumulation_steps,
            "stack": STACK,
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


def _dynamic_peak(
    shp: Shape,
    method: str,
    weight_bits: int,
    params: float,
    grads: float,
    lora_inputs: list[int],
    lora_dropout: float,
    seq_len: int,
    sequences: int,
    checkpointing: bool,
    quantized: bool,
    accumulating: bool = False,
) -> tuple[float, float, str]:
    """(activation bytes at the peak, gradient bytes alive then, which phase) over the step's phases.

    The phases: the end of the forward pass (fp32 weights: the autocast cache of bf16 copies),
    backward through the loss head (all kept activations alive, no layer gradients
    yet), backward through a recomputed layer (checkpointing: layer inputs plus one layer), and
    the optimizer step (full fine-tuning: every gradient plus foreach temporaries).
    """
    tokens = sequences * seq_len
    full = method == "full"
    residual = 4 if (full and weight_bits == 32) else 2  # dtype of the residual stream and layer inputs
    h, mlp = shp.hidden, shp.intermediate * shp.experts_per_token
    layer = tokens * _layer_bytes_per_token(shp, method, residual, lora_inputs, lora_dropout)
    boundaries = shp.layers * tokens * h * residual
    dequant = largest_linear(shp) * 2 if quantized else 0.0  # a bf16 copy of the weight being multiplied
    # fp32 weights under autocast: a bf16 copy of each linear weight, kept by the graph until its backward.
    cast_cache = (params - shp.embedding_params) * 2 if (full and weight_bits == 32) else 0.0

    # Loss head: the gathered final hidden states and fp32 norm input, one logits tile, the fp32
    # hidden-state gradient and, when the head is trained, its fp32 weight gradient.
    tile = min(tokens, HEAD_TILE_TOKENS) * min(shp.vocab, HEAD_TILE_VOCAB) * LOGIT_BYTES
    head_kept = tokens * h * (4 + residual + (residual if full else 0))
    head_grad = shp.vocab * h * (4 + (2 if weight_bits == 16 else 0)) if full else 0.0
    head_transient = tile + tokens * h * 4 + head_grad
    # Backward through one layer: two MLP-wide gradients at a time; with fp32 adapters the
    # recompute also holds an fp32 copy of the down projection's input (peft casts it to the
    # adapter dtype) and, with dropout, its fp32 dropout output.
    fp32_adapters = not full and not quantized
    fp32_copies = (8 if lora_dropout > 0 else 4) * mlp if fp32_adapters else 0
    layer_transient = tokens * max(4 * mlp, fp32_copies) + dequant
    # Adapter gradients are small and counted throughout; full fine-tuning's gradients are freed at
    # each optimizer step (zero_grad(set_to_none=True)) unless gradients accumulate over micro-batches.
    grads_kept = grads if (not full or accumulating) else 0.0

    phases: dict[str, tuple[float, float]] = {}
    if checkpointing:
        head = boundaries + head_kept + head_transient
        if cast_cache:
            # The autocast cache holds every bf16 weight copy until the forward pass leaves autocast.
            phases["end of forward"] = (boundaries + cast_cache + head_kept + tile, grads_kept)
        if full and not accumulating:
            # Layer inputs are freed as layer gradients appear: at most the larger of the two is alive.
            layer_phase = (max(boundaries - grads, 0.0) + layer + layer_transient, grads)
        else:
            layer_phase = (boundaries + layer + layer_transient, grads_kept)
    else:
        kept = shp.layers * layer + cast_cache
        head = kept + head_kept + head_transient
        layer_phase = (kept + layer_transient, grads_kept)
    phases |= {
        "loss head backward": (head, grads_kept),
        "layer backward": layer_phase,
        # Full fine-tuning: every gradient plus torch AdamW's foreach temporary (one per parameter, in its dtype).
        "optimizer step": (grads if full else 0.0, grads if full else grads_kept),
    }
    name, (acts, grads_alive) = max(phases.items(), key=lambda kv: kv[1][0] + kv[1][1])
    return acts, grads_alive, name
