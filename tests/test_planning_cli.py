"""`estimate` and `export` entry points."""

from __future__ import annotations

import json

import pytest
import yaml

from agent.planning.cli import estimate_main, export_main, read_decisions
from tests.test_planning_export import DECISIONS

IDS = ["tp-001", "tp-002", "tp-003", "tp-004", "tp-005", "tp-006"]
SECTIONS = ["base_model", "training_approach", "training_data", "peft", "hyperparameters", "infrastructure"]


def test_estimate_json(capsys):
    assert estimate_main(["--params", "7", "--method", "qlora", "--bits", "4", "--seq-len", "2048",
                          "--micro-batch", "1", "--gradient-checkpointing", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 4 < out["total_gb"] < 12
    assert set(out["breakdown"]) == {"weights", "trainable_params", "gradients", "optimizer_states", "activations", "overhead"}
    assert out["fit"]["gpu_class_gb"] == 24 and out["assumptions"]


def test_estimate_with_model_and_options(capsys):
    assert estimate_main(["--model", "llama-3.1-70b", "--method", "lora", "--optimizer", "adamw_8bit",
                          "--rank", "8", "--no-gradient-checkpointing", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "llama-3.1-70b" and out["inputs"]["optimizer"] == "adamw_8bit"
    assert out["inputs"]["gradient_checkpointing"] is False and out["fit"]["count"] > 1


def test_estimate_text_and_errors(capsys):
    assert estimate_main(["--params", "13", "--method", "lora"]) == 0
    assert "total" in capsys.readouterr().out
    assert estimate_main(["--method", "lora"]) == 2
    assert estimate_main(["--params", "7", "--method", "full", "--bits", "4"]) == 2
    assert estimate_main(["--model", "no-such-model", "--method", "lora"]) == 2


def _with_decisions(project):
    sidecar = project / "sidecar.yaml"
    data = yaml.safe_load(sidecar.read_text())
    for tp, section in zip(IDS, SECTIONS):
        data["decisions"].append({"id": tp, "choice": section, "rationale": "r", "knowledge_ref": "k",
                                  "training_pipeline": DECISIONS[section]})
    sidecar.write_text(yaml.safe_dump(data, sort_keys=False))
    return project


def test_read_decisions_maps_ids_to_sections(project_copy):
    project = _with_decisions(project_copy("support-bot"))
    decisions = read_decisions(project)
    assert list(decisions) == SECTIONS
    assert decisions["peft"]["method"] == "qlora"


def test_export_writes_under_phase_2_training(project_copy, capsys):
    project = _with_decisions(project_copy("support-bot"))
    assert export_main(["--project", str(project), "--format", "trl"]) == 0
    sft = yaml.safe_load((project / "phase-2-training" / "trl" / "sft.yaml").read_text())
    assert sft["model_name_or_path"] == "mistralai/Mistral-7B-v0.3" and sft["max_length"] == 2048
    assert (project / "phase-2-training" / "trl" / "launch.sh").stat().st_mode & 0o100
    assert export_main(["--project", str(project), "--format", "axolotl", "--out", "custom"]) == 0
    ax = yaml.safe_load((project / "custom" / "sft.yaml").read_text())
    assert ax["adapter"] == "qlora"


def test_export_refuses_a_plan_with_errors_unless_forced(project_copy, capsys):
    project = _with_decisions(project_copy("support-bot"))
    data = yaml.safe_load((project / "sidecar.yaml").read_text())
    for entry in data["decisions"]:
        if entry.get("id") == "tp-001" and "training_pipeline" in entry:
            entry["training_pipeline"] = {**entry["training_pipeline"], "model_id": "falcon-7b",
                                          "name": "tiiuae/falcon-7b", "family": "falcon"}
    (project / "sidecar.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert export_main(["--project", str(project), "--format", "trl"]) == 1
    err = capsys.readouterr().err
    assert "target-module-not-in-model" in err and "q_proj" in err and "--force" in err
    assert not (project / "phase-2-training" / "trl").exists()
    assert export_main(["--project", str(project), "--format", "trl", "--force"]) == 0
    assert (project / "phase-2-training" / "trl" / "sft.yaml").is_file()


def test_export_without_decisions_fails_cleanly(project_copy, tmp_path, capsys):
    project = project_copy("support-bot")
    assert export_main(["--project", str(project), "--format", "axolotl"]) == 2
    assert "decide" in capsys.readouterr().err
    assert export_main(["--project", str(tmp_path / "nowhere"), "--format", "trl"]) == 2


def test_estimate_on_a_named_gpu_reports_fit_speed_and_hours(capsys):
    assert estimate_main(["--model", "qwen2.5-7b", "--method", "qlora", "--seq-len", "8192", "--micro-batch", "2",
                          "--gpu", "H200", "--examples", "10000", "--epochs", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    gpu = out["gpu"]
    assert gpu["card"] == "H200" and gpu["count"] == 1 and gpu["fits"]
    assert 5000 < gpu["tokens_per_second"] < 11000  # measured 7,799 tokens/s on an H200
    tokens = 10000 * 8192 * 2
    assert gpu["hours"] == pytest.approx(tokens / gpu["tokens_per_second"] / 3600, rel=0.01)
    assert "TRL 1.16" in " ".join(out["assumptions"])


def test_estimate_gpu_text_forms(capsys):
    assert estimate_main(["--model", "llama-3.1-8b", "--method", "lora", "--seq-len", "4096", "--micro-batch", "4",
                          "--gpu", "RTX 4090"]) == 0
    text = capsys.readouterr().out
    assert "on 1x RTX 4090: does NOT fit" in text and "tokens/s" in text
    assert estimate_main(["--model", "llama-3.1-8b", "--method", "qlora", "--gpu", "2x A100 80GB",
                          "--examples", "5000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["gpu"]["count"] == 2 and out["gpu"]["fits"] and out["gpu"]["hours"] > 0
    assert estimate_main(["--params", "7", "--method", "qlora", "--gpu", "a big computer"]) == 2
    assert "no GPU recognised" in capsys.readouterr().err


def test_estimate_when_nothing_fits_says_so(capsys):
    assert estimate_main(["--params", "70", "--method", "full", "--seq-len", "131072", "--micro-batch", "64",
                          "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fit"]["count"] is None and "no GPU holds" in out["fit"]["note"]
