"""What a RAG-only project gets instead of a training pipeline (seed: SKIP HANDLING)."""

from __future__ import annotations

# Verbatim from the seed's skip record block; a test compares it byte for byte.
SKIP_RECORD = """\
# Phase 2: Training Pipeline

**Status:** SKIPPED

**Reason:** RAG-only architecture selected in Phase 0. No fine-tuning required.

**Architecture Decision Reference:** See `phase-0-scoping/architecture-decision.md`

**Implication:** Proceeding directly to Phase 3 (Inference Pipeline) where the RAG system will be configured to use a pre-trained base model.
"""

SKIP_SECTION_HEADING = "## Phase 2: Training Pipeline - SKIPPED"


def render_skip_record() -> str:
    """phase-2-training/spec.md for a RAG-only project."""
    return SKIP_RECORD


def render_skip_project_spec_section() -> str:
    """The project-spec section that records the skip, ending with `---` like the others."""
    return (
        f"{SKIP_SECTION_HEADING}\n"
        "\n"
        "**Reason:** RAG-only architecture selected in Phase 0; no fine-tuning required.\n"
        "\n"
        "See `phase-2-training/spec.md`.\n"
        "\n"
        "---\n"
    )
