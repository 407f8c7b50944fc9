"""The language model: factory, retries, structured output with one repair, usage.

The model proposes and the deterministic path stays in charge: every call here
returns a validated value, or None with a short notice for the user, and the
caller then takes the offline path for that turn. Nothing here records a
decision. Without `OPENAI_API_KEY` (or with `--offline`) no model is built.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ValidationError

from agent.context import Context
from agent.loop_cache import LoopCache, running_loop
from agent.prompts import preload, render
from agent.sanitize import sanitize_data

if TYPE_CHECKING:  # only a model run needs the chat-model classes: kept off the offline start-up
    from langchain_core.language_models import BaseChatModel

DEFAULT_MODEL = "gpt-4o-mini"
MODEL_ENV = "TRAINING_PIPELINE_MODEL"
OFFLINE_MODE = "Mode: offline (deterministic rules, no language model)."

T = TypeVar("T")

preload()


# --- configuration ------------------------------------------------------------------------


def has_api_key() -> bool:
    return bool(os.environ.get("OPENAI_API_KEY"))


def model_name(model: str | None = None) -> str:
    return model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def endpoint(base_url: str | None = None) -> str | None:
    """The OpenAI-compatible endpoint: the argument, `OPENAI_BASE_URL`, or None (OpenAI itself)."""
    return base_url or os.environ.get("OPENAI_BASE_URL") or None


def make_chat_model(model: str | None = None, base_url: str | None = None, *, timeout: float = 60.0) -> BaseChatModel:
    """A `ChatOpenAI` for any OpenAI-compatible server; the key comes from `OPENAI_API_KEY`.

    The client's own retries are off: `Facilitator` retries with its own backoff so it
    can tell the user when it gives up and falls back.
    """
    import httpx
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=model_name(model),
        base_url=endpoint(base_url),
        timeout=timeout,
        max_retries=0,
        # Our own clients: each event loop (see resolve_chat_model) gets connections of its own,
        # and httpx applies the usual proxy environment variables.
        http_client=httpx.Client(timeout=timeout),
        http_async_client=httpx.AsyncClient(timeout=timeout),
        http_socket_options=(),  # they only apply to langchain's default clients
    )


_models = LoopCache()


def llm_enabled(ctx: Context | None) -> bool:
    """Whether this run has a model, without building one (cheap enough for any node)."""
    if ctx is None:
        return False
    return ctx.chat_model is not None or (ctx.offline is not True and has_api_key())


def _model_key(ctx: Context) -> tuple:
    key = hash(os.environ.get("OPENAI_API_KEY"))  # a new key gets a new client
    return (model_name(ctx.model), endpoint(ctx.base_url), ctx.llm_timeout, key)


def resolve_chat_model(ctx: Context | None) -> BaseChatModel | None:
    """The model for a run: the injected one, else one built from the settings, else None (offline).

    One model per event loop and configuration: an async HTTP client belongs to the loop it
    first ran on.
    """
    if not llm_enabled(ctx):
        return None
    assert ctx is not None
    if ctx.chat_model is not None:
        return ctx.chat_model
    loop, key = running_loop(), _model_key(ctx)
    model = _models.get(loop, key)
    if model is None:
        model = _models.put(loop, key, make_chat_model(ctx.model, ctx.base_url, timeout=ctx.llm_timeout))
    return model


async def aresolve_chat_model(ctx: Context | None) -> BaseChatModel | None:
    """Like resolve_chat_model, for async nodes: a new client is built off the event loop
    (it reads certificate files, which must not block the loop)."""
    if not llm_enabled(ctx):
        return None
    assert ctx is not None
    if ctx.chat_model is not None:
        return ctx.chat_model
    loop = asyncio.get_running_loop()
    key = _model_key(ctx)
    model = _models.get(loop, key)
    if model is None:
        built = await asyncio.to_thread(make_chat_model, ctx.model, ctx.base_url, timeout=ctx.llm_timeout)
        model = _models.put(loop, key, built)
    return model


def context_from_args(offline: bool | None, model: str | None, base_url: str | None, knowledge_client: Any = None, **fields: Any) -> Context:
    """The Context the terminal builds from `--offline`, `--model` and `--base-url`."""
    return Context(offline=True if offline else None, model=model, base_url=base_url, knowledge_client=knowledge_client, **fields)


def _sanitized(parsed: Any) -> Any:
    """The model's parsed output with every string sanitized: it reaches the terminal and the artifacts."""
    if isinstance(parsed, BaseModel):
        return type(parsed).model_validate(sanitize_data(parsed.model_dump()))
    return sanitize_data(parsed)


