"""`training-pipeline`: the terminal front end and the project's other commands."""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel

from agent.sanitize import escape_markup, sanitize

# Nodes whose message is also the notice at the top of the next menu: printed once, there.
SHOWN_IN_MENU = {"progress", "answer_question", "check_skip"}
THREAD_ID = "phase-2-training"  # one thread per project folder; the checkpoint lives in the folder
SHOW_AGAIN = "?"  # typed at a prompt: the whole question again, its long tables included
LONG_TABLE_ROWS = 12  # a Markdown table longer than this is shown once per question, then on request

console = Console(highlight=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="training-pipeline", description="Design an LLM training pipeline (Phase 2) with an AI facilitator.")
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="Run Phase 2 on a project folder in the terminal")
    chat.add_argument("--project", required=True, help="Folder holding sidecar.yaml")
    chat.add_argument("--offline", action="store_true", help="Deterministic mode, no language model")
    chat.add_argument("--model", help="Chat model name (or TRAINING_PIPELINE_MODEL)")
    chat.add_argument("--base-url", help="OpenAI-compatible endpoint (or OPENAI_BASE_URL)")
    chat.add_argument("--record", help="Write a transcript of this session to FILE")

    demo = sub.add_parser("init-demo", help="Create a demo project folder")
    demo.add_argument("dir")
    demo.add_argument("--architecture", choices=["fine-tuning", "hybrid", "rag-only"], default="fine-tuning")

    kb = sub.add_parser("kb", help="The embedded Knowledge MCP server")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)
    serve = kb_sub.add_parser("serve", help="Serve the embedded knowledge base over MCP")
    serve.add_argument("--transport", choices=["stdio", "streamable-http", "sse"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--api-key", help="Require this X-API-Key on HTTP transports")
    serve.add_argument("--insecure", action="store_true", help="Allow a host beyond loopback without an API key")

    sub.add_parser("eval", help="Replay recorded transcripts as regression evals", add_help=False)
    sub.add_parser("studio", help="Serve the graph to LangGraph Studio (langgraph dev; its options pass through)", add_help=False)
    sub.add_parser("estimate", help="Training memory, GPU fit, time and cost", add_help=False)
    sub.add_parser("export", help="Write TRL or Axolotl configs from a project's decisions", add_help=False)
    sub.add_parser("preflight", help="Train each exported stage two steps on a small model", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # eval, estimate and export own their flags.
    if argv and argv[0] == "eval":
        return _eval_main()(argv[1:])
    if argv and argv[0] == "studio":
        from agent.studio import studio_main

        return studio_main(argv[1:])
    if argv and argv[0] == "estimate":
        from agent.planning.cli import estimate_main

        return estimate_main(argv[1:])
    if argv and argv[0] == "export":
        from agent.planning.cli import export_main

        return export_main(argv[1:])
    if argv and argv[0] == "preflight":
        from agent.planning.cli import preflight_main

        return preflight_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "init-demo":
        return init_demo_command(args)
    if args.command == "kb":
        from agent.knowledge.server import main as kb_main

        kb_args = ["--transport", args.transport, "--host", args.host, "--port", str(args.port)]
        if args.api_key:
            kb_args += ["--api-key", args.api_key]
        if args.insecure:
            kb_args.append("--insecure")
        return kb_main(kb_args) or 0
    if args.command == "chat":
        from agent.prompts import PromptError

        # Start-up creates some 200,000 objects and keeps nearly all of them (modules, schemas):
        # the collector's full passes over them cost a fifth of the wait for the first question.
        # It comes back on while the user reads that question (collect_while_reading).
        gc.disable()
        try:
            return asyncio.run(chat(args))
        except KeyboardInterrupt:
            return _stopped(args.project)
        except PromptError as exc:  # at start: the prompts are read when the graph is imported
            console.print(f"[red]{exc}[/red]")
            return 2
        finally:
            gc.enable()
    return 2


def _eval_main() -> Any:
    from evals.cli import eval_main  # shipped beside agent/, with its transcripts

    return eval_main


def init_demo_command(args: argparse.Namespace) -> int:
    from agent.demo import init_demo

    try:
        root = init_demo(args.dir, args.architecture)
    except FileExistsError as exc:
        console.print(f"[red]{escape_markup(exc)}[/red]")
        return 2
    console.print(f"Created a {args.architecture} demo project in {root}.\nStart with: training-pipeline chat --project {args.dir}")
    return 0


def _stopped(project: str) -> int:
    """A stop the user asked for (Ctrl-C, Ctrl-D): not an error, so the exit status is 0."""
    console.print(f"\n[yellow]Stopped. Every answer so far is saved; resume with:[/yellow] training-pipeline chat --project {escape_markup(project)}")
    return 0


AFTER_PROMPT_S = 0.25  # the prompt is on screen well within this; nobody has answered yet


def collect_while_reading() -> None:
    """Turn the collector back on after start-up (see main), without making anyone wait for it:
    one full pass runs while the user reads the first question (input() holds no lock while it
    waits), then what survived start-up is frozen, so that later passes skip the long-lived objects.
    The pass holds the interpreter: it starts once the prompt is on screen, not before it."""
    if gc.isenabled():
        return

    def collect() -> None:
        gc.collect()
        gc.freeze()
        gc.enable()

    timer = threading.Timer(AFTER_PROMPT_S, collect)
    timer.daemon = True
    timer.start()


def read_line(prompt: str) -> str:
    """input(), where one Ctrl-C stops at once.

    The prompt blocks inside the event loop that asyncio.run drives, and asyncio.run's own SIGINT
    handler only cancels the main task: a cancellation that cannot arrive while input() is still
    waiting, so the first Ctrl-C showed nothing until Enter or a second Ctrl-C. While the prompt
    waits, Python's default handler raises KeyboardInterrupt in the read itself.
    """
    if threading.current_thread() is not threading.main_thread():
        return input(prompt)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return input(prompt)
    finally:
        signal.signal(signal.SIGINT, previous)


def _session_modules() -> tuple[Any, Any, Any, Any]:
    """What a session needs besides the knowledge client: imported while its server starts."""
    from agent.checkpoint import ProjectCheckpointer
    from agent.llm import context_from_args, mode_description
    from graph import graph

    return graph, ProjectCheckpointer, context_from_args, mode_description


async def chat(args: argparse.Namespace) -> int:
    from agent.knowledge.spawn import embedded_configured, start_embedded

    # First of all, the embedded knowledge server (when the settings leave it at that): its start-up
    # runs on the other core while this process imports what the first question needs.
    started = await start_embedded() if embedded_configured() else None
    try:
        return await _chat(args, started)
    finally:
        if started is not None:  # normally ended with its session already; not if the chat stopped first
            await started.stop()


async def _chat(args: argparse.Namespace, started: Any) -> int:
    from agent.knowledge.client import KnowledgeClient, KnowledgeConfig
    from agent.lock import ProjectLock
    from agent.prompts import preload
    from agent.sidecar import ProjectError, load_sidecar

    preload()  # missing or broken prompts stop the chat here, before the project is touched
    # Absolute from the start: the run works on this folder wherever its checkpoint was made.
    project = Path(args.project).expanduser().absolute()
    try:
        load_sidecar(project)
        lock = ProjectLock(project, holder="training-pipeline chat").acquire()
    except ProjectError as exc:
        console.print(f"[red]{escape_markup(exc)}[/red]")
        return 2
    saver = None
    try:
        config = KnowledgeConfig.load()
        async with KnowledgeClient(config, started=started) as knowledge:
            # The first question needs both the knowledge session and the graph's modules: the
            # session opens (over the server started above) while this process imports them.
            starting = asyncio.create_task(_open_knowledge(knowledge, project))
            graph, ProjectCheckpointer, context_from_args, mode_description = await asyncio.to_thread(_session_modules)
            saver = ProjectCheckpointer(project)
            app = graph.copy(update={"checkpointer": saver})  # the compiled graph, not a second compile
            context = context_from_args(args.offline, args.model, args.base_url, knowledge, project_dir=str(project))
            console.print(f"[dim]{escape_markup(mode_description(context))}[/dim]")
            recorder = _recorder(args.record, project, context, config) if args.record else None
            session = ChatSession(app, context, str(project), recorder=recorder)
            await starting
            return await session.run()
    except ProjectError as exc:
        console.print(f"[red]{escape_markup(exc)}[/red]")
        return 2
    except (KeyboardInterrupt, EOFError, asyncio.CancelledError):
        return _stopped(args.project)
    finally:
        if saver is not None:
            saver.close()
        lock.release()


async def _open_knowledge(knowledge: Any, project: Path) -> None:
    """Open the knowledge session and, for a new session on the project, ask at once for what the
    first question shows: the server answers on the other core while this process imports the graph."""
    from agent.checkpoint import ProjectCheckpointer
    from agent.knowledge.catalog import FIRST_QUESTION_STAGES, queries_for

    await knowledge.start()
    if not ProjectCheckpointer.database_in(project).exists():
        knowledge.prefetch([q for stage in FIRST_QUESTION_STAGES for q in queries_for(stage)])


def _recorder(path: str, project: Path, context: Any, config: Any) -> Any:
    """The transcript recorder for `--record FILE`: appends when FILE holds an earlier session."""
    from agent.sidecar import ProjectError
    from agent.transcript import Recorder, TranscriptError

    # Only the embedded server can be replayed from the transcript alone; any other is recorded.
    embedded = config.transport == "stdio" and config.command == type(config)().command
    try:
        from agent.llm import llm_enabled

        return Recorder.for_project(path, project, today=context.date(), knowledge_source="embedded" if embedded else "recorded",
                                    mode="model" if llm_enabled(context) else "offline")
    except (TranscriptError, OSError) as exc:
        raise ProjectError(f"--record: {exc}") from None


class ChatSession:
    """Drives the graph: stream until a question, show it, read the answer, resume."""

    def __init__(self, app: Any, context: Any, project_dir: str, recorder: Any = None):
        self.app = app
        self.context = context
        self.project_dir = project_dir
        self.config = {"configurable": {"thread_id": THREAD_ID}, "recursion_limit": 500}
        self.recorder = recorder  # agent.transcript.Recorder for --record
        self._values: dict = {}
        self._seen_tables: dict[str, set[str]] = {}  # question id -> long tables already on screen
        if recorder is not None:
            self.config["callbacks"] = recorder.callbacks

    async def run(self) -> int:
        from langgraph.types import Command

        snapshot = await self.app.aget_state(self.config)
        pending = _interrupt(snapshot)
        self._values = dict(snapshot.values or {})
        self._begin_record(pending, has_checkpoint=bool(snapshot.values))
        payload = None
        try:
            if pending is not None:
                console.print("[green]Resuming where you stopped.[/green]")
                payload = pending
            elif snapshot.next or snapshot.tasks:  # stopped mid-step (killed while working): finish that step first
                # (`next` alone leaves out tasks whose writes were saved before the kill: the run looks ended)
                console.print("[green]Resuming the step that was interrupted.[/green]")
                payload = await self._advance(None)
            else:
                payload = await self._advance({"project_dir": self.project_dir})
            while payload is not None:
                answer = self._read_answer(payload)
                if self.recorder is not None:
                    self.recorder.on_answer(payload, answer)
                payload = None  # answered: if the run is stopped now, no question is left open
                payload = await self._advance(Command(resume=answer))
        finally:
            self._save_record(payload)
        snapshot = await self.app.aget_state(self.config)
        handoff = snapshot.values.get("handoff")
        if handoff:
            console.print(f"[bold green]Done.[/bold green] Next: {escape_markup(handoff['title'])} ({escape_markup(handoff['step_file'])}).")
        return 0

    async def _advance(self, value: Any) -> dict | None:
        """Run until the next question (returned) or the end (None), printing what the graph says."""
        with console.status("Working (consulting the knowledge base)…", spinner="dots") as status:
            async for update in self.app.astream(value, self.config, context=self.context, stream_mode="updates"):
                for node, change in update.items():
                    if self.recorder is not None:
                        self.recorder.on_update(node, change)
                    if node == "__interrupt__" or node in SHOWN_IN_MENU or not isinstance(change, dict):
                        continue
                    if change.get("messages"):
                        # The spinner's line is cleared before a message starts, and drawn again after
                        # it: a message never continues the spinner's line.
                        status.stop()
                        self._show_messages(change["messages"])
                        status.start()
        snapshot = await self.app.aget_state(self.config)
        self._values = dict(snapshot.values or {})
        return _interrupt(snapshot)

    def _begin_record(self, pending: dict | None, has_checkpoint: bool) -> None:
        if self.recorder is None:
            return
        thread = self.recorder.thread_label(THREAD_ID, has_checkpoint)
        resumed = pending is not None and self.recorder.can_resume(thread)
        if pending is not None and not resumed:
            console.print("[yellow]Recording starts at a question from an unrecorded session: the replay starts afresh and may differ.[/yellow]")
        self.recorder.begin_session(thread, resumed=resumed, today=self.context.date())

    def _save_record(self, pending: dict | None) -> None:
        """Write the transcript so far: after a stop, the next `--record` to the same file appends."""
        if self.recorder is None:
            return
        self.recorder.end_session(pending)
        self.recorder.finish(self.project_dir, self._values)
        self.recorder.save()

    def _show_messages(self, messages: list) -> None:
        from agent.interview import is_question_message

        # Questions are shown in their own panel; question/answer echoes were already on screen.
        messages = [m for m in messages if not is_question_message(m)]
        if any(getattr(m, "type", "") == "human" for m in messages):
            messages = [m for m in messages if m.type == "ai" and m.content.startswith("Recorded ")]
        for m in messages:
            if getattr(m, "type", "") == "ai":
                console.print(Markdown(sanitize(m.content)))
                console.print()

    def _read_answer(self, payload: dict) -> Any:
        seen = self._seen_tables.setdefault(payload.get("question_id") or "", set())
        render_question(payload, seen)
        collect_while_reading()
        text = read_line("> ")
        while text.strip() == SHOW_AGAIN:
            render_question(payload, set())
            text = read_line("> ")
        if text.strip() == "" and payload.get("default") not in (None, ""):
            default = payload["default"]
            return "yes" if payload["kind"] == "form" else default
        return text


def _interrupt(snapshot: Any) -> dict | None:
    for task in getattr(snapshot, "tasks", ()) or ():
        for intr in getattr(task, "interrupts", ()) or ():
            return intr.value
    interrupts = getattr(snapshot, "interrupts", ()) or ()
    return interrupts[0].value if interrupts else None


def render_question(payload: dict, seen_tables: set[str] | None = None) -> None:
    """A question as Markdown, its options as a numbered list, what Enter does, and the last error
    right above the prompt (where it cannot scroll away).

    Long tables in `seen_tables` (already shown for this question) are folded to one line; they
    are added to it as they are shown. `?` at the prompt shows everything again.
    """
    from rich.text import Text

    body, folded = fold_tables(sanitize(payload["prompt"]), seen_tables)
    # The question id, dim under the panel: names the question for bug reports and lets tests tell where a session is.
    subtitle = Text(payload["question_id"], style="dim") if payload.get("question_id") else None
    title = Text(sanitize(payload["title"]))
    console.print(Panel(Markdown(body), title=title, title_align="left", subtitle=subtitle, subtitle_align="right", border_style="cyan"))
    for i, opt in enumerate(payload.get("options") or [], 1):
        desc = f" — {escape_markup(opt['description'])}" if opt.get("description") else ""
        console.print(f"  [bold]{i}.[/bold] {escape_markup(opt['label'])} [dim]({escape_markup(opt['value'])}){desc}[/dim]")
    default = payload.get("default")
    if payload["kind"] == "form":
        console.print("[dim]Enter accepts the proposal (yes).[/dim]")
    elif default not in (None, ""):
        shown = default if len(str(default)) < 60 else str(default)[:57] + "…"
        console.print(f"[dim]Enter keeps: {escape_markup(shown)}[/dim]")
    if folded:
        console.print(f"[dim]Type {SHOW_AGAIN} to see the whole question again, its tables included.[/dim]")
    if payload.get("error"):
        console.print(f"[bold red]{escape_markup(payload['error'])}[/bold red]")


_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")


def fold_tables(markdown: str, seen: set[str] | None) -> tuple[str, bool]:
    """`markdown` with each long table that is in `seen` replaced by a one-line note; tables shown
    now are added to `seen`. Returns the text and whether anything was folded."""
    if seen is None:
        return markdown, False
    lines = markdown.split("\n")
    out: list[str] = []
    folded = False
    i = 0
    while i < len(lines):
        if not _TABLE_ROW.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        j = i
        while j < len(lines) and _TABLE_ROW.match(lines[j]):
            j += 1
        block = lines[i:j]
        rows = len(block) - 2  # header and separator
        key = "\n".join(block)
        if rows > LONG_TABLE_ROWS and key in seen:
            out.append(f"*(The {rows}-row table shown earlier; type `{SHOW_AGAIN}` to see it again.)*")
            folded = True
        else:
            out.extend(block)
            if rows > LONG_TABLE_ROWS:
                seen.add(key)
        i = j
    return "\n".join(out), folded


if __name__ == "__main__":
    raise SystemExit(main())
