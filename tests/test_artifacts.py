"""Phase 2 artifacts: spec, config template, decision log, project spec, skip record, writer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.artifacts import (
    render_config_template,
    render_decision_entry,
    render_phase_spec,
    render_skip_project_spec_section,
    render_skip_record,
    update_decision_log,
    update_project_spec,
    write_phase_artifacts,
    write_skip_artifacts,
)
from agent.artifacts.project_spec import render_project_spec_section
from agent.artifacts.yaml_scalar import number, plain_or_quoted, quoted
from agent.errors import ProjectError
from agent.state import DECISION_IDS, SECTIONS, Decision
from tests.conftest import SHARED

SEED = SHARED / "seed" / "step-04-training-pipeline.md"
PLACEHOLDER_LINE = "*Decisions will be added as the project progresses.*"
TITLES = {
    "base_model": "Base Model Selection",
    "training_approach": "Training Approach",
    "training_data": "Training Data",
    "peft": "PEFT Method and LoRA Configuration",
    "hyperparameters": "Hyperparameters",
    "infrastructure": "Infrastructure and Experiment Tracking",
}


# ---------------------------------------------------------------- seed blocks


def seed_block(after: str, lang: str) -> str:
    """The body of the first ```lang block after the marker `after`, last newline kept."""
    text = SEED.read_text(encoding="utf-8")
    fence = f"```{lang}\n"
    start = text.index(fence, text.index(after)) + len(fence)
    end = text.index("\n```", start)
    return text[start : end + 1]


def seed_spec_template() -> str:
    return seed_block("### 9. Create Training Pipeline Spec", "markdown")


def seed_config_template() -> str:
    return seed_block("**training-config.template.yaml:**", "yaml")


def seed_config_loaded() -> dict:
    # The seed's bare {{X}} is not loadable YAML; quoting it gives the intended document.
    quoted_text = re.sub(r'(?<!")\{\{(\w+)\}\}(?!")', r'"{{\1}}"', seed_config_template())
    return yaml.safe_load(quoted_text)


def key_paths(obj, prefix="") -> list[str]:
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(prefix + k)
            out += key_paths(v, prefix + k + ".")
    return out


def full_line_comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


# ---------------------------------------------------------------- decisions


def make(section: str, fields: dict, choice: str, date: str = "2026-01-06", **extra) -> dict:
    """A decision dump as the graph stores it, validated by the real model."""
    data = dict(
        id=DECISION_IDS[section],
        section=section,
        title=TITLES[section],
        choice=choice,
        rationale=f"Rationale for {choice}",
        options_considered=["Option A", "Option B"],
        consequences=[f"Consequence of {choice}"],
        knowledge_refs=["search_knowledge:QLoRA LoRA fine-tuning rank alpha configuration"],
        fields=fields,
        date=date,
    )
    data.update(extra)
    return Decision(**data).model_dump()


def infra(**over) -> dict:
    fields = dict(
        platform="AWS SageMaker",
        instance_type="ml.g5.2xlarge",
        spot_instances=True,
        tracking_tool="Comet ML",
        project="support-bot",
        experiment="sft-v1",
        estimated_cost="$40-60 per run",
    )
    fields.update(over)
    return make("infrastructure", fields, f"{fields['platform']} with {fields['tracking_tool']}")


