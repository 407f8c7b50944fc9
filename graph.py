"""Phase 2: Training Pipeline, as a LangGraph graph.

Read top to bottom: the nodes in the order the seed runs them, then the edges.
Nodes that branch return `Command(goto=...)`; their targets are listed here too,
so the whole shape is visible in one place.

    START -> load_project -> check_skip --rag-only--> write_skip_record -> handoff -> END
                                        --no architecture--> ask_architecture -> check_skip
                                        --already done--> menu
                                        --fine-tuning|hybrid--> welcome -> consult_knowledge
                                        --restarted after the knowledge stage--> the first open section
             load_project --no project folder named in the chat--> END (a reply asks for it)
             load_project --the thread waits at a question--> the node asking it (a new message answers it)
      consult_knowledge --a query failed--> consult_retry --retry--> consult_knowledge
      -> synthesize -> base_model -> training_approach -> training_data -> peft
      -> hyperparameters -> infrastructure -> write_artifacts -> menu
    each section: <s> (knowledge) -> <s>_ask -> <s>_recommend -> <s>_decide
                  <s>_decide --invalid--> <s>_decide, --other option or edits--> <s>_recommend
    menu --A--> revisit -> <section> ... -> write_artifacts -> menu
    menu --P--> progress -> menu;  menu --question--> answer_question -> menu
    menu --C--> verify_sidecar -> handoff -> END
"""

from typing import Any

from langgraph.graph import END, START, StateGraph

from agent.context import Context
from agent.nodes.finish import handoff, verify_sidecar, write_artifacts, write_skip_record
from agent.nodes.knowledge_stage import consult_knowledge, consult_retry, synthesize, welcome
from agent.nodes.menu import answer_question, menu, progress, revisit
from agent.nodes.project import ask_architecture, check_skip, load_project
from agent.nodes.sections import section_nodes
from agent.nodes.sync_forms import add_sync_forms
from agent.state import PipelineInput, PipelineState

builder = StateGraph(PipelineState, context_schema=Context, input_schema=PipelineInput)


def add_node(name: str, node: Any, **kwargs: Any) -> None:
    # Every node reads the whole state. Named here, LangGraph need not infer it from each node's
    # first parameter, which evaluates PipelineState's annotated fields again for every node: a
    # tenth of the terminal chat's start-up.
    builder.add_node(name, node, input_schema=PipelineState, **kwargs)


# Seed: skip handling, sections 1 and 2.
# load_project goes back to the question a thread was waiting at (a chat message answers it), or
# ends with a reply when a chat has not named a usable project folder.
add_node("load_project", load_project)
# A restarted thread that had the welcome and the knowledge stage goes on with its open sections.
add_node("check_skip", check_skip)
add_node("ask_architecture", ask_architecture)
add_node("write_skip_record", write_skip_record)
add_node("welcome", welcome)
add_node("consult_knowledge", consult_knowledge)
add_node("consult_retry", consult_retry)
add_node("synthesize", synthesize)

# Seed sections 3 to 8: four nodes per decision (see agent/nodes/sections.py).
# Every other node names where it may go in its `Command[Literal[...]]` return annotation; these are
# made by a factory per section, whose targets depend on the section, so they pass `destinations=`.
for name, node, destinations in section_nodes():
    add_node(name, node, destinations=destinations)

# Seed sections 9 to 12: artifacts, sidecar, the menu, and the hand-off.
add_node("write_artifacts", write_artifacts)
add_node("menu", menu)
add_node("revisit", revisit)
add_node("progress", progress)
add_node("answer_question", answer_question)
add_node("verify_sidecar", verify_sidecar)
add_node("handoff", handoff)

builder.add_edge(START, "load_project")
builder.add_edge("welcome", "consult_knowledge")
builder.add_edge("write_skip_record", "handoff")
builder.add_edge("write_artifacts", "menu")
builder.add_edge("verify_sidecar", "handoff")
builder.add_edge("handoff", END)

# graph.invoke / graph.stream as well as their async forms.
add_sync_forms(builder)

# For the LangGraph API server, which brings its own checkpointer; the terminal and
# the tests compile `builder` with the project checkpointer (agent/checkpoint.py).
graph = builder.compile(name="training_pipeline")
