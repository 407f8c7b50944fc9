"""Deterministic text for the offline mode: knowledge synthesis and menu answers.

Quotes what the knowledge base holds, with sources; never invents content.
"""

from __future__ import annotations

from typing import Any

CRITICAL_WARNING = (
    "Creating instruction datasets is often the most difficult part of fine-tuning. Natural "
    "instruction-answer pairs are rare - data must be transformed and quality-checked extensively."
)

# Questions about later phases are kept out of this step, as the seed requires.
OUT_OF_SCOPE = (
    "deploy", "serving", "serve ", "inference", "latency", "endpoint", "vllm", "tgi", "caching",
    "evaluation", "evaluate", "benchmark", "quality gate", "monitoring", "phase 3", "phase 4", "phase 5",
)

SYNTHESIS_ASPECTS = (
    ("LoRA/QLoRA configuration patterns", "consult.fine_tuning_methods"),
    ("SFT vs DPO decision criteria", "consult.training_approach"),
    ("Common fine-tuning mistakes", "consult.fine_tuning_warnings"),
    ("Dataset quality requirements", "consult.dataset_creation"),
)


def _item_line(item: dict[str, Any]) -> str:
    body = " ".join(item.get("body", "").split())
    title = item["title"].rstrip("…. ")
    if body.startswith(title):  # search chunks are titled by their own first words
        body = body[len(title):].lstrip(" .:—-")
    if len(body) > 220:
        body = body[:219].rsplit(" ", 1)[0] + "…"
    source = item.get("source_title") or "source not named"
    return f"- **{item['title']}** — {body} *({source})* `[{item['id'][:8]}]`"


def synthesize(records: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Markdown for section 2 and the insights it rests on (the top items per query)."""
    lines = ["Here's what the knowledge base tells us about fine-tuning approaches:", ""]
    insights: list[dict[str, Any]] = []
    by_id = {r["query_id"]: r for r in records}
    for i, (aspect, _qid) in enumerate(SYNTHESIS_ASPECTS):
        rec = by_id.get(_qid) or (records[i] if i < len(records) else None)
        lines.append(f"**{aspect}**")
        if rec is None:
            lines.append("- (not queried)")
        elif rec.get("error"):
            lines.append(f"- Could not consult `{rec['ref']}`: {rec['error']}")
        elif not rec.get("items"):
            lines.append(f"- `{rec['ref']}` returned nothing.")
        else:
            for item in rec["items"][:2]:
                lines.append(_item_line(item))
                insights.append({"aspect": aspect, "item_id": item["id"], "title": item["title"], "source": item.get("source_title", "")})
        lines.append("")
    lines += ["**Critical warning**", f"> {CRITICAL_WARNING}"]
    return "\n".join(lines), insights


def is_out_of_scope(question: str) -> bool:
    low = f" {question.lower()} "
    return any(word in low for word in OUT_OF_SCOPE)


def out_of_scope_answer() -> str:
    return (
        "That belongs to a later phase (Phase 3 covers inference and deployment, Phase 4 evaluation), so I'll keep it "
        "out of this step. Here we design the training pipeline; note the question and raise it when we get there."
    )


def answer(question: str, record: dict[str, Any] | None) -> str:
    """An answer made of the knowledge items found for the question, with sources."""
    if is_out_of_scope(question):
        return out_of_scope_answer()
    if record is None or record.get("error"):
        why = record["error"] if record else "no knowledge server"
        return f"I could not look that up ({why}). Ask again, or continue with the menu."
    items = record.get("items", [])[:3]
    if not items:
        return "The knowledge base has nothing on that. Try other words, or continue with the menu."
    return "\n".join([f"From the knowledge base, on *{question}*:", "", *(_item_line(i) for i in items)])