def sft_lora_llama() -> dict[str, dict]:
    return {
        "base_model": make(
            "base_model",
            dict(model_id="llama-3.1-8b", name="meta-llama/Llama-3.1-8B-Instruct", params_b=8.0,
                 license="Llama 3.1 Community License", context_length=131072, family="llama"),
            "Llama 3.1 8B Instruct",
            context="One 24 GB GPU; brand voice",
        ),
        "training_approach": make("training_approach", dict(approach="sft"), "SFT"),
        "training_data": make(
            "training_data",
            dict(source="Resolved support tickets, rewritten as instruction-response pairs", sft_examples=12000,
                 quality_checks=["diversity", "quality", "no_pii"], eval_split=0.1),
            "12,000 curated ticket pairs",
        ),
        "peft": make(
            "peft",
            dict(method="lora", r=16, alpha=32, dropout=0.05,
                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
            "LoRA r=16 on attention and MLP",
        ),
        "hyperparameters": make(
            "hyperparameters",
            dict(learning_rate=2e-4, batch_size=4, gradient_accumulation_steps=4, num_epochs=3, max_length=2048,
                 budget="One night on the 24 GB GPU"),
            "lr 2e-4, 3 epochs",
        ),
        "infrastructure": infra(),
    }


def dpo_qlora_mistral() -> dict[str, dict]:
    return {
        "base_model": make(
            "base_model",
            dict(model_id="mistral-7b", name="mistralai/Mistral-7B-Instruct-v0.3", revision="v0.3", params_b=7.2,
                 license="Apache-2.0", context_length=32768, family="mistral"),
            "Mistral 7B Instruct",
        ),
        "training_approach": make("training_approach", dict(approach="dpo"), "DPO"),
        "training_data": make(
            "training_data",
            dict(source="Agent-rated answer pairs", dpo_pairs=5000, quality_checks=["consistency"]),
            "5,000 preference pairs",
        ),
        "peft": make(
            "peft",
            dict(method="qlora", quantization="4bit", r=8, alpha=16, dropout=0.1,
                 target_modules=["q_proj", "v_proj"]),
            "QLoRA 4-bit r=8",
        ),
        "hyperparameters": make(
            "hyperparameters",
            dict(learning_rate=5e-6, batch_size=2, gradient_accumulation_steps=8, num_epochs=1, max_length=1024,
                 dpo_beta=0.1, reference_free=False),
            "lr 5e-6, beta 0.1",
        ),
        "infrastructure": infra(platform="Local GPU", instance_type="RTX 4090", spot_instances=False),
    }


def combined_gpt2(method: str = "full") -> dict[str, dict]:
    peft_fields = (
        dict(method="full")
        if method == "full"
        else dict(method="lora", r=4, alpha=8, dropout=0.0, target_modules=["c_attn"])
    )
    return {
        "base_model": make(
            "base_model",
            dict(model_id="gpt2", name="openai-community/gpt2", params_b=0.124, license="MIT",
                 context_length=1024, family="gpt2"),
            "GPT-2 small",
        ),
        "training_approach": make("training_approach", dict(approach="combined"), "SFT then DPO"),
        "training_data": make(
            "training_data",
            dict(source="Clause drafts reviewed by lawyers", sft_examples=3500, dpo_pairs=1200,
                 quality_checks=["no_contamination"]),
            "3,500 drafts and 1,200 preferences",
        ),
        "peft": make("peft", peft_fields, "Full fine-tuning" if method == "full" else "LoRA on c_attn"),
        "hyperparameters": make(
            "hyperparameters",
            dict(learning_rate=1e-5, batch_size=16, num_epochs=2.5, max_length=1024, dpo_beta=0.2,
                 reference_free=True, weight_decay=0.01),
            "lr 1e-5",
        ),
        "infrastructure": infra(platform="On premises", instance_type="2x A100 80GB", gpu_count=2,
                                spot_instances=False),
    }


SCENARIOS = {
    "sft-lora-llama": sft_lora_llama,
    "dpo-qlora-mistral": dpo_qlora_mistral,
    "combined-full-gpt2": combined_gpt2,
    "combined-lora-gpt2": lambda: combined_gpt2("lora"),
}
PROJECT = {"name": "support-bot", "architecture": "fine-tuning", "created": "2026-01-05"}


def knowledge_records() -> list[dict]:
    items = [
        {"id": f"item-{i}", "type": "decision", "title": f"Finding {i}", "body": "...",
         "source_title": "LLM Engineer's Handbook", "source_authors": ["Iusztin", "Labonne"], "score": 0.9 - i / 10,
         "topics": ["fine-tuning"]}
        for i in range(5)
    ]
    return [
        {"query_id": "q1", "section": "peft", "endpoint": "search_knowledge",
         "arguments": {"query": "QLoRA LoRA fine-tuning rank alpha configuration"},
         "ref": "search_knowledge:QLoRA LoRA fine-tuning rank alpha configuration", "items": items,
         "result_ids": [i["id"] for i in items], "error": None, "fallback": None},
        {"query_id": "q2", "section": "training_approach", "endpoint": "get_decisions",
         "arguments": {"topic": "SFT vs DPO"}, "ref": "get_decisions:SFT vs DPO", "items": items[:1],
         "result_ids": ["item-0"], "error": None, "fallback": "search_knowledge:SFT vs DPO"},
        {"query_id": "q3", "section": "welcome", "endpoint": "get_warnings", "arguments": {"topic": "fine-tuning"},
         "ref": "get_warnings:fine-tuning", "items": [], "result_ids": [],
         "error": "timed out after 10 s", "fallback": None},
    ]


# ---------------------------------------------------------------- skip record


def test_skip_record_is_the_seed_block_byte_for_byte():
    block = seed_block("**1. Create Skip Record**", "markdown")
    assert block.startswith("# Phase 2: Training Pipeline\n")
    assert render_skip_record() == block


def test_skip_project_spec_section_is_short_and_closed():
    section = render_skip_project_spec_section()
    assert section.startswith("## Phase 2: Training Pipeline - SKIPPED\n")
    assert section.endswith("---\n")


# ---------------------------------------------------------------- phase spec


def seed_headings(level: str) -> list[str]:
    return [line for line in seed_spec_template().splitlines() if line.startswith(level + " ")]


def headings(text: str, level: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(level + " ")]


@pytest.mark.parametrize("name", SCENARIOS)
def test_spec_has_every_seed_section_in_order(name):
    decisions = SCENARIOS[name]()
    spec = render_phase_spec(decisions, knowledge_records(), PROJECT)
    assert spec.startswith("# Phase 2: Training Pipeline Spec\n")
    got = headings(spec, "##")
    expected = seed_headings("##")
    assert set(expected) <= set(got)
    assert [h for h in got if h in expected] == expected  # the seed's order
    for extra in ("## Training Data", "## Pitfalls Checked"):
        assert extra in got
    approach = decisions["training_approach"]["fields"]["approach"]
    sub = headings(spec, "###")
    assert ("### SFT Configuration" in sub) == (approach in ("sft", "combined"))
    assert ("### DPO Configuration" in sub) == (approach in ("dpo", "combined"))
    assert "*Not decided yet*" not in spec
    for section in SECTIONS:
        assert f"| {DECISION_IDS[section].upper()} |" in spec
    assert spec.count("- [x] ") == 6 and "- [ ] " not in spec


def test_spec_fills_values_from_the_decisions():
    spec = render_phase_spec(sft_lora_llama(), [], PROJECT)
    assert "**Model:** meta-llama/Llama-3.1-8B-Instruct" in spec
    assert "**Size:** 8B parameters" in spec
    assert "**Primary:** SFT" in spec
    assert "- Examples: 12,000" in spec
    assert "- Rank: 16" in spec and "- Alpha: 32" in spec
    assert "`gate_proj`" in spec
    assert "| Learning Rate | 0.0002 |" in spec
    assert "effective batch size 16" in spec
    assert "**Estimated Cost:** $40-60 per run" in spec
    assert "**Evaluation split:** 10% held out" in spec
    gpt2 = render_phase_spec(combined_gpt2(), [], PROJECT)
    assert "**Size:** 124M parameters" in gpt2
    assert "**Method:** Full fine-tuning" in gpt2
    assert "- Reference model: none (reference-free variant)" in gpt2
    assert "| DPO Beta | 0.2 |" in gpt2


def test_spec_undecided_sections_say_so():
    partial = {k: v for k, v in sft_lora_llama().items() if k in ("base_model", "training_approach")}
    spec = render_phase_spec(partial, [], {})
    assert [h for h in headings(spec, "##") if h in seed_headings("##")] == seed_headings("##")
    # 4 section bodies, 4 table rows, and the SFT block's examples and quality checks
    assert spec.count("*Not decided yet*") == 10
    assert "- Examples: *Not decided yet*" in spec
    assert "- [x] Base model selected" in spec
    assert "- [x] Training approach defined" in spec
    assert "- [ ] Hyperparameters configured" in spec
    assert "- [ ] Templates generated" in spec
    empty = render_phase_spec({}, [], {})
    assert empty.count("- [ ] ") == 6
    assert "*No knowledge queries were made.*" in empty


def test_spec_knowledge_consulted_is_honest():
    spec = render_phase_spec(sft_lora_llama(), knowledge_records(), PROJECT)
    section = spec.split("## Knowledge Consulted\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(lines) == 3  # one per query
    first, second, third = lines
    assert first.startswith("- `search_knowledge:QLoRA LoRA fine-tuning rank alpha configuration`")
    assert "`item-0` Finding 0" in first and "`item-2` Finding 2" in first
    assert "item-3" not in first  # top items only
    assert "**answered via fallback:** `search_knowledge:SFT vs DPO`" in second
    assert "could not be consulted" in third and "timed out after 10 s" in third
    assert "1 of 3 queries could not be consulted" in section


def test_spec_pitfalls_and_estimate():
    pitfalls = [{"id": "lora-alpha", "section": "peft", "severity": "warning", "message": "alpha below rank",
                 "fix": "use alpha = 2r", "knowledge_ref": "search_knowledge:LoRA rank alpha"}]
    spec = render_phase_spec(sft_lora_llama(), [], PROJECT, pitfalls=pitfalls,
                             estimate_summary="VRAM: 18 GB\n## not a heading")
    assert "- **warning** (PEFT Method and LoRA Configuration): alpha below rank" in spec
    assert "`search_knowledge:LoRA rank alpha`" in spec
    assert "> ## not a heading" in spec
    assert "## not a heading" not in headings(spec, "##")
    assert "*Not checked yet*" in render_phase_spec({}, [], {})
    assert "No pitfalls found" in render_phase_spec({}, [], {}, pitfalls=[])


UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def test_spec_tables_survive_hostile_text():
    decisions = sft_lora_llama()
    hostile = "A | B\nsecond line | `code|pipe` ## not heading"
    decisions["base_model"] = make("base_model", decisions["base_model"]["fields"], hostile, rationale=hostile)
    decisions["hyperparameters"] = make("hyperparameters", decisions["hyperparameters"]["fields"], "hp",
                                        rationale=hostile)
    spec = render_phase_spec(decisions, [], PROJECT)
    rows = [line for line in spec.splitlines() if line.startswith("| ")]
    assert rows and all(len(UNESCAPED_PIPE.findall(r)) == 4 for r in rows)  # three cells each
    assert "## not heading" not in headings(spec, "##")
    assert "A \\| B<br>second line" in spec


# ---------------------------------------------------------------- config template


def test_config_undecided_is_the_seed_template():
    text = render_config_template({}, {})
    assert yaml.safe_load(text) == seed_config_loaded()
    assert "{{LORA_RANK}}" in text


@pytest.mark.parametrize("name", SCENARIOS)
def test_config_keeps_seed_keys_order_and_comments(name):
    text = render_config_template(SCENARIOS[name](), PROJECT)
    loaded = yaml.safe_load(text)
    assert key_paths(loaded) == key_paths(seed_config_loaded())
    ours = [c for c in full_line_comments(text) if not c.startswith(("# Decision reference", "# Project:"))]
    seeds = [c for c in full_line_comments(seed_config_template()) if not c.startswith("# Decision reference")]
    assert ours == seeds
    assert "# Decision reference: See decision-log.md#TP-001..TP-006" in text
    assert '  quantization: "' in text and "  # none | 4bit | 8bit" in text
    assert "  # sft | dpo | combined" in text
    assert "{{" not in text  # every decision made: nothing left to fill


@pytest.mark.parametrize("name", SCENARIOS)
def test_config_values_come_from_the_decisions(name):
    d = SCENARIOS[name]()
    cfg = yaml.safe_load(render_config_template(d, PROJECT))
    base, data, peft, hp, inf = (d[s]["fields"] for s in ("base_model", "training_data", "peft", "hyperparameters",
                                                          "infrastructure"))
    approach = d["training_approach"]["fields"]["approach"]
    assert cfg["model"] == {"name": base["name"], "revision": base["revision"], "quantization": peft["quantization"]}
    assert cfg["training"]["approach"] == approach
    for key in ("learning_rate", "batch_size", "gradient_accumulation_steps", "num_epochs", "warmup_ratio",
                "weight_decay"):
        assert cfg["training"][key] == hp[key] and type(cfg["training"][key]) is type(hp[key])
    assert cfg["data"] == {"train_path": data["train_path"], "eval_path": data["eval_path"],
                           "max_length": hp["max_length"]}
    assert cfg["infrastructure"] == {"platform": inf["platform"], "instance_type": inf["instance_type"],
                                     "spot_instances": inf["spot_instances"]}
    assert cfg["tracking"] == {"tool": inf["tracking_tool"], "project": inf["project"],
                               "experiment": inf["experiment"]}
    if peft["method"] == "full":
        assert cfg["lora"] == {"r": None, "alpha": None, "dropout": None, "target_modules": []}
    else:
        assert cfg["lora"] == {"r": peft["r"], "alpha": peft["alpha"], "dropout": peft["dropout"],
                               "target_modules": peft["target_modules"]}
    if approach == "sft":
        assert cfg["training"]["dpo"] == {"beta": None, "reference_free": None}
    else:
        assert cfg["training"]["dpo"] == {"beta": hp["dpo_beta"], "reference_free": hp["reference_free"]}


def test_config_model_specific_modules_and_quantization():
    gpt2 = render_config_template(combined_gpt2("lora"), PROJECT)
    assert "    - c_attn\n" in gpt2 and "q_proj" not in gpt2
    full = render_config_template(combined_gpt2("full"), PROJECT)
    assert "q_proj" not in full and "no LoRA adapter" in full
    qlora = yaml.safe_load(render_config_template(dpo_qlora_mistral(), PROJECT))
    assert qlora["model"]["quantization"] == "4bit"
    assert qlora["training"]["learning_rate"] == 5e-6  # PyYAML needs "5.0e-06", not "5e-06"
    sft = render_config_template(sft_lora_llama(), PROJECT)
    assert "beta: null  # not used" in sft


def test_config_partial_keeps_placeholders():
    d = {"base_model": sft_lora_llama()["base_model"], "training_approach": dpo_qlora_mistral()["training_approach"]}
    text = render_config_template(d, {})
    cfg = yaml.safe_load(text)
    assert cfg["model"]["name"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert cfg["model"]["quantization"] == "{{QUANTIZATION}}"
    assert cfg["lora"]["r"] == "{{LORA_RANK}}"
    assert cfg["lora"]["target_modules"] == ["q_proj", "v_proj", "k_proj", "o_proj"]
    assert cfg["training"]["approach"] == "dpo"
    assert cfg["training"]["dpo"] == {"beta": "{{DPO_BETA}}", "reference_free": "{{REF_FREE}}"}
    assert cfg["tracking"]["project"] == "{{PROJECT_NAME}}"


HOSTILE = [
    'He said "hi" and \'bye\'',
    "key: value # not a comment",
    "- looks like a list item",
    "{{NOT_A_PLACEHOLDER}}",
    "{a: 1}, [b], &anchor *alias !tag %directive @at `tick`",
    "line one\nline two\n\n  indented: yes",
    "Ünïcödé — 日本語 — 🚀 café",
    "pipe | backslash \\ and \\n literal",
    "null",
    "yes",
    "~",
    "0x1F",
    "2026-01-05",
    "tab\tin the middle",
    "line\u2028separator\u2029and\x85next\ufeffbom",
    "bell\x07escape\x1bdel\x7f",
    "'single'",
    "#hash first",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_config_round_trips_hostile_text(text):
    d = sft_lora_llama()
    d["base_model"] = make("base_model", {**d["base_model"]["fields"], "name": text, "revision": text[:100]}, "x")
    d["training_data"] = make("training_data", {**d["training_data"]["fields"], "train_path": text,
                                                "eval_path": text + " eval"}, "x")
    d["infrastructure"] = infra(platform=text, instance_type=text, tracking_tool=text, project=text,
                                experiment=text)
    d["peft"] = make("peft", {**d["peft"]["fields"], "target_modules": [text, "c_attn", "null"]}, "x")
    cfg = yaml.safe_load(render_config_template(d, {"name": text}))
    expected = d["base_model"]["fields"]["name"]  # as validated (surrounding whitespace stripped)
    assert cfg["model"]["name"] == expected
    assert cfg["model"]["revision"] == d["base_model"]["fields"]["revision"]
    assert cfg["data"]["train_path"] == d["training_data"]["fields"]["train_path"]
    assert cfg["data"]["eval_path"] == d["training_data"]["fields"]["eval_path"]
    assert cfg["infrastructure"]["platform"] == expected
    assert cfg["tracking"] == {"tool": expected, "project": expected, "experiment": expected}
    assert cfg["lora"]["target_modules"] == d["peft"]["fields"]["target_modules"]


def test_config_round_trips_very_long_strings():
    long = ("word: " * 100)[:500]
    d = sft_lora_llama()
    d["training_data"] = make("training_data", {**d["training_data"]["fields"], "train_path": long}, "x")
    d["infrastructure"] = infra(platform="p" * 200, experiment="é" * 200)
    cfg = yaml.safe_load(render_config_template(d, PROJECT))
    assert cfg["data"]["train_path"] == long.strip()
    assert cfg["infrastructure"]["platform"] == "p" * 200
    assert cfg["tracking"]["experiment"] == "é" * 200


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_quoted_scalar_round_trips_any_text(text):
    assert yaml.safe_load(f"k: {quoted(text)}  # comment\n") == {"k": text}
    assert yaml.safe_load(f"- {plain_or_quoted(text)}\n") == [text]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False)))
def test_numbers_load_as_numbers(value):
    loaded = yaml.safe_load(f"k: {number(value)}\n")["k"]
    assert loaded == value and type(loaded) is type(value)


# ---------------------------------------------------------------- decision log


def test_decision_entry_uses_the_adr_format():
    d = make("base_model", sft_lora_llama()["base_model"]["fields"], "Llama 3.1 8B Instruct",
             context="24 GB GPU", options_considered=["Llama 3.1 8B", "Mistral 7B", "Qwen2.5 7B"],
             consequences=["Needs the Llama license accepted", "Fits with LoRA"],
             knowledge_refs=["get_decisions:SFT vs DPO", "search_knowledge:LoRA"])
    lines = render_decision_entry(d).split("\n")
    assert lines[:7] == [
        "## TP-001: Base Model Selection",
        "**Decision:** Llama 3.1 8B Instruct",
        "**Date:** 2026-01-06",
        "**Phase:** 2 - Training Pipeline",
        "**Context:** 24 GB GPU",
        "**Options Evaluated:** 1. Llama 3.1 8B 2. Mistral 7B 3. Qwen2.5 7B",
        "**Choice Rationale:** Rationale for Llama 3.1 8B Instruct",
    ]
    assert "**Knowledge Reference:** `get_decisions:SFT vs DPO`, `search_knowledge:LoRA`" in lines
    assert lines[-3:] == ["**Consequences:**", "- Needs the Llama license accepted", "- Fits with LoRA"]
    assert "**Status:**" not in render_decision_entry(d)


def tp_headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("## TP-")]


