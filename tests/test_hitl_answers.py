"""The human-in-the-loop request beside each payload, and decisions read as the terminal's answers.

In process, with the compiled graph: the chat-only inputs (a message naming the folder, a message
answering the waiting question) and the mapping in agent/interview.py.
"""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agent.context import Context
from agent.interview import FormField, InvalidAnswer, Option, Question, describe, from_decisions, hitl_request
from agent.nodes.project import folder_named
from graph import builder
from tests.driver import HAPPY, TODAY

FIELDS = [
    FormField(name="r", label="Rank", type="integer"),
    FormField(name="dropout", label="Dropout", type="number", required=False),
    FormField(name="target_modules", label="Target modules", type="list"),
    FormField(name="method", label="Method", type="string", choices=["lora", "qlora"]),
]
FORM = Question(
    question_id="peft.decision", section="peft", kind="form", title="PEFT: your decision",
    prompt="### PEFT\n\n| Field | Value |\n|---|---|\n| r | 16 |\n\nAnswer **yes** to record this decision.",
    options=[Option(value="lora", label="LoRA"), Option(value="qlora", label="QLoRA")],
    default={"r": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"], "method": "lora"}, fields=FIELDS,
)
TEXT = Question(question_id="peft.compute", section="peft", kind="text", title="Compute", prompt="Intro.\n\n**What GPU do you have?**")
MENU = Question(question_id="menu", section="menu", kind="menu", title="Menu", prompt="**Pick:** [A] [P] [C]", default="C",
                options=[Option(value="P", label="View progress"), Option(value="C", label="Continue")])


def decisions(*items: dict) -> dict:
    return {"decisions": list(items)}


def edit(name: str, **args) -> dict:
    return {"type": "edit", "edited_action": {"name": name, "args": args}}


def test_request_has_one_action_with_the_title_proposal_and_allowed_decisions():
    req = hitl_request(FORM)
    assert req["action_requests"][0]["name"] == "PEFT: your decision"
    assert req["action_requests"][0]["args"] == FORM.default
    assert req["review_configs"] == [{"action_name": "PEFT: your decision", "allowed_decisions": ["approve", "edit", "reject"]}]
    assert hitl_request(TEXT)["review_configs"][0]["allowed_decisions"] == ["edit"]
    assert hitl_request(TEXT)["action_requests"][0]["args"] == {"answer": ""}
    assert hitl_request(MENU)["review_configs"][0]["allowed_decisions"] == ["edit", "approve"]


def test_description_is_the_question_not_the_tables():
    assert describe(TEXT) == "**What GPU do you have?**"
    form = describe(FORM)
    assert "| Field |" not in form and "1. **LoRA** (`lora`)" in form
    assert describe(TEXT.model_copy(update={"error": "Too long."})).startswith("**Too long.**")


def test_approve_is_yes_or_the_default():
    assert from_decisions(FORM, decisions({"type": "approve"})) == "yes"
    assert from_decisions(MENU, decisions({"type": "approve"})) == "C"
    with pytest.raises(InvalidAnswer, match="approve"):
        from_decisions(TEXT, decisions({"type": "approve"}))  # nothing to keep: answer it


def test_edit_of_a_form_is_the_changed_fields_typed():
    args = {"r": "32", "dropout": "null", "target_modules": '["q_proj", "k_proj"]', "method": "LoRA"}
    assert from_decisions(FORM, decisions(edit("PEFT: your decision", **args))) == {
        "r": 32, "dropout": None, "target_modules": ["q_proj", "k_proj"]}
    unchanged = {"r": "16", "dropout": "0.05", "target_modules": '["q_proj","v_proj"]', "method": "lora"}
    assert from_decisions(FORM, decisions(edit("x", **unchanged))) == "yes"
    with pytest.raises(InvalidAnswer, match="r: 'big' is not a valid integer"):
        from_decisions(FORM, decisions(edit("x", r="big")))
    with pytest.raises(InvalidAnswer, match="no field 'rank2'"):
        from_decisions(FORM, decisions(edit("x", rank2="1")))


def test_edit_of_a_question_is_its_answer_and_reject_is_free_text():
    assert from_decisions(TEXT, decisions(edit("Compute", answer="One 24 GB GPU"))) == "One 24 GB GPU"
    assert from_decisions(FORM, decisions({"type": "reject", "message": " 2 "})) == "2"
    with pytest.raises(InvalidAnswer):
        from_decisions(FORM, decisions({"type": "reject", "message": ""}))
    with pytest.raises(InvalidAnswer, match="not possible"):
        from_decisions(TEXT, decisions({"type": "reject", "message": "no"}))
    with pytest.raises(InvalidAnswer, match="one decision"):
        from_decisions(TEXT, {"decisions": []})
    assert from_decisions(TEXT, "plain text") == "plain text"  # every other answer passes unchanged
    assert from_decisions(FORM, {"r": 8}) == {"r": 8}


@pytest.mark.parametrize("text, expected", [
    ("/srv/projects/support-bot", "/srv/projects/support-bot"),
    ('{"project_dir": "/srv/p"}', "/srv/p"),
    ('"/srv/with space"', "/srv/with space"),
    ("Please use `/srv/p` for this.", "/srv/p"),
    ("my project is at ./demo.", "demo"),
    ("hello", None),
    ("", None),
])
def test_folder_named_in_a_message(text, expected):
    assert folder_named(text) == expected


def test_chat_messages_start_answer_and_restart_in_process(loop, knowledge, project_copy):
    """Messages only: the folder, then an answer typed while the question waits, then a restart."""
    app = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "chat"}, "recursion_limit": 200}
    ctx = Context(knowledge_client=knowledge, today=TODAY)

    def send(value):
        loop.run_until_complete(app.ainvoke(value, config, context=ctx))
        snap = app.get_state(config)
        return snap.values, (snap.interrupts[0].value if snap.interrupts else None)

    values, pending = send({"messages": [HumanMessage(content=[{"type": "text", "text": "hi"}])]})
    assert pending is None and "Which project" in values["messages"][-1].content
    project = project_copy("support-bot")
    values, pending = send({"messages": [HumanMessage(content=json.dumps({"project_dir": str(project)}))]})
    assert pending["question_id"] == "base_model.constraints"
    assert values["messages"][-1].additional_kwargs["question_id"] == "base_model.constraints"
    values, pending = send({"messages": [HumanMessage(content=HAPPY["base_model.constraints"])]})
    assert pending["question_id"] == "base_model.decision"  # the message answered the waiting question
    assert values["section_context"]["base_model"] == HAPPY["base_model.constraints"]
    values, pending = send({"messages": [HumanMessage(content="maybe")]})  # neither yes, an option nor an edit
    assert pending["question_id"] == "base_model.decision" and pending["error"]
    assert pending["error"] in values["messages"][-1].content
    values, pending = send(Command(resume={"decisions": [{"type": "approve"}]}))
    assert pending["question_id"] == "training_approach.goals" and "base_model" in values["decisions"]
    welcomes = [m for m in values["messages"] if "Fine-tuning Your Model" in str(m.content)]
    values, pending = send({"project_dir": str(project)})  # a restart while a question waits: the same question
    assert pending["question_id"] == "training_approach.goals"
    assert [m for m in values["messages"] if "Fine-tuning Your Model" in str(m.content)] == welcomes
    assert sum(m.additional_kwargs.get("question_id") == "training_approach.goals" for m in values["messages"]) == 1
