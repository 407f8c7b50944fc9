"""Drive the compiled graph with scripted answers, the way every front end does."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agent.context import Context
from evals import scenarios
from graph import builder

TODAY = "2026-04-01"

# Answers a plausible user gives on the fine-tuning fixture (support-bot): the scenarios' user,
# who also answers the architecture question and goes on when a knowledge query failed.
HAPPY: dict[str, Any] = {"architecture": "fine-tuning", **scenarios.HAPPY, "consult_knowledge.retry": "continue"}


def answer_from(script: dict[str, Any], menu: list[str] | None = None) -> Callable[[dict], Any]:
    """Answer decisions with yes, questions from `script`, and the menu from `menu` (then C)."""
    menu_answers = list(menu or [])
    queued: dict[str, list[Any]] = {k: list(v) if isinstance(v, list) else [v] for k, v in script.items()}

    def answer(payload: dict) -> Any:
        qid = payload["question_id"]
        if qid in queued and queued[qid]:
            return queued[qid].pop(0) if len(queued[qid]) > 1 else queued[qid][0]
        if qid == "menu":
            return menu_answers.pop(0) if menu_answers else "C"
        if qid.endswith(".decision"):
            return "yes"
        raise AssertionError(f"no scripted answer for {qid}: {payload['prompt'][:200]}")

    return answer


class Session:
    """One graph thread on one project, with the payloads it showed and the answers it got."""

    def __init__(self, loop: asyncio.AbstractEventLoop, knowledge: Any, project_dir: str, checkpointer: Any = None, today: str = TODAY):
        self.loop = loop
        self.app = builder.compile(checkpointer=checkpointer or InMemorySaver())
        self.config = {"configurable": {"thread_id": "test"}, "recursion_limit": 1000}
        self.context = Context(knowledge_client=knowledge, today=today)
        self.project_dir = project_dir
        self.payloads: list[dict] = []
        self.answers: list[Any] = []

    def _invoke(self, value: Any) -> dict | None:
        self.loop.run_until_complete(self.app.ainvoke(value, self.config, context=self.context))
        return self.pending()

    def pending(self) -> dict | None:
        snapshot = self.app.get_state(self.config)
        return snapshot.interrupts[0].value if snapshot.interrupts else None

    def start(self) -> dict | None:
        return self._invoke({"project_dir": self.project_dir})

    def resume(self, answer: Any) -> dict | None:
        self.answers.append(answer)
        return self._invoke(Command(resume=answer))

    def run(self, answer: Callable[[dict], Any], max_turns: int = 300) -> dict:
        payload = self.start()
        for _ in range(max_turns):
            if payload is None:
                return self.values()
            self.payloads.append(payload)
            payload = self.resume(answer(payload))
        raise AssertionError("session did not end")

    def run_until(self, answer: Callable[[dict], Any], stop: Callable[[dict], bool], max_turns: int = 300) -> dict | None:
        """Answer until a payload satisfies `stop`; return that payload (unanswered)."""
        payload = self.pending() or self.start()
        for _ in range(max_turns):
            if payload is None or stop(payload):
                if payload is not None:
                    self.payloads.append(payload)
                return payload
            self.payloads.append(payload)
            payload = self.resume(answer(payload))
        raise AssertionError("stop condition never met")

    def values(self) -> dict:
        return self.app.get_state(self.config).values

    @property
    def question_ids(self) -> list[str]:
        return [p["question_id"] for p in self.payloads]
