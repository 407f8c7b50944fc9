"""`training-pipeline init-demo`: a project folder as step 4 finds it after Phases 0 and 1."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from agent.fsutil import atomic_write_text

DEMOS = {
    "fine-tuning": {
        "use_case": "Assistant that answers warranty questions in the company's voice and follows its refund policy",
        "rationale": "Voice and policy behaviour must be consistent; the policy changes twice a year",
        "requirements": ["Answers in the brand voice", "Applies the refund policy correctly", "Replies within 3 s"],
        "constraints": ["One 24 GB GPU for training", "Apache-2.0 or MIT licensed models only", "Customer data stays in our cloud account"],
        "data": "Resolved warranty chats 2023-2026 (about 18,000 conversations)",
        "chunking": "Recursive chunking by chat turn",
        "embedding": "bge-small-en-v1.5",
    },
    "hybrid": {
        "use_case": "Research assistant that cites internal lab reports and writes summaries in the lab's template",
        "rationale": "Answers must cite current reports (retrieval) and summaries must follow the template (fine-tuning)",
        "requirements": ["Cites the report it relies on", "Summaries follow the lab template"],
        "constraints": ["Two 48 GB GPUs on premises", "No data leaves the building"],
        "data": "9,000 lab reports plus 2,400 reviewed summaries",
        "chunking": "Semantic chunking by report section",
        "embedding": "e5-large-v2",
    },
    "rag-only": {
        "use_case": "Question answering over the engineering handbook",
        "rationale": "The handbook changes weekly and answers must cite it; no behaviour change is needed",
        "requirements": ["Cites the handbook page", "Fresh within a day of an edit"],
        "constraints": ["Managed services preferred", "No GPU budget"],
        "data": "Engineering handbook (Markdown)",
        "chunking": "Semantic chunking by heading",
        "embedding": "text-embedding-3-small",
    },
}

TITLES = {"fine-tuning": "Fine-tuning", "hybrid": "Hybrid", "rag-only": "RAG-only"}
PHASE_FOLDERS = [
    "phase-2-training/templates",
    "phase-3-inference/templates",
    "phase-4-evaluation/checklists",
    "phase-5-operations/templates",
]


def init_demo(folder: Path | str, architecture: str, today: str | None = None) -> Path:
    """Create a demo project; refuses a folder that already holds a sidecar."""
    root = Path(folder)
    if (root / "sidecar.yaml").exists():
        raise FileExistsError(f"{root} already holds a project (sidecar.yaml); choose an empty folder.")
    demo = DEMOS[architecture]
    name = re.sub(r"[^a-z0-9-]+", "-", root.resolve().name.lower()).strip("-") or "demo-project"
    date = today or dt.date.today().isoformat()
    root.mkdir(parents=True, exist_ok=True)
    for sub in PHASE_FOLDERS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    files = {
        "sidecar.yaml": _sidecar(name, date, architecture, demo),
        "project-spec.md": _project_spec(name, date, architecture, demo),
        "decision-log.md": _decision_log(name, date, architecture, demo),
        "phase-0-scoping/architecture-decision.md": f"# Architecture Decision\n\n**Decision:** {TITLES[architecture]}\n\n{demo['rationale']}.\n",
        "phase-1-feature/spec.md": f"# Phase 1: Feature Pipeline Spec\n\n**Data sources:** {demo['data']}\n**Chunking:** {demo['chunking']}\n**Embedding model:** {demo['embedding']}\n",
    }
    for rel, text in files.items():
        atomic_write_text(rel, text, root=root)
    return root


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sidecar(name: str, date: str, arch: str, demo: dict) -> str:
    return f"""# AI Engineering Project Sidecar
# This file tracks project state across workflow sessions

project_name: {_q(name)}
created: {_q(date)}
user_name: "demo"

architecture: {_q(arch)}
currentPhase: 2
stepsCompleted: [1, 2, 3]

decisions:
  - id: "arch-001"
    choice: {_q(arch)}
    rationale: {_q(demo['rationale'])}
    knowledge_ref: "get_decisions:rag-vs-fine-tuning"
  - id: "fp-001"
    choice: {_q(demo['chunking'])}
    rationale: "Keeps each unit of meaning intact"
    knowledge_ref: "get_patterns:chunking"
  - id: "fp-002"
    choice: {_q(demo['embedding'])}
    rationale: "Good retrieval quality for its cost"
    knowledge_ref: "get_patterns:embedding"

warnings_acknowledged: []

phases:
  phase_0_scoping: "complete"
  phase_1_feature: "complete"
  phase_2_training: "pending"
  phase_3_inference: "pending"
  phase_4_evaluation: "pending"
  phase_5_operations: "pending"
"""


def _project_spec(name: str, date: str, arch: str, demo: dict) -> str:
    req = "\n".join(f"- {r}" for r in demo["requirements"])
    con = "\n".join(f"- {c}" for c in demo["constraints"])
    return f"""---
project_name: {_q(name)}
created: {_q(date)}
architecture: {_q(arch)}
---

# {name} - AI Engineering Spec

This document grows as the project progresses through each phase of the FTI pipeline.

## Project Overview

**Use Case:** {demo['use_case']}

**Architecture:** {TITLES[arch]}

**Key Requirements:**
{req}

**Constraints:**
{con}

---

## Phase 1: Feature Pipeline

**Data sources:** {demo['data']}
**Chunking:** {demo['chunking']}
**Embedding model:** {demo['embedding']}

See `phase-1-feature/spec.md`.

---
"""


def _decision_log(name: str, date: str, arch: str, demo: dict) -> str:
    return f"""---
project_name: {_q(name)}
created: {_q(date)}
---

# {name} - Decision Log

This document records the project's architectural decisions in ADR form, with the Knowledge MCP queries behind them.

---

## Decisions

## ARCH-001: Architecture Direction
**Decision:** {TITLES[arch]}
**Date:** {date}
**Phase:** 0 - Scoping
**Context:** {demo['use_case']}
**Options Evaluated:** 1. RAG-only 2. Fine-tuning 3. Hybrid
**Choice Rationale:** {demo['rationale']}
**Knowledge Reference:** `get_decisions:rag-vs-fine-tuning`

## FP-001: Chunking Strategy
**Decision:** {demo['chunking']}
**Date:** {date}
**Phase:** 1 - Feature Pipeline
**Knowledge Reference:** `get_patterns:chunking`

## FP-002: Embedding Model
**Decision:** {demo['embedding']}
**Date:** {date}
**Phase:** 1 - Feature Pipeline
**Knowledge Reference:** `get_patterns:embedding`
"""