def test_decision_log_appends_after_earlier_entries(project_copy):
    original = (project_copy("support-bot") / "decision-log.md").read_text(encoding="utf-8")
    out = update_decision_log(original, sft_lora_llama(), [])
    assert out.startswith(original)  # front matter, header, ARCH/FP entries untouched
    assert out[len(original):].startswith("\n## TP-001: Base Model Selection\n")
    assert tp_headings(out) == [f"## {DECISION_IDS[s].upper()}: {TITLES[s]}" for s in SECTIONS]
    assert out.count("## ARCH-001:") == out.count("## FP-001:") == out.count("## FP-002:") == 1
    assert out.endswith("\n") and not out.endswith("\n\n")
    assert update_decision_log(out, sft_lora_llama(), []) == out


def test_decision_log_replaces_the_placeholder(project_copy):
    original = (project_copy("unscoped") / "decision-log.md").read_text(encoding="utf-8")
    assert PLACEHOLDER_LINE in original
    out = update_decision_log(original, sft_lora_llama(), [])
    assert PLACEHOLDER_LINE not in out
    head = original.split(PLACEHOLDER_LINE)[0]
    assert out.startswith(head + "## TP-001: ")
    assert update_decision_log(out, sft_lora_llama(), []) == out
    assert update_decision_log(original, {}, []) == original  # nothing to record: placeholder stays


