"""The graph exported from graph.py works with invoke and stream as well as their async forms."""

from __future__ import annotations

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

import graph as exported
from agent.context import Context
from tests.driver import HAPPY, TODAY, answer_from


def test_invoke_and_stream_run_a_whole_session(project_copy):
    project = project_copy("support-bot")
    app = exported.builder.compile(checkpointer=InMemorySaver())
    assert exported.graph.get_graph().nodes.keys() == app.get_graph().nodes.keys()
    config = {"configurable": {"thread_id": "sync"}, "recursion_limit": 1000}
    context = Context(offline=True, today=TODAY)  # the embedded knowledge server, started for sync runs
    answer = answer_from(HAPPY)
    out = app.invoke({"project_dir": str(project)}, config, context=context)  # consult_knowledge is async
    payload = out["__interrupt__"][0].value
    assert payload["question_id"] == "base_model.constraints"
    nodes: list[str] = []
    for _ in range(100):
        for chunk in app.stream(Command(resume=answer(payload)), config, context=context, stream_mode="updates"):
            nodes += list(chunk)
        state = app.get_state(config)
        if not state.interrupts:
            break
        payload = state.interrupts[0].value
    assert {"base_model_recommend", "infrastructure", "answer_question"} - set(nodes) == {"answer_question"}
    values = app.get_state(config).values
    assert len(values["decisions"]) == 6 and values["handoff"]
    assert (project / "phase-2-training" / "spec.md").is_file()
