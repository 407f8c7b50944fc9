"""A chat model that answers with the responses a transcript recorded, in order.

Replaying a session recorded with a model is then deterministic and offline: the
graph sends its real prompts, and gets back what the model said at the time.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field


class TranscriptExhausted(RuntimeError):
    """The replay asked the model more often than the recorded session did: it diverged."""


class RecordedChatModel(BaseChatModel):
    responses: list[dict[str, Any]] = Field(default_factory=list)
    served: int = 0

    @property
    def _llm_type(self) -> str:
        return "recorded-transcript"

    def bind_tools(self, tools: Any, **kwargs: Any) -> "RecordedChatModel":  # type: ignore[override]
        return self  # the recorded response already holds the tool call the prompt asked for

    def _next(self) -> AIMessage:
        if self.served >= len(self.responses):
            raise TranscriptExhausted(
                f"the replay made model call {self.served + 1}, the recorded session made {len(self.responses)}"
            )
        entry = self.responses[self.served]
        self.served += 1
        calls = [{"name": c["name"], "args": c["args"], "id": f"call_{self.served}_{i}", "type": "tool_call"}
                 for i, c in enumerate(entry.get("tool_calls") or [])]
        usage = entry.get("usage") or None  # the recorded call's tokens, so usage totals replay too
        return AIMessage(content=entry.get("content") or "", tool_calls=calls, usage_metadata=usage)

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next())])

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return self._generate(messages, stop, run_manager, **kwargs)