def test_decision_log_keeps_superseded_records_marked(project_copy):
    original = (project_copy("contract-assistant") / "decision-log.md").read_text(encoding="utf-8")
    first = sft_lora_llama()
    old_base = {**first["base_model"], "superseded_on": "2026-01-07"}
    old_peft = {**first["peft"], "superseded_on": "2026-01-08"}
    current = dpo_qlora_mistral()
    current["base_model"]["date"] = "2026-01-07"
    out = update_decision_log(original, current, [old_peft, old_base])
    heads = tp_headings(out)
    assert heads[:2] == ["## TP-001: Base Model Selection"] * 2
    assert heads.count("## TP-004: PEFT Method and LoRA Configuration") == 2
    assert len(heads) == 8
    entries = out.split("\n## ")
    tp1 = [e for e in entries if e.startswith("TP-001")]
    assert "**Status:** Superseded on 2026-01-07 by the entry below" in tp1[0]
    assert "**Decision:** Llama 3.1 8B Instruct" in tp1[0]
    assert "**Status:**" not in tp1[1] and "**Decision:** Mistral 7B Instruct" in tp1[1]
    assert out.count("**Status:** Superseded") == 2
    assert update_decision_log(out, current, [old_peft, old_base]) == out
    # A revisit rewrites the TP block from the decisions alone, wherever the old one was.
    assert update_decision_log(update_decision_log(original, first, []), current, [old_peft, old_base]) == out