def mode_description(ctx: Context | None) -> str:
    """One line for the terminal: which mode this run is in, and why (builds nothing)."""
    if not llm_enabled(ctx):
        if ctx is not None and ctx.offline is not True:
            return "Mode: offline (deterministic rules, no language model): OPENAI_API_KEY is not set."
        return OFFLINE_MODE
    assert ctx is not None
    if ctx.chat_model is not None:
        name = getattr(ctx.chat_model, "model_name", None) or type(ctx.chat_model).__name__
        return f"Mode: language model {name} (the deterministic rules take over if it fails)."
    from agent.redact import redact_url

    where = endpoint(ctx.base_url)
    at = f" at {redact_url(where)}" if where else ""  # a password in OPENAI_BASE_URL stays out of the terminal
    return f"Mode: language model {model_name(ctx.model)}{at} (the deterministic rules take over if it fails)."


# --- errors -------------------------------------------------------------------------------


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: timeouts, connection failures, 408/409/429 and 5xx."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return True
    status = _status(exc)
    if status is not None:
        return status in (408, 409, 429) or status >= 500
    try:
        import httpx
        import openai

        return isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, httpx.TransportError))
    except ImportError:  # pragma: no cover - both come with langchain-openai
        return False


def describe_error(exc: BaseException) -> str:
    status = _status(exc)
    if status == 429:
        return "rate limited, HTTP 429"
    if status is not None and status >= 500:
        return f"server error, HTTP {status}"
    if status is not None:
        return f"HTTP {status}"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or "timeout" in type(exc).__name__.lower():
        return "timed out"
    if "connection" in type(exc).__name__.lower():
        return "could not connect"
    return type(exc).__name__


def validation_message(exc: BaseException, limit: int = 1500) -> str:
    """A validation failure as short lines the model can act on."""
    if isinstance(exc, ValidationError):
        lines = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()))
            msg = err.get("msg", "invalid").removeprefix("Value error, ")
            lines.append(f"- {loc}: {msg}" if loc else f"- {msg}")
        text = "\n".join(lines)
    else:
        cause = exc.__cause__ if isinstance(exc.__cause__, ValidationError) else None
        text = validation_message(cause, limit) if cause else str(exc)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- usage --------------------------------------------------------------------------------

USAGE_KEYS = ("calls", "failed_calls", "input_tokens", "output_tokens", "total_tokens", "prompt_chars")


def message_chars(messages: list[BaseMessage]) -> int:
    total = 0
    for m in messages:
        total += len(m.content) if isinstance(m.content, str) else len(json.dumps(m.content, ensure_ascii=False))
    return total


def summarize_usage(calls: list[dict[str, Any]]) -> dict[str, int]:
    """Totals over call records, in the shape the state's `usage` reducer sums."""
    out = dict.fromkeys(USAGE_KEYS, 0)
    for c in calls:
        out["calls"] += 1
        out["failed_calls"] += 0 if c["outcome"] in ("ok", "invalid") else 1
        for k in ("input_tokens", "output_tokens", "total_tokens"):
            out[k] += c.get(k) or 0
        out["prompt_chars"] += c.get("prompt_chars", 0) + c.get("schema_chars", 0)
    return out


def prompt_chars(usage: dict[str, Any] | list[dict[str, Any]] | None) -> int:
    """Characters sent to the model in a session (messages plus tool schemas).

    Takes the state's `usage` totals or its `llm_calls` records; compare with
    (calls x the seed's length) for a "whole seed as system prompt" baseline.
    """
    if not usage:
        return 0
    if isinstance(usage, list):
        return summarize_usage(usage)["prompt_chars"]
    return int(usage.get("prompt_chars", 0))


def usage_line(usage: dict[str, Any] | None) -> str | None:
    """The progress line for the model's usage, or None when no model was called."""
    if not usage or not usage.get("calls"):
        return None
    failed = f", {usage['failed_calls']} failed" if usage.get("failed_calls") else ""
    return (
        f"Language model: {usage['calls']} calls{failed}, {usage.get('input_tokens', 0):,} input + "
        f"{usage.get('output_tokens', 0):,} output tokens, {usage.get('prompt_chars', 0):,} prompt characters."
    )


# --- the facilitator ----------------------------------------------------------------------


