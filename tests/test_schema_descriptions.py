"""Studio turns the context schema into its configuration form and the input schema into the
input form, each field labelled by its description: every field must have one."""

from __future__ import annotations

import dataclasses

from agent.context import Context
from agent.state import PipelineInput, PipelineState
from graph import graph


def _undescribed(schema: dict) -> list[str]:
    return [k for k, v in schema["properties"].items() if not str(v.get("description") or "").strip()]


def test_every_context_setting_has_a_description():
    schema = graph.get_context_jsonschema()
    settings = [f.name for f in dataclasses.fields(Context) if f.name not in ("knowledge_client", "chat_model")]
    assert sorted(schema["properties"]) == sorted(settings)  # the injected objects stay off the form
    assert _undescribed(schema) == []


def test_every_input_key_has_a_description():
    schema = graph.get_input_jsonschema()
    assert sorted(schema["properties"]) == sorted(PipelineInput.__annotations__)
    assert _undescribed(schema) == []


def test_every_state_key_has_a_description():
    schema = graph.get_output_jsonschema()
    assert sorted(schema["properties"]) == sorted(PipelineState.__annotations__)
    assert _undescribed(schema) == []