def test_decision_log_orders_revisions_oldest_first():
    first = sft_lora_llama()["base_model"]
    v1 = {**first, "choice": "v1", "date": "2026-01-06", "superseded_on": "2026-01-07"}
    v2 = {**first, "choice": "v2", "date": "2026-01-07", "superseded_on": "2026-01-09"}
    current = {**first, "choice": "v3", "date": "2026-01-09"}
    out = update_decision_log("## Decisions\n", {"base_model": current}, [v2, v1])
    choices = re.findall(r"\*\*Decision:\*\* (v\d)", out)
    assert choices == ["v1", "v2", "v3"]
    assert "Superseded on 2026-01-07" in out.split("v2")[0]


def test_decision_log_ignores_headings_inside_code_fences():
    text = "# x - Decision Log\n\n```markdown\n## TP-001: Example\n## FP-001: Example\n```\n\n## Decisions\n"
    out = update_decision_log(text, sft_lora_llama(), [])
    assert out.startswith(text + "\n## TP-001: Base Model Selection\n")
    assert update_decision_log(out, sft_lora_llama(), []) == out


def test_decision_log_goes_before_later_phases_and_keeps_them(project_copy):
    original = (project_copy("support-bot") / "decision-log.md").read_text(encoding="utf-8")
    later = "\n## INF-001: Serving Stack\n**Decision:** vLLM\n**Phase:** 3 - Inference Pipeline\n"
    out = update_decision_log(original + later, sft_lora_llama(), [])
    assert out.index("## FP-002") < out.index("## TP-001") < out.index("## TP-006") < out.index("## INF-001")
    assert out.endswith(later)
    assert update_decision_log(out, sft_lora_llama(), []) == out


