"""Model shapes for the planners: from the catalogue, from a dict, or derived from a size.

A shape is what memory and LoRA sizing need: layer count, widths, vocabulary, heads, and
which linear layers a family has (with their input/output sizes), so that a LoRA adapter on
`target_modules` can be counted exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agent.model_catalog import ALL_LINEAR, target_modules as family_modules

# Points (params in billions, layers, hidden size) along the Llama-style scaling used to derive a
# plausible shape when only a size is known: GPT-2 small, Qwen2.5-0.5B, Llama 3.2 1B-ish,
# Llama 3.2 3B, Llama 2 7B, Llama 2 13B, LLaMA 33B, Llama 2 70B, Falcon 180B, Llama 3.1 405B.
_SCALING = [
    (0.124, 12, 768),
    (0.5, 24, 1024),
    (1.3, 24, 2048),
    (3.0, 28, 3072),
    (7.0, 32, 4096),
    (13.0, 40, 5120),
    (33.0, 60, 6656),
    (70.0, 80, 8192),
    (180.0, 80, 14848),
    (405.0, 126, 16384),
]
DERIVED_VOCAB = 32_000  # Llama 2 / Mistral size; a larger vocabulary mainly adds logit memory


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    family: str = "llama"
    num_experts: int = 1
    experts_per_token: int = 1
    tie_word_embeddings: bool = False
    derived: bool = False

    @property
    def gated_mlp(self) -> bool:
        # Falcon and GPT-2 use a plain two-matrix MLP; the others a gated three-matrix one.
        return self.family not in ("falcon", "gpt2")

    @property
    def qk_norm(self) -> bool:
        # Qwen3 and Gemma 3 normalise each head's queries and keys (RMSNorm in fp32) before RoPE.
        return self.family in ("qwen3", "gemma3")

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def embedding_params(self) -> int:
        """Input embedding plus output head (once if tied): the layers bitsandbytes leaves in 16-bit."""
        return self.vocab * self.hidden * (1 if self.tie_word_embeddings else 2)


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if isinstance(obj, dict):
            if obj.get(n) is not None:
                return obj[n]
        elif getattr(obj, n, None) is not None:
            return getattr(obj, n)
    return default


def shape_from(obj: Any) -> Shape:
    """A Shape from a ModelSpec, another Shape, or a dict/object with layers/hidden/intermediate/vocab."""
    if isinstance(obj, Shape):
        return obj
    layers = int(_get(obj, "layers", "num_hidden_layers"))
    hidden = int(_get(obj, "hidden_size", "hidden"))
    intermediate = int(_get(obj, "intermediate_size", "intermediate", default=4 * hidden))
    vocab = int(_get(obj, "vocab_size", "vocab", default=DERIVED_VOCAB))
    heads = int(_get(obj, "num_heads", "num_attention_heads", default=max(1, hidden // 128)))
    kv = int(_get(obj, "num_kv_heads", "num_key_value_heads", default=heads))
    head_dim = int(_get(obj, "head_dim", default=hidden // heads))
    experts = int(_get(obj, "num_experts", default=1))
    return Shape(
        layers=layers,
        hidden=hidden,
        intermediate=intermediate,
        vocab=vocab,
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=head_dim,
        family=str(_get(obj, "family", default="llama")),
        num_experts=experts,
        experts_per_token=int(_get(obj, "experts_per_token", default=2 if experts > 1 else 1)),
        tie_word_embeddings=bool(_get(obj, "tie_word_embeddings", default=False)),
    )


def _interp(params_b: float) -> tuple[float, float]:
    x = math.log(params_b)
    pts = [(math.log(p), layers, hidden) for p, layers, hidden in _SCALING]
    if x <= pts[0][0]:
        return pts[0][1], pts[0][2]
    if x >= pts[-1][0]:
        return pts[-1][1], pts[-1][2]
    for (x0, l0, h0), (x1, l1, h1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            t = (x - x0) / (x1 - x0)
            return l0 + t * (l1 - l0), h0 + t * (h1 - h0)
    raise AssertionError("unreachable")


def derive_shape(params_b: float) -> Shape:
    """A Llama-style shape whose parameter count matches `params_b` (multi-head attention, vocab 32K)."""
    layers_f, hidden_f = _interp(params_b)
    layers = max(1, round(layers_f))
    step = 256 if hidden_f >= 1024 else 64
    hidden = max(step, int(round(hidden_f / step)) * step)
    total = params_b * 1e9
    tie = False
    # Solve params = layers * (4 h^2 + 3 h i) + embeddings for the MLP width i.
    per_layer = (total - 2 * DERIVED_VOCAB * hidden) / layers
    if per_layer - 4 * hidden * hidden < 3 * hidden * hidden:  # tiny models tie the head to the embedding
        tie = True
        per_layer = (total - DERIVED_VOCAB * hidden) / layers
    intermediate = max(hidden, int(round((per_layer - 4 * hidden * hidden) / (3 * hidden) / 64)) * 64)
    heads = max(1, hidden // 128)
    return Shape(
        layers=layers,
        hidden=hidden,
        intermediate=intermediate,
        vocab=DERIVED_VOCAB,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        tie_word_embeddings=tie,
        derived=True,
    )


def _linear_dims(shape: Shape) -> dict[str, list[tuple[int, int, int]]]:
    """Per family: module name -> [(in_features, out_features, copies per layer)]."""
    h, i, e = shape.hidden, shape.intermediate, shape.num_experts
    q_out = shape.num_heads * shape.head_dim
    kv_out = shape.num_kv_heads * shape.head_dim
    fam = shape.family
    if fam == "phi3":
        return {
            "qkv_proj": [(h, q_out + 2 * kv_out, 1)],
            "o_proj": [(q_out, h, 1)],
            "gate_up_proj": [(h, 2 * i, 1)],
            "down_proj": [(i, h, 1)],
        }
    if fam == "falcon":
        return {
            "query_key_value": [(h, q_out + 2 * kv_out, 1)],
            "dense": [(q_out, h, 1)],
            "dense_h_to_4h": [(h, i, 1)],
            "dense_4h_to_h": [(i, h, 1)],
        }
    if fam == "gpt2":
        return {
            "c_attn": [(h, 3 * h, 1)],
            "c_proj": [(h, h, 1), (i, h, 1)],  # the name matches attention and MLP projections
            "attn.c_proj": [(h, h, 1)],
            "mlp.c_proj": [(i, h, 1)],
            "c_fc": [(h, i, 1)],
        }
    dims = {
        "q_proj": [(h, q_out, 1)],
        "k_proj": [(h, kv_out, 1)],
        "v_proj": [(h, kv_out, 1)],
        "o_proj": [(q_out, h, 1)],
    }
    if fam == "mixtral":
        dims.update({"w1": [(h, i, e)], "w3": [(h, i, e)], "w2": [(i, h, e)], "gate": [(h, e, 1)]})
    else:
        dims.update({"gate_proj": [(h, i, 1)], "up_proj": [(h, i, 1)], "down_proj": [(i, h, 1)]})
    return dims


def expand_targets(shape: Shape, target_modules: list[str] | None) -> list[str]:
    """Resolve None / 'all-linear' to the family's linear layers; keep explicit names."""
    if not target_modules or ALL_LINEAR in target_modules:
        mods = family_modules(shape.family)
        return list(mods["all_linear"]) if mods else list(_linear_dims(shape))
    return list(target_modules)


def lora_param_count(shape: Shape, rank: int, target_modules: list[str] | None) -> tuple[int, list[str]]:
    """LoRA parameters (A: r x in, B: out x r per adapted matrix) and names the shape does not have."""
    dims = _linear_dims(shape)
    total, unknown = 0, []
    for name in expand_targets(shape, target_modules):
        entries = dims.get(name) or dims.get(name.rsplit(".", 1)[-1])
        if entries is None:
            unknown.append(name)
            entries = [(shape.hidden, shape.hidden, 1)]  # count it as a square projection
        total += sum(rank * (fan_in + fan_out) * copies for fan_in, fan_out, copies in entries)
    return total * shape.layers, unknown


def largest_linear(shape: Shape) -> int:
    """Elements of the biggest single weight matrix (the dequantization buffer for 4/8-bit layers)."""
    return max(fan_in * fan_out for entries in _linear_dims(shape).values() for fan_in, fan_out, _ in entries)


def module_inputs(shape: Shape) -> dict[str, int]:
    """Module name -> width of its input per token (what a LoRA branch on it keeps for backward)."""
    return {name: sum(fan_in for fan_in, _, _ in entries[:1]) for name, entries in _linear_dims(shape).items()}
