"""A tool-calling fake chat model, and canned tool arguments built from the prompts we send.

The canned arguments read what a real model would read (the baseline JSON and the knowledge ids
in the prompt) so the same answers serve the fake model and the fake OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any, Callable

import httpx
import openai
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from agent.offline import SYNTHESIS_ASPECTS

TOKENS = {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150}


@dataclass
class Delay:
    """A reply that arrives after `seconds` (to exercise timeouts)."""

    seconds: float
    then: Any


Responder = Callable[[str, list[BaseMessage]], Any]


class ToolFakeChatModel(GenericFakeChatModel):
    """Replies from a script (or a responder); `bind_tools` returns the model itself.

    A script item is an AIMessage, an exception to raise, a Delay, or a callable
    `(tool_name, messages) -> item`. Every request's messages are kept in `requests`.
    """

    messages: Any = Field(default_factory=lambda: iter(()))
    script: list[Any] = Field(default_factory=list)
    responder: Any = None
    requests: list[list[BaseMessage]] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    disable_streaming: bool = True

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ToolFakeChatModel":  # type: ignore[override]
        self.tools.append(convert_to_openai_tool(tools[0])["function"]["name"])
        return self

    def _next(self, messages: list[BaseMessage]) -> Any:
        self.requests.append(list(messages))
        if self.script:
            item = self.script.pop(0)
        elif self.responder is not None:
            item = self.responder
        else:
            raise AssertionError("the fake model was called with nothing left to say")
        return item(self.tools[-1], messages) if callable(item) and not isinstance(item, BaseException) else item

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        item = self._next(messages)
        if isinstance(item, Delay):
            raise AssertionError("Delay needs the async API")
        if isinstance(item, BaseException):
            raise item
        return ChatResult(generations=[ChatGeneration(message=item)])

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        item = self._next(messages)
        if isinstance(item, Delay):
            await asyncio.sleep(item.seconds)
            item = item.then
        if isinstance(item, BaseException):
            raise item
        return ChatResult(generations=[ChatGeneration(message=item)])


def tool_call(name: str, args: dict[str, Any], tokens: dict[str, int] | None = None) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": "call_1", "type": "tool_call"}], usage_metadata=tokens or TOKENS)


def malformed_call(name: str) -> AIMessage:
    return AIMessage(
        content="",
        invalid_tool_calls=[{"name": name, "args": '{"reasoning": [', "id": "call_1", "error": "Unterminated JSON", "type": "invalid_tool_call"}],
        usage_metadata=TOKENS,
    )


def text_reply(text: str) -> AIMessage:
    """A reply with no tool call at all."""
    return AIMessage(content=text, usage_metadata=TOKENS)


def http_error(status: int) -> openai.APIStatusError:
    response = httpx.Response(status, request=httpx.Request("POST", "http://model.test/v1/chat/completions"))
    cls = {429: openai.RateLimitError, 401: openai.AuthenticationError, 400: openai.BadRequestError}.get(status, openai.InternalServerError)
    return cls(f"HTTP {status}", response=response, body=None)


# --- canned answers read from the prompt ------------------------------------------------------


def prompt_text(messages: list[Any]) -> str:
    """The human prompt (the last user message) of a request, as LangChain messages or OpenAI dicts."""
    for m in reversed(messages):
        role = getattr(m, "type", None) or m.get("role")
        if role in ("human", "user"):
            content = getattr(m, "content", None) if not isinstance(m, dict) else m.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def first_prompt(messages: list[Any]) -> str:
    """The first user message: the task's prompt (a repair request comes after it)."""
    for m in messages:
        role = getattr(m, "type", None) or (m.get("role") if isinstance(m, dict) else None)
        if role in ("human", "user"):
            return getattr(m, "content", None) if not isinstance(m, dict) else m.get("content")
    return ""


def knowledge_ids(prompt: str) -> list[str]:
    return re.findall(r"id `([^`]+)`", prompt)


def baseline(prompt: str) -> dict[str, Any]:
    m = re.search(r"It is the baseline.*?```json\n(.*?)\n```", prompt, re.S)
    assert m, "the recommendation prompt shows its baseline as JSON"
    return json.loads(m.group(1))


def recommendation_args(prompt: str, **overrides: Any) -> dict[str, Any]:
    base = baseline(prompt)
    ids = knowledge_ids(prompt)
    args = {
        "reasoning": ["Model step: your answer and the knowledge point the same way.", "Model step: the baseline holds."],
        "choice_value": base["choice_value"],
        "fields": base["fields"],
        "rationale": "Model rationale: the baseline fits the stated constraints.",
        "cited_ids": ids[:1] + ["invented-0000-id"],
    }
    return {**args, **overrides}


def synthesis_args(prompt: str) -> dict[str, Any]:
    ids = knowledge_ids(prompt)
    return {
        "insights": [{"aspect": aspect, "text": f"Model insight on {aspect.lower()}.", "cited_ids": ids[i % len(ids): i % len(ids) + 1]}
                     for i, (aspect, _) in enumerate(SYNTHESIS_ASPECTS)],
        "dataset_note": "Model note: budget real effort for turning tickets into clean pairs.",
    }


def menu_args(prompt: str) -> dict[str, Any]:
    ids = knowledge_ids(prompt)
    return {"in_scope": True, "answer": "Model answer: start at r=16 and raise it for harder tasks.", "cited_ids": ids[:1] + ["not-a-real-id"]}


def canned_args(tool: str, messages: list[Any]) -> dict[str, Any]:
    """Valid arguments for any of our tools, read from the request's prompt."""
    prompt = first_prompt(messages)
    if tool.endswith("Recommendation"):
        return recommendation_args(prompt)
    if tool == "KnowledgeSynthesis":
        return synthesis_args(prompt)
    if tool == "MenuAnswer":
        return menu_args(prompt)
    if tool == "AnswerReading":
        return {"understood": False, "summary": "I did not find a change in that."}
    raise AssertionError(f"no canned answer for {tool}")


def canned(tool: str, messages: list[BaseMessage]) -> AIMessage:
    return tool_call(tool, canned_args(tool, messages))