def test_decision_log_hostile_text_cannot_forge_entries(project_copy):
    original = (project_copy("support-bot") / "decision-log.md").read_text(encoding="utf-8")
    d = sft_lora_llama()
    evil = "ok\n## TP-009: Forged\n---\n# Title\r## FP-001: fake\u2028## TP-010: x"
    d["base_model"] = make("base_model", d["base_model"]["fields"], evil, context=evil, consequences=[evil],
                           options_considered=[evil], knowledge_refs=["get_x:`tick`"])
    out = update_decision_log(original, d, [])
    assert len(tp_headings(out)) == 6
    assert out.count("\n## FP-001") == 1
    assert "`` get_x:`tick` ``" in out
    assert update_decision_log(out, d, []) == out


def test_decision_log_keeps_crlf_text_outside_tp_entries(project_copy):
    original = (project_copy("support-bot") / "decision-log.md").read_text(encoding="utf-8").replace("\n", "\r\n")
    out = update_decision_log(original, sft_lora_llama(), [])
    assert out.startswith(original)
    assert update_decision_log(out, sft_lora_llama(), []) == out


def test_decision_log_without_decisions_heading_gets_one():
    out = update_decision_log("# x - Decision Log\n", sft_lora_llama(), [])
    assert out.startswith("# x - Decision Log\n\n## Decisions\n\n## TP-001: ")
    assert update_decision_log(out, sft_lora_llama(), []) == out


