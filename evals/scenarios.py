"""The eval suite's scripted sessions (recorded by evals/make_transcripts.py).

Together they cover every architecture (and none), each training approach and PEFT
method, model families with other target modules, thin data, the menu (A on every
section, P, questions), invalid and hostile answers, knowledge failures, stopping and
resuming, and a finished project opened again.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.transcript import ProjectSource, starting_project

# A plausible user on the support-bot fixture; scenarios override what they are about.
HAPPY: dict[str, Any] = {
    "base_model.constraints": "One 24 GB GPU, Apache-2.0 or MIT only, English support conversations",
    "training_approach.goals": "About 40,000 resolved tickets we can turn into instruction pairs; no preference data yet",
    "training_data.description": "40,000 conversations from resolved tickets 2022-2025, reviewed by team leads, PII redacted, deduplicated against a held-out test set",
    "peft.compute": "One 24 GB GPU (RTX 4090)",
    "hyperparameters.budget": "One overnight run, about 12 GPU hours",
    "infrastructure.preference": "Our own GPU, tracked in MLflow",
}


@dataclass
class Script:
    """One session: answers by question_id (a string: always; a list: in turn, then the default)."""

    answers: dict[str, Any] = field(default_factory=dict)
    menu: list[str] = field(default_factory=list)  # menu answers in turn, then C
    stop_at: str | None = None  # leave this question unanswered (the user stops)
    thread: str = "main"
    resumed: bool = False

    def __post_init__(self) -> None:
        self._queues = {k: list(v) for k, v in self.answers.items() if isinstance(v, list)}
        self._menu = list(self.menu)

    def answer(self, payload: dict[str, Any]) -> Any:
        qid = payload["question_id"]
        if qid in self._queues:
            if self._queues[qid]:
                return self._queues[qid].pop(0)
        elif qid in self.answers:
            return self.answers[qid]
        if qid == "menu":
            return self._menu.pop(0) if self._menu else "C"
        if qid.endswith(".decision"):
            return "yes"
        raise KeyError(f"no scripted answer for {qid}: {payload['prompt'][:200]}")


@dataclass
class Scenario:
    name: str
    description: str
    project: ProjectSource
    sessions: list[Script]
    tags: list[str] = field(default_factory=list)
    failing: dict[str, int] = field(default_factory=dict)  # query_id -> times it fails: recorded knowledge
    model: bool = False  # facilitated by a model (the test suite's tool-calling fake); its replies are recorded


def fixture(name: str) -> ProjectSource:
    return ProjectSource(fixture=name)


def demo_project(architecture: str) -> ProjectSource:
    """A project as `training-pipeline init-demo` makes it, inlined so the transcript stands alone."""
    from agent.demo import init_demo

    with tempfile.TemporaryDirectory() as tmp:
        root = init_demo(Path(tmp) / f"{architecture}-demo", architecture, today="2026-03-15")
        return starting_project(root)


def happy(**changes: Any) -> dict[str, Any]:
    return {**HAPPY, **changes}


# Text that has broken YAML, Markdown and terminals before.
YAML_SPECIALS = "key: value # not a comment\n- item\n&anchor *alias !!python/object:os.system {{BASE_MODEL}} --- ... | > % @ `tick`"
MARKDOWN = "# Heading\n| a | b |\n|---|---|\n```\ncode\n```\n**bold** <script>alert(1)</script> [x](javascript:alert(1))"
NON_ASCII = "naïve café — 日本語のサポート, العربية, emoji 🚀, zero\u200bwidth, e\u0301, line\u2028separator"
LONG = ("40,000 SFT examples from resolved tickets, reviewed and PII redacted. " + "Every ticket has a reviewed answer. " * 110)[:3900]
TOO_LONG = "x" * 5000

SECTION_EDITS = {  # one change per section for the revisit scenario
    "base_model": "llama-3.1-8b", "training_approach": "combined", "training_data": "sft_examples: 12000",
    "peft": "qlora", "hyperparameters": "num_epochs: 1", "infrastructure": "tracking_tool: Weights & Biases",
}
SECTIONS = list(SECTION_EDITS)
# The unscoped fixture states no GPU; these sessions name the card, so the infrastructure sizing has one.
UNSCOPED_INFRA = {"infrastructure.preference": "Our own GPU (one 24 GB RTX 4090), tracked in MLflow"}

SCENARIOS: list[Scenario] = [
    Scenario(
        "model-facilitated-session", "With a model: synthesis, every recommendation and a menu answer come from "
        "the model's recorded replies; the user still confirms each decision.",
        fixture("support-bot"), [Script(happy(), menu=["Which LoRA rank suits 40,000 examples?"])], ["model", "menu-question"],
        model=True,
    ),
    Scenario(
        "fine-tuning-sft-qlora", "Fine-tuning project, plain SFT, QLoRA on one 24 GB GPU; continue to Phase 3.",
        fixture("support-bot"), [Script(happy())], ["fine-tuning", "sft", "qlora"],
    ),
    Scenario(
        "hybrid-contract-assistant", "Hybrid architecture (retrieval plus a fine-tuned model) on the contract-assistant fixture.",
        fixture("contract-assistant"),
        [Script(happy(**{
            "base_model.constraints": "Two 48 GB GPUs on premises, commercial use allowed, long contracts (16k tokens)",
            "peft.compute": "Two 48 GB GPUs (A6000)", "infrastructure.preference": "On premises, Weights & Biases",
        }))],
        ["hybrid", "sft"],
    ),
    Scenario("rag-only-skip", "RAG-only project: the skip record, no questions, straight to Phase 3.",
             fixture("docs-qa"), [Script()], ["rag-only", "skip"]),
    Scenario(
        "unscoped-asks-architecture", "No architecture in the sidecar: asked first (answered by number), then the phase runs.",
        fixture("unscoped"), [Script(happy(architecture="3", **UNSCOPED_INFRA))], ["unscoped", "hybrid"],
    ),
    Scenario("unscoped-chooses-rag-only", "No architecture in the sidecar; the user answers RAG-only, so the phase is skipped.",
             fixture("unscoped"), [Script({"architecture": "rag-only"})], ["unscoped", "rag-only", "skip"]),
    Scenario(
        "dpo-only", "Preference data only, an instruction-tuned start: plain DPO picked at the decision.",
        fixture("support-bot"),
        [Script(happy(**{
            "training_approach.goals": "The model already follows instructions; we have 8,000 preference pairs (chosen vs rejected) ranked by agents",
            "training_approach.decision": ["dpo", "yes"],
            "training_data.description": "8,000 DPO preference pairs: prompt, chosen and rejected replies ranked by two agents, PII removed",
        }))],
        ["fine-tuning", "dpo"],
    ),
    Scenario(
        "sft-then-dpo-combined", "SFT for the task, then DPO for tone: the combined approach, with both data counts.",
        fixture("support-bot"),
        [Script(happy(**{
            "training_approach.goals": "40,000 instruction pairs and 6,000 preference pairs (chosen vs rejected) from agent reviews",
            "training_approach.decision": ["3", "yes"],
            "training_data.description": "40,000 SFT examples and 6,000 DPO preference pairs, reviewed, deduplicated, PII redacted",
        }))],
        ["fine-tuning", "combined"],
    ),
    Scenario(
        "full-fine-tuning-gpt2", "A GPT-2 family model (c_attn modules) trained fully on an 80 GB GPU.",
        fixture("support-bot"),
        [Script(happy(**{
            "base_model.constraints": "Tiny model for a latency experiment, MIT licence, English",
            "base_model.decision": ["gpt2", "yes"],
            "peft.compute": "One 80 GB A100", "peft.decision": ["full", "yes"],
        }))],
        ["fine-tuning", "full", "gpt2"],
    ),
    Scenario(
        "lora-two-h100", "Plenty of memory: LoRA on a 16-bit base across two 80 GB H100s.",
        fixture("support-bot"),
        [Script(happy(**{
            "base_model.constraints": "Apache-2.0 only, about 7-8B parameters, English",
            "peft.compute": "Two 80 GB H100 GPUs", "peft.decision": ["lora", "yes"],
            "infrastructure.preference": "AWS SageMaker with spot instances, Comet ML",
        }))],
        ["fine-tuning", "lora"],
    ),
    Scenario(
        "falcon-7b-target-modules", "A Falcon model: LoRA targets Falcon's own module names, not q_proj/v_proj.",
        fixture("support-bot"),
        [Script(happy(**{
            "base_model.constraints": "Apache-2.0, 7B, trained on a large web corpus",
            "base_model.decision": ["falcon-7b", "yes"], "peft.compute": "One 48 GB GPU", "peft.decision": ["lora", "yes"],
        }))],
        ["fine-tuning", "lora", "falcon"],
    ),
    Scenario(
        "data-below-minimums", "300 SFT examples and 150 preference pairs: below the seed's minimums, the warnings are shown.",
        fixture("support-bot"),
        [Script(happy(**{
            "training_approach.goals": "A few hundred instruction pairs and some preference pairs (chosen vs rejected)",
            "training_approach.decision": ["combined", "yes"],
            "training_data.description": "300 hand-written instruction examples and 150 preference pairs, not yet reviewed",
        }))],
        ["fine-tuning", "combined", "thin-data"],
    ),
    Scenario(
        "revisit-every-section", "Menu A on each of the six sections in turn, each with a change; the log keeps the old records.",
        fixture("support-bot"),
        [Script(
            happy(**{"menu.revisit": SECTIONS, **{f"{s}.decision": ["yes", e, "yes"] for s, e in SECTION_EDITS.items()}}),
            menu=["A"] * 6,
        )],
        ["menu", "revisit"],
    ),
    Scenario(
        "menu-progress-and-questions", "Menu P, a question the knowledge base answers, and one about deployment (kept out).",
        fixture("support-bot"),
        [Script(happy(), menu=["P", "What LoRA rank should I use for a hard task?", "How should we deploy the model with vLLM?", "C"])],
        ["menu", "progress", "question"],
    ),
    Scenario(
        "invalid-answers-reasked", "Empty, out-of-range, unknown, control-character and invalid-edit answers: each re-asked with an error.",
        fixture("unscoped"),
        [Script(
            happy(**{
                **UNSCOPED_INFRA,
                "architecture": ["", "99", "not-an-option", "bad\x00text", "fine-tuning"],
                "base_model.constraints": ["   ", HAPPY["base_model.constraints"]],
                "base_model.decision": ["no", "yes"],
                "peft.decision": ["alpha: many", "method: qlora\nquantization: none", "frobnicate: 3", "yes"],
                "menu.revisit": ["9", "not-a-section", "hyperparameters"],
                "hyperparameters.decision": ["yes", "num_epochs: -1", "batch_size: lots", "yes"],
            }),
            menu=["\x1b[31m", "A", "C"],
        )],
        ["invalid"],
    ),
    Scenario(
        "hostile-text", "YAML specials, Markdown, very long and non-ASCII answers, an over-long one re-asked, a form answer.",
        fixture("support-bot"),
        [Script(happy(**{
            "base_model.constraints": f"One 24 GB GPU, Apache-2.0 only.\n{YAML_SPECIALS}\n{MARKDOWN}",
            "training_approach.goals": f"About 40,000 instruction pairs; {NON_ASCII}",
            "training_data.description": LONG,
            "peft.compute": [TOO_LONG, "One 24 GB GPU"],
            "infrastructure.decision": [f"project: {YAML_SPECIALS.splitlines()[0]}", {"experiment": f"{NON_ASCII} | {MARKDOWN}"}],
        }), menu=["What's `r`? <b>bold</b> | pipe # hash: yes", "C"])],
        ["hostile"],
    ),
    Scenario(
        "knowledge-failure-retry", "Two mandatory queries fail (server unreachable); the user retries and they succeed.",
        fixture("support-bot"), [Script(happy(**{"consult_knowledge.retry": "retry"}))], ["knowledge", "failure"],
        failing={"consult.training_approach": 1, "consult.dataset_creation": 1},
    ),
    Scenario(
        "knowledge-failure-continue", "A mandatory query and a PEFT query keep failing; the user continues without them.",
        fixture("support-bot"), [Script(happy(**{"consult_knowledge.retry": ["retry", "2"]}))], ["knowledge", "failure"],
        failing={"consult.fine_tuning_warnings": 9, "peft.qlora_vs_lora": 9},
    ),
    Scenario(
        "resumed-new-thread", "Stops at the PEFT question; a new graph thread restores three decisions from the sidecar and asks only the rest.",
        fixture("support-bot"),
        [Script(happy(), stop_at="peft.compute"), Script(happy(), thread="second")],
        ["resume", "sidecar"],
    ),
    Scenario(
        "stopped-and-resumed-same-thread", "Stopped at the training-data question and resumed on the same thread (checkpoint kept).",
        fixture("contract-assistant"),
        [Script(happy(), stop_at="training_data.description"), Script(happy(), resumed=True)],
        ["resume", "checkpoint"],
    ),
    Scenario(
        "completed-project-reopened", "A finished project opened again on a new thread: the menu, nothing redone; P then C.",
        fixture("support-bot"),
        [Script(happy()), Script(thread="reopened", menu=["P", "C"])],
        ["complete", "menu"],
    ),
    Scenario(
        "inline-hybrid-demo", "An inline project as init-demo makes it (hybrid, two 48 GB GPUs), no fixture needed.",
        demo_project("hybrid"),
        [Script({
            "base_model.constraints": "Two 48 GB GPUs on premises; no data leaves the building",
            "training_approach.goals": "2,400 reviewed summaries in the lab template as instruction pairs",
            "training_data.description": "2,400 reviewed summaries paired with their reports, deduplicated, no personal data",
            "peft.compute": "Two 48 GB GPUs", "hyperparameters.budget": "A weekend of both GPUs",
            "infrastructure.preference": "On premises, MLflow",
        })],
        ["hybrid", "inline"],
    ),
    Scenario(
        "form-answers", "Every decision answered with a submitted form (as Studio sends it) instead of yes.",
        fixture("support-bot"),
        [Script(happy(**{
            "base_model.decision": {"revision": "main"},
            "training_approach.decision": {"approach": "sft"},
            "training_data.decision": {"eval_split": 0.1, "train_path": "data/sft/train.jsonl"},
            "peft.decision": {"r": 32, "alpha": 64, "dropout": 0.1},
            "hyperparameters.decision": {"learning_rate": 0.0001, "num_epochs": 3},
            "infrastructure.decision": {"tracking_tool": "Comet ML", "experiment": "form-run"},
        }))],
        ["form"],
    ),
]
