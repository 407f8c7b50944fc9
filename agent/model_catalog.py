"""Catalogue of base models and the LoRA target-module names of each architecture family.

The catalogue data lives in `agent/data/models.yaml` (shapes from each repository's
config.json, licences from the model cards). Module names follow peft's behaviour:
`peft_default` is what peft picks when `target_modules` is left unset, `all_linear` is
what `target_modules="all-linear"` expands to (every linear layer except the head).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent import yamlio

# peft's shorthand that selects every linear layer except the output head.
ALL_LINEAR = "all-linear"


class ModelSpec(BaseModel):
    """One base model, with the figures the planners and checks need."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    name: str
    hf_repo: str
    instruct_repo: str | None = None
    instruction_tuned: bool = False  # whether hf_repo itself is instruction-tuned
    params_b: float = Field(gt=0)
    active_params_b: float | None = None  # mixture of experts: parameters used per token
    license: str
    license_name: str
    commercial_use: bool
    commercial_note: str = ""
    context_length: int
    family: str
    architecture: Literal["decoder-only"] = "decoder-only"
    layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int | None = None  # when it differs from hidden_size / num_heads
    num_experts: int | None = None
    experts_per_token: int | None = None
    tie_word_embeddings: bool = False
    strengths: str = ""
    source: str = ""

    @property
    def effective_head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads


def _data_text() -> str:
    return resources.files("agent").joinpath("data", "models.yaml").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _catalog() -> tuple[ModelSpec, ...]:
    raw = yamlio.load(_data_text())  # libyaml: the first question shows the catalogue
    licenses: dict = raw["licenses"]
    specs = []
    for entry in raw["models"]:
        lic = licenses[entry["license"]]  # a KeyError here means models.yaml is inconsistent
        entry = {
            "license_name": lic["name"],
            "commercial_use": lic["commercial_use"],
            "commercial_note": lic.get("note", ""),
            "source": f"config.json and model card of {entry['hf_repo']} on the Hugging Face Hub",
            **entry,
        }
        specs.append(ModelSpec.model_validate(entry))
    return tuple(specs)


def load_catalog() -> list[ModelSpec]:
    """All catalogue models, in file order (cached; the list is a fresh copy)."""
    return list(_catalog())


def find_model(key_or_repo: str) -> ModelSpec | None:
    """Look a model up by key, display name, base repo or instruct repo (case-insensitive)."""
    if not key_or_repo:
        return None
    wanted = key_or_repo.strip().lower()
    for spec in _catalog():
        names = (spec.key, spec.name, spec.hf_repo, spec.instruct_repo or "")
        if wanted in (n.lower() for n in names if n):
            return spec
    return None


def is_instruction_tuned(key_or_repo: str) -> bool | None:
    """True if the repo (or key) is an instruction-tuned checkpoint; None if unknown.

    A catalogue key means the base checkpoint (`hf_repo`).
    """
    spec = find_model(key_or_repo)
    if spec is None:
        return None
    wanted = key_or_repo.strip().lower()
    if spec.instruct_repo and wanted == spec.instruct_repo.lower():
        return True
    return spec.instruction_tuned


# Module names per family (transformers' attribute names). Llama-style families share them.
_LLAMA_ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
_LLAMA_MLP = ["gate_proj", "up_proj", "down_proj"]