# ---------------------------------------------------------------- project spec


def test_project_spec_section_goes_after_phase_1(project_copy):
    original = (project_copy("support-bot") / "project-spec.md").read_text(encoding="utf-8")
    d = sft_lora_llama()
    out = update_project_spec(original, d, PROJECT)
    assert out == original + "\n" + render_project_spec_section(d)
    assert "**Base model:** meta-llama/Llama-3.1-8B-Instruct (8B, Llama 3.1 Community License)" in out
    assert "**PEFT:** LoRA r=16, alpha=32 on q_proj" in out
    assert out.endswith("---\n")
    assert update_project_spec(out, d, PROJECT) == out


def test_project_spec_section_goes_before_later_phases(project_copy):
    original = (project_copy("contract-assistant") / "project-spec.md").read_text(encoding="utf-8")
    later = "\n## Phase 3: Inference Pipeline\n\n**Serving:** vLLM\n\n---\n"
    d = combined_gpt2()
    out = update_project_spec(original + later, d, PROJECT)
    assert out == original + "\n" + render_project_spec_section(d) + later
    assert update_project_spec(out, d, PROJECT) == out


def test_project_spec_replaces_rather_than_duplicates(project_copy):
    original = (project_copy("support-bot") / "project-spec.md").read_text(encoding="utf-8")
    skipped = update_project_spec(original, {}, PROJECT, skipped=True)
    assert skipped == original + "\n" + render_skip_project_spec_section()
    done = update_project_spec(skipped, sft_lora_llama(), PROJECT)
    assert done == update_project_spec(original, sft_lora_llama(), PROJECT)
    revised = update_project_spec(done, dpo_qlora_mistral(), PROJECT)
    assert revised == update_project_spec(original, dpo_qlora_mistral(), PROJECT)
    assert revised.count("## Phase 2:") == 1


