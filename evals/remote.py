"""Replaying against a LangGraph API server (`langgraph dev` or a deployment) through langgraph_sdk.

Same driver interface as the in-process graph: a thread per session label, the input
`{"project_dir": ...}` to start, `command={"resume": answer}` to answer. Runs are
streamed with `stream_mode="updates"` (rather than `runs.wait`) so the trajectory is
scored too. The project folder must be one the server can read: a local server.
"""

from __future__ import annotations

from typing import Any

from agent.transcript import Recorder

GRAPH_ID = "training_pipeline"


class RemoteError(RuntimeError):
    pass


class RemoteGraph:
    def __init__(self, url: str, graph_id: str = GRAPH_ID):
        from langgraph_sdk import get_client

        self.client = get_client(url=url)
        self.graph_id = graph_id
        self.threads: dict[str, str] = {}  # session label -> server thread id

    async def _thread(self, label: str) -> str:
        if label not in self.threads:
            self.threads[label] = (await self.client.threads.create())["thread_id"]
        return self.threads[label]

    async def _run(self, label: str, today: str, recorder: Recorder, **kwargs: Any) -> dict | None:
        thread_id = await self._thread(label)
        async for part in self.client.runs.stream(
            thread_id, self.graph_id, stream_mode="updates", context={"today": today}, **kwargs
        ):
            if part.event == "error":
                raise RemoteError(f"server run failed: {part.data}")
            if part.event == "updates" and isinstance(part.data, dict):
                for node, change in part.data.items():
                    recorder.on_update(node, change)
        return await self.pending(label)

    async def start(self, thread: str, project_dir: str, today: str, recorder: Recorder) -> dict | None:
        return await self._run(thread, today, recorder, input={"project_dir": project_dir})

    async def resume(self, thread: str, answer: Any, today: str, recorder: Recorder) -> dict | None:
        return await self._run(thread, today, recorder, command={"resume": answer})

    async def _state(self, label: str) -> dict[str, Any]:
        return dict(await self.client.threads.get_state(await self._thread(label)))

    async def pending(self, thread: str) -> dict | None:
        state = await self._state(thread)
        interrupts = list(state.get("interrupts") or [])
        interrupts += [i for task in state.get("tasks") or [] for i in task.get("interrupts") or []]
        return interrupts[0]["value"] if interrupts else None

    async def values(self, thread: str) -> dict[str, Any]:
        values = (await self._state(thread)).get("values")
        return dict(values) if isinstance(values, dict) else {}
