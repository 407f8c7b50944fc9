"""Routing reads in the nodes' signatures: `Command[Literal[...]]`, except for the per-section nodes a
factory makes (graph.py gives those `destinations=`)."""

from __future__ import annotations

from typing import Literal, get_args, get_origin, get_type_hints

from langgraph.types import Command

from agent.nodes.common import QuestionNode, SectionNode
from agent.state import SECTIONS
from graph import builder


def test_node_name_literals_match_the_sections():
    assert get_args(SectionNode) == tuple(SECTIONS)
    asked = tuple(f"{s}_{q}" for s in SECTIONS for q in ("ask", "decide"))
    assert get_args(QuestionNode) == ("ask_architecture", "consult_retry", *asked, "menu", "revisit")


def test_every_hand_written_router_names_its_targets_in_its_signature():
    factory_made = {n for s in SECTIONS for n in (s, f"{s}_ask", f"{s}_recommend", f"{s}_decide")}
    checked = []
    for name, spec in builder.nodes.items():
        if name in factory_made:
            continue
        fn = getattr(spec.runnable, "func", None) or getattr(spec.runnable, "afunc", None)
        returns = get_type_hints(fn).get("return")
        if returns is not None and (returns is Command or get_origin(returns) is Command):
            (targets,) = get_args(returns)
            assert get_origin(targets) is Literal, name
            assert set(get_args(targets)) == set(spec.ends), name
            checked.append(name)
    assert {"load_project", "check_skip", "synthesize", "revisit", "menu"} <= set(checked)