def test_project_spec_without_phase_1_appends_and_shows_open_decisions(project_copy):
    original = (project_copy("unscoped") / "project-spec.md").read_text(encoding="utf-8")
    partial = {"base_model": sft_lora_llama()["base_model"]}
    out = update_project_spec(original, partial, PROJECT)
    assert out.startswith(original)
    assert out.count("*Not decided yet*") == 5
    assert update_project_spec(out, partial, PROJECT) == out


# ---------------------------------------------------------------- writer


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_phase_artifacts_is_deterministic(project_copy):
    root = project_copy("support-bot")
    before = snapshot(root)
    args = (sft_lora_llama(), [], knowledge_records(), PROJECT)
    written = write_phase_artifacts(root, *args, pitfalls=[], estimate_summary="VRAM 18 GB")
    assert written == [
        "phase-2-training/spec.md",
        "phase-2-training/templates/training-config.template.yaml",
        "decision-log.md",
        "project-spec.md",
    ]
    first = snapshot(root)
    assert first["sidecar.yaml"] == before["sidecar.yaml"]  # not ours
    assert first["phase-1-feature/spec.md"] == before["phase-1-feature/spec.md"]
    assert yaml.safe_load(first["phase-2-training/templates/training-config.template.yaml"])
    assert first["decision-log.md"].startswith(before["decision-log.md"])
    write_phase_artifacts(root, *args, pitfalls=[], estimate_summary="VRAM 18 GB")
    assert snapshot(root) == first
    assert not [p for p in root.rglob("*.tmp")]


def test_write_phase_artifacts_creates_a_missing_decision_log(tmp_path):
    write_phase_artifacts(tmp_path, sft_lora_llama(), [], [], PROJECT)
    log = (tmp_path / "decision-log.md").read_text(encoding="utf-8")
    assert log.startswith('---\nproject_name: "support-bot"\ncreated: "2026-01-05"\n---\n')
    assert "## Decisions\n\n## TP-001: " in log
    assert (tmp_path / "project-spec.md").read_text(encoding="utf-8").startswith("## Phase 2: Training Pipeline\n")


def test_write_refuses_a_file_linked_out_of_the_project(project_copy, tmp_path):
    root = project_copy("support-bot")
    outside = tmp_path / "elsewhere.md"
    outside.write_text("keep me\n", encoding="utf-8")
    (root / "decision-log.md").unlink()
    (root / "decision-log.md").symlink_to(outside)
    with pytest.raises(ProjectError, match="outside the project folder"):
        write_phase_artifacts(root, sft_lora_llama(), [], [], PROJECT)
    assert outside.read_text(encoding="utf-8") == "keep me\n"


def test_write_skip_artifacts(project_copy):
    root = project_copy("docs-qa")
    before = snapshot(root)
    written = write_skip_artifacts(root)
    assert written == ["phase-2-training/spec.md", "project-spec.md"]
    first = snapshot(root)
    assert first["phase-2-training/spec.md"] == seed_block("**1. Create Skip Record**", "markdown").encode()
    spec = first["project-spec.md"].decode()
    assert spec == before["project-spec.md"].decode() + "\n" + render_skip_project_spec_section()
    assert first["sidecar.yaml"] == before["sidecar.yaml"]
    assert "phase-2-training/templates/training-config.template.yaml" not in first
    write_skip_artifacts(root)
    assert snapshot(root) == first
