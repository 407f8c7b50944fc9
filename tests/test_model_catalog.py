"""The model catalogue: coverage, shape consistency, lookups and target-module tables."""

from __future__ import annotations

import pytest

from agent.model_catalog import (
    ALL_LINEAR,
    find_model,
    is_instruction_tuned,
    known_families,
    load_catalog,
    target_modules,
    valid_module_names,
)

REQUIRED_KEYS = [
    "llama-2-7b", "llama-2-13b", "llama-2-70b",
    "codellama-7b", "codellama-13b", "codellama-34b",
    "llama-3.1-8b", "llama-3.1-70b", "llama-3.2-1b", "llama-3.2-3b",
    "mistral-7b-v0.3", "mixtral-8x7b",
    "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b",
    "qwen3-4b", "qwen3-8b", "qwen3-14b", "qwen3-32b",
    "gemma-2-2b", "gemma-2-9b", "gemma-2-27b", "gemma-3-1b", "gemma-3-4b",
    "phi-3-mini", "phi-4",
    "falcon-7b", "falcon-40b", "falcon-180b",
    "gpt2",
]


def _shape_params_b(s) -> float:
    """Parameters implied by the config shape (attention + MLP per layer, plus embeddings)."""
    hd = s.effective_head_dim
    attn = s.hidden_size * hd * (2 * s.num_heads + 2 * s.num_kv_heads)
    mlp_mats = 2 if s.family in ("falcon", "gpt2") else 3  # gated MLPs have three matrices
    mlp = mlp_mats * s.hidden_size * s.intermediate_size * (s.num_experts or 1)
    emb = s.vocab_size * s.hidden_size * (1 if s.tie_word_embeddings else 2)
    return (s.layers * (attn + mlp) + emb) / 1e9


def test_catalogue_covers_required_models():
    keys = {s.key for s in load_catalog()}
    missing = [k for k in REQUIRED_KEYS if k not in keys]
    assert not missing


def test_keys_are_unique_and_every_family_has_module_names():
    specs = load_catalog()
    assert len({s.key for s in specs}) == len(specs)
    for s in specs:
        assert s.family in known_families(), s.key
        assert s.architecture == "decoder-only"
        assert s.source and s.hf_repo in s.source


@pytest.mark.parametrize("spec", load_catalog(), ids=lambda s: s.key)
def test_shape_matches_parameter_count(spec):
    # Multimodal Gemma 3 counts include a ~0.4B vision tower the text shape does not show.
    assert _shape_params_b(spec) == pytest.approx(spec.params_b, rel=0.12)


def test_known_shapes():
    s = find_model("llama-3.1-8b")
    assert (s.layers, s.hidden_size, s.intermediate_size, s.vocab_size, s.num_kv_heads) == (32, 4096, 14336, 128256, 8)
    assert s.context_length == 131072
    assert find_model("mixtral-8x7b").num_experts == 8
    assert find_model("gpt2").context_length == 1024


def test_lookup_by_key_name_and_repo_is_case_insensitive():
    assert find_model("LLAMA-3.1-8B").key == "llama-3.1-8b"
    assert find_model("Llama 3.1 8B").key == "llama-3.1-8b"
    assert find_model("meta-llama/llama-3.1-8b").key == "llama-3.1-8b"
    assert find_model("  mistralai/Mistral-7B-Instruct-v0.3 ").key == "mistral-7b-v0.3"
    assert find_model("no/such-model") is None
    assert find_model("") is None


def test_instruction_tuned_by_repo():
    assert is_instruction_tuned("meta-llama/Llama-3.1-8B-Instruct") is True
    assert is_instruction_tuned("meta-llama/Llama-3.1-8B") is False
    assert is_instruction_tuned("phi-4") is True  # only an instruction-tuned checkpoint exists
    assert is_instruction_tuned("unknown/model") is None


def test_licences_and_commercial_notes():
    llama = find_model("llama-2-7b")
    assert llama.license == "llama2" and llama.commercial_use
    assert "700M" in llama.commercial_note
    assert find_model("mistral-7b-v0.3").license == "apache-2.0"
    assert find_model("qwen2.5-72b").license == "qwen"
    assert find_model("phi-4").license == "mit"
    assert find_model("falcon-180b").license == "falcon-180b"
    assert find_model("gemma-2-9b").license_name == "Gemma Terms of Use"


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3"])
def test_llama_style_modules(family):
    t = target_modules(family)
    assert t["attention"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert t["all_linear"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert t["peft_default"] == ["q_proj", "v_proj"]
    assert not t["fan_in_fan_out"]


def test_other_families_modules():
    assert target_modules("phi3")["all_linear"] == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert target_modules("phi3")["peft_default"] == []
    assert target_modules("falcon")["all_linear"] == ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]
    assert target_modules("falcon")["peft_default"] == ["query_key_value"]
    gpt2 = target_modules("gpt2")
    assert set(gpt2["all_linear"]) == {"c_attn", "c_proj", "c_fc"} and gpt2["fan_in_fan_out"]
    assert "w2" in target_modules("mixtral")["all_linear"]


def test_valid_module_names():
    assert "gate_proj" in valid_module_names("llama")
    assert ALL_LINEAR in valid_module_names("llama")
    assert "q_proj" not in valid_module_names("phi3")
    assert "q_proj" not in valid_module_names("falcon")
    assert valid_module_names("gemma3_text") == valid_module_names("gemma3")


def test_unknown_family_does_not_crash():
    assert target_modules("t5-encoder") is None
    assert target_modules(None) is None
    assert valid_module_names("unknown") == set()
