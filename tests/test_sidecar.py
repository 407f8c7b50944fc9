"""sidecar.yaml: clear errors, atomic merges that keep every key step 4 does not own."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agent.fsutil as fsutil
from tests.conftest import FIXTURES
from agent.sidecar import (
    ProjectError,
    acknowledge_warnings,
    dump_yaml,
    load_sidecar,
    mark_phase_complete,
    mark_phase_skipped,
    phase_status,
    same_yaml_value,
    set_architecture,
    tp_entries,
    update_sidecar,
    upsert_decision,
    validate_sidecar,
)

HEADER = "# AI Engineering Project Sidecar\n# This file tracks project state across workflow sessions\n"


def tp(n: int, **extra) -> dict:
    return {
        "id": f"tp-{n:03d}",
        "choice": f"choice {n}",
        "rationale": f"because {n}",
        "knowledge_ref": "get_patterns:base-model",
        "training_pipeline": {"section": "base_model", "fields": {"params_b": 7.0}},
        **extra,
    }


def write_sidecar(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sidecar.yaml").write_text(text, encoding="utf-8")
    return folder


# --- loading the fixtures ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["support-bot", "contract-assistant", "docs-qa", "unscoped"])
def test_fixtures_load_with_key_order(project_copy, name):
    raw = load_sidecar(project_copy(name))
    assert list(raw)[:3] == ["project_name", "created", "user_name"]
    assert list(raw)[-1] == "phases"
    model = validate_sidecar(raw)
    assert model.project_name == name
    assert model.phase_status == "pending"


def test_fixture_architectures(project_copy):
    assert validate_sidecar(load_sidecar(project_copy("docs-qa"))).known_architecture == "rag-only"
    assert validate_sidecar(load_sidecar(project_copy("unscoped"))).known_architecture is None


def test_unknown_architecture_is_not_an_error_the_graph_asks(tmp_path):
    for value, known in (("Fine-Tuning ", "fine-tuning"), ("distillation", None)):
        raw = {"project_name": "p", "architecture": value}
        assert validate_sidecar(raw).known_architecture == known


# --- clear errors --------------------------------------------------------------------------


def test_missing_folder(tmp_path):
    with pytest.raises(ProjectError, match="Project folder not found") as err:
        load_sidecar(tmp_path / "nope")
    assert "init-demo" in str(err.value)


def test_folder_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ProjectError, match="is a file, not a project folder"):
        load_sidecar(tmp_path / "f")


def test_no_sidecar(tmp_path):
    with pytest.raises(ProjectError) as err:
        load_sidecar(tmp_path)
    msg = str(err.value)
    assert "No sidecar.yaml" in msg
    assert f"training-pipeline init-demo {tmp_path} --architecture fine-tuning" in msg
    assert "step 1 of the workflow" in msg


def test_invalid_yaml_names_file_line_and_column(tmp_path):
    write_sidecar(tmp_path, 'project_name: "p"\nphases:\n  phase_2_training: "pending\ncurrentPhase: 2\n')
    with pytest.raises(ProjectError) as err:
        load_sidecar(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "sidecar.yaml") in msg
    assert "not valid YAML at line 5, column 1: found unexpected end of stream" in msg
    assert "(while scanning a quoted scalar at line 3, column 21)" in msg


def test_bad_indentation_position(tmp_path):
    write_sidecar(tmp_path, "project_name: p\ndecisions:\n  - id: a\n   choice: b\n")
    with pytest.raises(ProjectError, match=r"at line 4, column 4: expected <block end>"):
        load_sidecar(tmp_path)


def test_empty_sidecar(tmp_path):
    write_sidecar(tmp_path, "# only a comment\n")
    with pytest.raises(ProjectError, match="is empty"):
        load_sidecar(tmp_path)


@pytest.mark.parametrize("text,kind", [("- a\n- b\n", "a list"), ("just text\n", "text")])
def test_not_a_mapping(tmp_path, text, kind):
    write_sidecar(tmp_path, text)
    with pytest.raises(ProjectError, match=f"must be a mapping.*holds {kind}"):
        load_sidecar(tmp_path)


def test_not_utf8(tmp_path):
    tmp_path.joinpath("sidecar.yaml").write_bytes(b"project_name: \xff\xfe\n")
    with pytest.raises(ProjectError, match="not UTF-8"):
        load_sidecar(tmp_path)


@pytest.mark.parametrize(
    "edit,expected",
    [
        (lambda r: r["phases"].update(phase_2_training="done"), "phases.phase_2_training: input should be 'pending'"),
        (lambda r: r.__setitem__("phases", ["pending"]), "phases: expected a mapping, found a list"),
        (lambda r: r["decisions"].append({"id": "tp-001", "rationale": "r"}), "decisions[3].choice: missing (required)"),
        (lambda r: r["decisions"].append({"id": "tp-002", "choice": 2, "rationale": "r"}), "decisions[3].choice: expected text, found a number (2)"),
        (lambda r: r.__setitem__("decisions", {"a": 1}), "decisions: expected a list, found a mapping"),
        (lambda r: r.__setitem__("currentPhase", "2"), "currentPhase: expected an integer, found text ('2')"),
        (lambda r: r.__setitem__("currentPhase", True), "currentPhase: expected an integer, found a boolean (true)"),
        (lambda r: r.__setitem__("stepsCompleted", "1, 2"), "stepsCompleted: expected a list, found text ('1, 2')"),
        (lambda r: r.pop("project_name"), "project_name: missing (required)"),
        (lambda r: r.__setitem__("architecture", 5), "architecture: expected text, found a number (5)"),
        (lambda r: r.__setitem__("warnings_acknowledged", "none"), "warnings_acknowledged: expected a list"),
    ],
)
def test_wrong_types_name_the_key_path(project_copy, edit, expected):
    folder = project_copy("support-bot")
    raw = yaml.safe_load((folder / "sidecar.yaml").read_text())
    edit(raw)
    (folder / "sidecar.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ProjectError) as err:
        load_sidecar(folder)
    assert expected in str(err.value)
    assert "sidecar.yaml" in str(err.value)


def test_several_problems_are_all_reported():
    with pytest.raises(ProjectError) as err:
        validate_sidecar({"project_name": 1, "currentPhase": "x", "phases": {"phase_2_training": "done"}})
    msg = str(err.value)
    assert "project_name:" in msg and "currentPhase:" in msg and "phases.phase_2_training:" in msg


def test_later_workflow_keys_are_accepted():
    raw = {
        "project_name": "p",
        "currentStep": "step-04",
        "steps": {"04": {"status": "in-progress"}},
        "stories": [{"id": 1}],
        "outputs": {"spec": "x.md"},
        "quality_gate": {"passed": None},
        "workflow_status": "active",
        "decisions": [{"id": "a", "choice": "b", "rationale": "c", "knowledge_ref": "d", "phase": 0, "date": dt.date(2026, 1, 5)}],
        "phases": {"phase_2_training": "pending", "phase_6_extra": "pending"},
    }
    model = validate_sidecar(raw)
    assert model.model_extra["workflow_status"] == "active"
    assert model.decisions[0] == raw["decisions"][0]  # another step's entry, kept as it is


# --- atomic, validated writes ----------------------------------------------------------------


def test_update_keeps_header_and_is_valid(project_copy):
    folder = project_copy("support-bot")
    upsert_decision(folder, tp(1))
    text = (folder / "sidecar.yaml").read_text()
    assert text.startswith(HEADER + "\n")
    raw = load_sidecar(folder)
    assert raw["decisions"][-1] == tp(1)
    assert raw["phases"]["phase_2_training"] == "in_progress"
    assert list(raw) == list(yaml.safe_load((project_copy("contract-assistant") / "sidecar.yaml").read_text()))


def test_crash_before_rename_leaves_old_sidecar(project_copy, monkeypatch):
    folder = project_copy("support-bot")
    before = (folder / "sidecar.yaml").read_bytes()

    def crash(src, dst):
        raise OSError("power cut between write and rename")

    monkeypatch.setattr(fsutil, "_replace", crash)
    with pytest.raises(ProjectError, match="power cut"):
        upsert_decision(folder, tp(1))
    assert (folder / "sidecar.yaml").read_bytes() == before
    assert load_sidecar(folder)["phases"]["phase_2_training"] == "pending"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_invalid_result_is_never_written(project_copy):
    folder = project_copy("support-bot")
    before = (folder / "sidecar.yaml").read_bytes()
    with pytest.raises(ProjectError, match=r"(?s)after the change.*currentPhase: expected an integer"):
        update_sidecar(folder, lambda raw: raw.__setitem__("currentPhase", "three"))
    with pytest.raises(ProjectError, match="phases.phase_2_training"):
        update_sidecar(folder, lambda raw: raw["phases"].update(phase_2_training="finished"))
    assert (folder / "sidecar.yaml").read_bytes() == before


def test_failing_change_is_never_written(project_copy):
    folder = project_copy("support-bot")
    before = (folder / "sidecar.yaml").read_bytes()

    def change(raw):
        raw["currentPhase"] = 3
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError):
        update_sidecar(folder, change)
    assert (folder / "sidecar.yaml").read_bytes() == before


def test_unrepresentable_value_is_never_written(project_copy):
    folder = project_copy("support-bot")
    before = (folder / "sidecar.yaml").read_bytes()
    with pytest.raises(TypeError, match="cannot write this value"):
        update_sidecar(folder, lambda raw: raw.__setitem__("x", object()))
    assert (folder / "sidecar.yaml").read_bytes() == before


def test_update_refuses_an_invalid_file_on_disk(project_copy):
    folder = project_copy("support-bot")
    (folder / "sidecar.yaml").write_text("project_name: [unclosed\n")
    with pytest.raises(ProjectError, match="not valid YAML"):
        upsert_decision(folder, tp(1))
    assert (folder / "sidecar.yaml").read_text() == "project_name: [unclosed\n"


def test_update_rereads_the_file(project_copy):
    folder = project_copy("support-bot")
    upsert_decision(folder, tp(1))
    text = (folder / "sidecar.yaml").read_text()  # another step edits the file meanwhile
    (folder / "sidecar.yaml").write_text(text + "lastContinued: '2026-01-06'\n")
    upsert_decision(folder, tp(2))
    raw = load_sidecar(folder)
    assert raw["lastContinued"] == "2026-01-06"
    assert [d["id"] for d in tp_entries(raw)] == ["tp-001", "tp-002"]


def test_concurrent_upserts_in_one_process_lose_nothing(project_copy):
    folder = project_copy("support-bot")

    def worker(k):
        for j in range(4):
            upsert_decision(folder, tp(10 * k + j + 1))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = sorted(d["id"] for d in tp_entries(load_sidecar(folder)))
    assert ids == sorted(f"tp-{10 * k + j + 1:03d}" for k in range(6) for j in range(4))


# --- round trip of everything the step does not own -------------------------------------------

EVERY_TYPE = """\
# AI Engineering Project Sidecar
# custom header line: keep me