_MODULES: dict[str, dict] = {
    "llama": {"attention": _LLAMA_ATTN, "all_linear": _LLAMA_ATTN + _LLAMA_MLP, "peft_default": ["q_proj", "v_proj"]},
    "mistral": {"attention": _LLAMA_ATTN, "all_linear": _LLAMA_ATTN + _LLAMA_MLP, "peft_default": ["q_proj", "v_proj"]},
    "qwen2": {"attention": _LLAMA_ATTN, "all_linear": _LLAMA_ATTN + _LLAMA_MLP, "peft_default": ["q_proj", "v_proj"]},
    "qwen3": {"attention": _LLAMA_ATTN, "all_linear": _LLAMA_ATTN + _LLAMA_MLP, "peft_default": ["q_proj", "v_proj"]},
    "gemma": {"attention": _LLAMA_ATTN, "all_linear": _LLAMA_ATTN + _LLAMA_MLP, "peft_default": ["q_proj", "v_proj"]},
    "gemma2": {"attention": _LLAMA_ATTN, "all_linear": _LLAMA_ATTN + _LLAMA_MLP, "peft_default": ["q_proj", "v_proj"]},
    "gemma3": {
        "attention": _LLAMA_ATTN,
        "all_linear": _LLAMA_ATTN + _LLAMA_MLP,
        "peft_default": ["q_proj", "v_proj"],
        # peft's table has gemma3_text; the multimodal gemma3 checkpoints (4B+) also carry a
        # vision tower, so "all-linear" there adapts the vision layers too.
        "note": "Multimodal Gemma 3 (4B and up): naming modules explicitly keeps LoRA on the language model.",
    },
    "mixtral": {
        "attention": _LLAMA_ATTN,
        # The experts' layers are w1/w3 (in) and w2 (out); `gate` is the router, usually left frozen.
        "all_linear": _LLAMA_ATTN + ["w1", "w2", "w3"],
        "peft_default": ["q_proj", "v_proj"],
        "extra_valid": ["gate"],
        "note": "Mixtral experts are w1/w2/w3 in transformers 4.x; transformers 5 fuses the experts "
        "into parameters that LoRA reaches through peft's target_parameters instead.",
    },
    "phi3": {
        "attention": ["qkv_proj", "o_proj"],
        "all_linear": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
        # peft has no default for phi3 (only for the older "phi"): target_modules must be given.
        "peft_default": [],
        "note": "peft has no default target modules for phi3; set them explicitly (or 'all-linear').",
    },
    "falcon": {
        "attention": ["query_key_value", "dense"],
        "all_linear": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
        "peft_default": ["query_key_value"],
    },
    "gpt2": {
        # c_proj exists in both attention and MLP; "attn.c_proj" matches only the attention one.
        "attention": ["c_attn", "attn.c_proj"],
        "all_linear": ["c_attn", "c_proj", "c_fc"],
        "peft_default": ["c_attn"],
        "extra_valid": ["attn.c_proj", "mlp.c_proj"],
        "fan_in_fan_out": True,
        "note": "GPT-2 uses Conv1D layers: LoraConfig needs fan_in_fan_out=True.",
    },
}


def _norm_family(family: str | None) -> str:
    fam = (family or "").strip().lower().replace("-", "_")
    # Accept the text-only model_type and dotted variants users may type.
    return {"gemma3_text": "gemma3", "qwen2.5": "qwen2", "qwen2_5": "qwen2", "phi_3": "phi3", "phi4": "phi3"}.get(fam, fam)


def target_modules(family: str | None) -> dict | None:
    """Target-module sets for a family, or None if the family is not known.

    Keys: "attention", "all_linear", "peft_default" (lists of names), "fan_in_fan_out" (bool),
    "note" (str, may be empty).
    """
    entry = _MODULES.get(_norm_family(family))
    if entry is None:
        return None
    return {
        "attention": list(entry["attention"]),
        "all_linear": list(entry["all_linear"]),
        "peft_default": list(entry["peft_default"]),
        "fan_in_fan_out": bool(entry.get("fan_in_fan_out", False)),
        "note": entry.get("note", ""),
    }


def valid_module_names(family: str | None) -> set[str]:
    """Names a LoraConfig may target for this family (plus peft's 'all-linear'); empty if unknown."""
    entry = _MODULES.get(_norm_family(family))
    if entry is None:
        return set()
    return {*entry["attention"], *entry["all_linear"], *entry.get("extra_valid", []), ALL_LINEAR}


def known_families() -> list[str]:
    return sorted(_MODULES)