@dataclass
class Facilitator:
    """One node's access to the model: calls, their records, and the notice for the user."""

    model: BaseChatModel
    system: str
    retries: int = 2
    backoff: float = 0.5
    timeout: float = 60.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    notice: str | None = None

    @classmethod
    async def open(cls, ctx: Context | None, project: dict[str, Any] | None = None) -> "Facilitator | None":
        """The facilitator for this run, or None when it is offline."""
        model = await aresolve_chat_model(ctx)
        if model is None or ctx is None:
            return None
        project = project or {}
        system = render("persona", project_name=project.get("name") or "this project", architecture=project.get("architecture") or "fine-tuning")
        return cls(model=model, system=system, retries=ctx.llm_retries, backoff=ctx.llm_backoff, timeout=ctx.llm_timeout)

    def state_update(self) -> dict[str, Any]:
        """What the node adds to the state: the call records and their totals."""
        if not self.calls:
            return {}
        return {"llm_calls": list(self.calls), "usage": summarize_usage(self.calls)}

    async def structured(
        self,
        purpose: str,
        schema: type[BaseModel],
        prompt: str,
        check: Callable[[Any], T] | None = None,
    ) -> T | None:
        """Ask for `schema` via a tool call; validate with `check`; one repair; else None and a notice.

        `check` turns the parsed object into the caller's value and raises ValueError
        (a pydantic ValidationError is one) when it cannot be used.
        """
        from langchain_core.utils.function_calling import convert_to_openai_tool  # model runs only

        runnable = self.model.with_structured_output(schema, method="function_calling", include_raw=True)
        schema_chars = len(json.dumps(convert_to_openai_tool(schema), ensure_ascii=False))
        messages: list[BaseMessage] = [SystemMessage(self.system), HumanMessage(prompt)]
        error = ""
        for attempt in (1, 2):
            try:
                out = await self._invoke(runnable, messages, purpose, schema_chars)
            except Exception as exc:  # noqa: BLE001 - any model failure means the offline path
                self.notice = (
                    f"The language model was unavailable ({describe_error(exc)}), so this step used the rule-based path."
                )
                return None
            error = _parse_error(out)
            if not error:
                try:
                    parsed = _sanitized(out["parsed"])
                    return check(parsed) if check else parsed
                except (ValueError, TypeError, KeyError) as exc:
                    error = validation_message(exc)
            self.calls[-1]["outcome"] = "invalid"
            if attempt == 1:
                messages = [*messages, HumanMessage(render("repair", previous=_previous_args(out), error=error))]
        self.notice = "The language model's answer did not pass validation twice, so this step used the rule-based path."
        return None

    async def _invoke(self, runnable: Any, messages: list[BaseMessage], purpose: str, schema_chars: int) -> dict[str, Any]:
        """One logical call: attempts with exponential backoff on transient errors."""
        for attempt in range(self.retries + 1):
            record: dict[str, Any] = {
                "purpose": purpose, "attempt": attempt + 1, "outcome": "ok",
                "input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                "prompt_chars": message_chars(messages), "schema_chars": schema_chars,
            }
            self.calls.append(record)
            try:
                out = await asyncio.wait_for(runnable.ainvoke(messages), timeout=self.timeout)
            except Exception as exc:  # noqa: BLE001
                record["outcome"] = f"error: {describe_error(exc)}"
                if not is_transient(exc) or attempt == self.retries:
                    raise
                await asyncio.sleep(self.backoff * (2**attempt))
                continue
            usage = getattr(out.get("raw"), "usage_metadata", None) or {}
            for k in ("input_tokens", "output_tokens", "total_tokens"):
                record[k] = int(usage.get(k) or 0)
            return out
        raise AssertionError("unreachable")  # pragma: no cover


def _previous_args(out: dict[str, Any], limit: int = 4000) -> str:
    """What the model sent last time, so that a repair can keep what was right."""
    raw = out.get("raw")
    calls = getattr(raw, "tool_calls", None) or getattr(raw, "invalid_tool_calls", None) or []
    if calls:
        args = calls[0].get("args")
        text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    else:
        text = str(getattr(raw, "content", "") or "(nothing)")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse_error(out: dict[str, Any]) -> str:
    """Why a structured call's output is unusable, or '' when it parsed."""
    if out.get("parsing_error") is not None:
        return validation_message(out["parsing_error"])
    if out.get("parsed") is not None:
        return ""
    raw = out.get("raw")
    bad = getattr(raw, "invalid_tool_calls", None)
    if bad:
        return f"The tool call's arguments could not be read: {bad[0].get('error') or 'not valid JSON'}"
    return "No tool call was made: reply by calling the tool."