project_name: "round-trip"
created: 2026-01-05
stamp: 2026-01-05 10:20:30.5+02:00
naive_stamp: 2026-01-05 10:20:30
user_name: "Zoë Ångström 山田"
architecture: "fine-tuning"
currentPhase: 2
currentStep: "step-04-training"
stepsCompleted: [3, 1, 2]
ratio: 0.75
big: 12345678901234567890
neg: -3
sci: 1.5e+3
inf: .inf
nan: .nan
octal_looking: "0755"
yes_string: "yes"
on_bool: on
truthy: true
nothing: null
tilde: ~
empty_string: ""
colon_text: "key: value # not a comment"
quotes: 'it''s "quoted"'
multi: |
  line one
    indented line two
  line three: with colon

folded: >
  folded text
  continues here
trailing_spaces: "ends with space "
tabs: "a\\tb"
control: "bell\\x07 nel\\x85 ls\\u2028"
emoji: "🚀 done"
binary: !!binary aGVsbG8=
set_value: !!set {a, b}
nested:
  level1:
    level2: [1, two, 3.0, null, true, {k: v}]
    empty_map: {}
    empty_list: []
  "key with spaces": 1
  123: "int key"
steps:
  "04":
    status: in-progress
stories:
  - id: 1
    title: "Story with - dash"
