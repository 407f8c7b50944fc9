"""Play one scripted session on a project, resuming from its checkpoint: the process to SIGKILL.

    python -m evals.kill_driver PROJECT --knowledge RECORDS.json [--today DATE] [--thread ID]

Prints `ready` once everything is imported (a kill before that tests nothing but Python's
start-up), then plays the session to the end with the project checkpointer: a fresh
thread starts from the project folder, a thread stopped at a question gets that
question's next scripted answer, and one stopped inside a node runs it again. The last
line printed is JSON: the answers in the checkpoint and the seconds the session took.

The n-th time a question is asked it gets SCRIPT[question][n], counted from the
answers in the checkpoint, so a restarted driver answers exactly as an uninterrupted
one would. Past the script: yes to proposals, C at the menu.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from langgraph.types import Command  # noqa: E402

from agent.checkpoint import ProjectCheckpointer  # noqa: E402
from agent.context import Context  # noqa: E402
from agent.knowledge.models import QueryRecord  # noqa: E402
from evals.bench import WarmKnowledge  # noqa: E402
from graph import builder  # noqa: E402

# Invalid answers, option picks, edits, a form, menu detours and a revisit: every kind of turn.
SCRIPT: dict[str, list[Any]] = {
    "architecture": ["7", "hybrid"],
    "base_model.constraints": ["", "A single 24 GB GPU; Apache-2.0 licences only"],
    "base_model.decision": ["maybe", "2", "yes"],
    "training_approach.goals": ["About 20,000 reviewed transcripts; some preference pairs later", "keep as before"],
    "training_approach.decision": ["yes", "3", "yes"],
    "training_data.description": ["20,000 transcripts from 2024, deduplicated, personal data removed"],
    "training_data.decision": ["eval_split: lots", "eval_split: 0.1", "yes"],
    "peft.compute": ["One 24 GB GPU"],
    "peft.decision": ["r: 32, alpha: 64", "yes"],
    "hyperparameters.budget": ["Ten GPU hours"],
    "hyperparameters.decision": [{"num_epochs": "two"}, "yes"],
    "infrastructure.preference": ["A 24 GB GPU of our own, tracked with MLflow"],
    "infrastructure.decision": ['experiment: run "one" # first', "yes"],
    "menu": ["P", "What LoRA rank should I use?", "A", "C"],
    "menu.revisit": ["training_approach"],
    "consult_knowledge.retry": ["continue"],
}
THREAD = "kill-anywhere"


def scripted_answer(payload: dict, n: int) -> Any:
    qid = payload["question_id"]
    script = SCRIPT.get(qid, [])
    if n < len(script):
        return script[n]
    if qid == "menu":
        return "C"
    if payload["kind"] == "form":
        return "yes"
    if payload.get("options"):
        return payload["options"][0]["value"]
    return payload.get("default") or "No special constraints"


def load_knowledge(path: Path) -> WarmKnowledge:
    body = json.loads(path.read_text(encoding="utf-8"))
    records = {k: QueryRecord.model_validate(r) for k, r in body["records"].items()}
    return WarmKnowledge(records, QueryRecord.model_validate(body["menu"]))


def dump_knowledge(warm: WarmKnowledge, path: Path) -> None:
    body = {"records": {k: r.model_dump(mode="json") for k, r in warm.records.items()},
            "menu": warm.menu_record.model_dump(mode="json")}
    path.write_text(json.dumps(body), encoding="utf-8")


async def play(project: Path, knowledge: Any, today: str, thread: str, max_steps: int = 500) -> dict:
    app = builder.compile(checkpointer=ProjectCheckpointer(project))
    config = {"configurable": {"thread_id": thread}, "recursion_limit": 500}
    ctx = Context(knowledge_client=knowledge, today=today)
    state = await app.aget_state(config)
    if not state.values and not state.tasks:  # nothing checkpointed yet
        await app.ainvoke({"project_dir": str(project)}, config, context=ctx)
    for _ in range(max_steps):
        state = await app.aget_state(config)
        if state.interrupts:
            payload = state.interrupts[0].value
            n = sum(1 for a in state.values.get("answers") or [] if a["question_id"] == payload["question_id"])
            await app.ainvoke(Command(resume=scripted_answer(payload, n)), config, context=ctx)
        elif state.tasks:
            # Stopped inside a step. Not `state.next`: it leaves out tasks whose writes were saved, so
            # a kill between those writes and the next checkpoint looks like the end of the graph.
            await app.ainvoke(None, config, context=ctx)
        else:
            return state.values
    raise RuntimeError(f"the session did not end within {max_steps} steps")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--knowledge", type=Path, required=True, help="records written by dump_knowledge")
    parser.add_argument("--today", default="2026-04-01")
    parser.add_argument("--thread", default=THREAD)
    args = parser.parse_args(argv)
    knowledge = load_knowledge(args.knowledge)
    print("ready", flush=True)
    start = time.perf_counter()
    values = asyncio.run(play(args.project, knowledge, args.today, args.thread))
    answers = [[a["question_id"], a["answer"], a["accepted"]] for a in values.get("answers") or []]
    print(json.dumps({"answers": answers, "seconds": round(time.perf_counter() - start, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