outputs: {spec: "phase-2-training/spec.md"}
quality_gate: {passed: null, score: 0.0}
workflow_status: active
decisions:
  - id: "arch-001"
    choice: "fine-tuning"
    rationale: "Tone: consistent # always"
    knowledge_ref: "get_decisions:rag-vs-fine-tuning"
    phase: 0
    date: 2026-01-05
    extras: {reviewers: [a, b]}
  - id: "tp-002"
    choice: "old"
    rationale: "old"
    knowledge_ref: "x"
warnings_acknowledged: ["earlier warning"]
phases:
  phase_0_scoping: "complete"
  phase_2_training: "pending"
  phase_9_future: "pending"
"""


def test_round_trip_keeps_unknown_keys_and_every_yaml_type(tmp_path):
    folder = write_sidecar(tmp_path / "p", EVERY_TYPE)
    original = load_sidecar(folder)
    assert isinstance(original["binary"], bytes) and isinstance(original["set_value"], set)

    upsert_decision(folder, tp(1, rationale="multi\nline: with # and 'quotes' and \"more\"\n"))
    upsert_decision(folder, tp(2))  # replaces the existing tp-002 in place
    acknowledge_warnings(folder, ["GPU memory: tight", "earlier warning"])
    upsert_decision(folder, tp(1, choice="revised"))
    mark_phase_complete(folder)
    after = load_sidecar(folder)

    owned = {"decisions", "warnings_acknowledged", "currentPhase", "stepsCompleted", "phases"}
    for key, value in original.items():
        if key not in owned:
            assert same_yaml_value(after[key], value), key
    assert list(after) == list(original)  # key order
    assert after["decisions"][0] == original["decisions"][0]  # another step's entry, extra fields kept
    assert [d["id"] for d in after["decisions"]] == ["arch-001", "tp-002", "tp-001"]
    assert after["decisions"][1] == tp(2)
    assert after["decisions"][2]["choice"] == "revised"
    assert after["warnings_acknowledged"] == ["earlier warning", "GPU memory: tight"]
    assert after["stepsCompleted"] == [1, 2, 3, 4]
    assert after["currentPhase"] == 3
    assert after["phases"] == {"phase_0_scoping": "complete", "phase_2_training": "complete", "phase_9_future": "pending"}
    text = (folder / "sidecar.yaml").read_text()
    assert text.startswith("# AI Engineering Project Sidecar\n# custom header line: keep me\n\n")
    assert "Zoë Ångström 山田" in text  # non-ASCII stays readable


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(choice=st.text(min_size=1, max_size=80), rationale=st.text(min_size=1, max_size=300))
def test_any_user_text_round_trips_through_the_file(choice, rationale):
    folder = Path(tempfile.mkdtemp())
    try:
        shutil.copyfile(FIXTURES / "support-bot" / "sidecar.yaml", folder / "sidecar.yaml")
        upsert_decision(folder, tp(1, choice=choice, rationale=rationale))
        entry = tp_entries(yaml.safe_load((folder / "sidecar.yaml").read_text(encoding="utf-8")))[0]
        assert entry["choice"] == choice and entry["rationale"] == rationale
    finally:
        shutil.rmtree(folder)


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.dates(),
    st.datetimes(), st.datetimes(timezones=st.just(dt.timezone(dt.timedelta(hours=-5)))),
)  # fmt: skip
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=25
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), _values, max_size=6))
def test_dump_yaml_round_trips_any_yaml_data(data):
    assert same_yaml_value(yaml.safe_load(dump_yaml(data)), data)


def test_same_yaml_value_is_strict():
    assert not same_yaml_value({"a": 1, "b": 2}, {"b": 2, "a": 1})  # order matters
    assert not same_yaml_value([1], [True])
    assert same_yaml_value([float("nan")], [float("nan")])


# --- step 4's operations ------------------------------------------------------------------


def test_upsert_replaces_in_place_and_collapses_duplicates(project_copy):
    folder = project_copy("contract-assistant")
    upsert_decision(folder, tp(1))
    upsert_decision(folder, tp(2))
    update_sidecar(folder, lambda raw: raw["decisions"].append(tp(1, choice="duplicate")))
    upsert_decision(folder, tp(1, choice="final"))
    ids = [d["id"] for d in load_sidecar(folder)["decisions"]]
    assert ids == ["arch-001", "fp-001", "fp-002", "tp-001", "tp-002"]
    assert tp_entries(load_sidecar(folder))[0]["choice"] == "final"


def test_upsert_rejects_incomplete_entries(project_copy):
    folder = project_copy("support-bot")
    with pytest.raises(ValueError, match="knowledge_ref"):
        upsert_decision(folder, {"id": "tp-001", "choice": "a", "rationale": "b"})


def test_upsert_does_not_reopen_a_finished_phase(project_copy):
    folder = project_copy("support-bot")
    mark_phase_complete(folder)
    upsert_decision(folder, tp(3))
    assert phase_status(load_sidecar(folder)) == "complete"


def test_mark_complete_is_idempotent(project_copy):
    folder = project_copy("support-bot")
    for _ in range(2):
        raw = mark_phase_complete(folder)
    assert raw["stepsCompleted"] == [1, 2, 3, 4]
    assert raw["currentPhase"] == 3
    assert raw["phases"]["phase_2_training"] == "complete"
    assert load_sidecar(folder) == raw


def test_mark_complete_never_moves_the_workflow_back(project_copy):
    folder = project_copy("support-bot")
    update_sidecar(folder, lambda raw: raw.update(currentPhase=5, stepsCompleted=[5, 1, 2, 3]))
    raw = mark_phase_complete(folder)
    assert raw["currentPhase"] == 5
    assert raw["stepsCompleted"] == [1, 2, 3, 4, 5]


def test_mark_skipped(project_copy):
    folder = project_copy("docs-qa")
    raw = mark_phase_skipped(folder)
    assert raw["phases"]["phase_2_training"] == "skipped"
    assert raw["stepsCompleted"] == [1, 2, 3, 4]
    assert raw["currentPhase"] == 3
    assert raw["phases"]["phase_3_inference"] == "pending"


def test_missing_optional_keys_are_created(tmp_path):
    folder = write_sidecar(tmp_path / "p", "project_name: minimal\n")
    upsert_decision(folder, tp(1))
    acknowledge_warnings(folder, ["w"])
    raw = mark_phase_complete(folder)
    assert raw == {
        "project_name": "minimal",
        "decisions": [tp(1)],
        "phases": {"phase_2_training": "complete"},
        "warnings_acknowledged": ["w"],
        "currentPhase": 3,
        "stepsCompleted": [4],
    }


def test_acknowledge_warnings_appends_unique(project_copy):
    folder = project_copy("support-bot")
    acknowledge_warnings(folder, ["a", "b", "a"])
    raw = acknowledge_warnings(folder, ["b", "c"])
    assert raw["warnings_acknowledged"] == ["a", "b", "c"]
    with pytest.raises(ValueError):
        acknowledge_warnings(folder, [1])  # type: ignore[list-item]


def test_set_architecture(project_copy):
    folder = project_copy("unscoped")
    raw = set_architecture(folder, "hybrid")
    assert raw["architecture"] == "hybrid"
    assert list(raw).index("architecture") == list(load_sidecar(project_copy("support-bot"))).index("architecture")
    with pytest.raises(ValueError, match="one of rag-only, fine-tuning, hybrid"):
        set_architecture(folder, "fine_tuning")


def test_tp_entries_and_phase_status():
    raw = {
        "decisions": [{"id": "arch-001"}, {"id": "tp-002"}, {"id": "tp-1"}, "junk", {"id": "tp-001"}],
        "phases": {"phase_2_training": "in_progress"},
    }
    assert [d["id"] for d in tp_entries(raw)] == ["tp-002", "tp-001"]
    assert phase_status(raw) == "in_progress"
    assert phase_status({}) == "pending"
    assert tp_entries({"decisions": None}) == []
