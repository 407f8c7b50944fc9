"""Reading constraints out of plain-language answers (the offline path).

Small, predictable rules: each returns what it found, or None, and never guesses
a value the text does not contain.
"""

from __future__ import annotations

import re

_NUM = r"(\d+(?:[.,]\d+)*)\s*(k|thousand|m|million)?"
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "a single": 1, "single": 1, "a": 1, "an": 1}


def to_number(digits: str, suffix: str | None = None) -> float:
    value = float(digits.replace(",", "")) if digits.count(",") and len(digits.split(",")[-1]) == 3 else float(digits.replace(",", "."))
    mult = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6}.get((suffix or "").lower(), 1)
    return value * mult


def count_near(text: str, keywords: tuple[str, ...]) -> int | None:
    """The largest count written just before one of `keywords` ("3,500 reviewed drafts", "40k pairs")."""
    best = None
    words = "|".join(keywords)
    pattern = re.compile(rf"{_NUM}\s*(?:\+\s*)?(?:[\w-]+\s+){{0,3}}?(?:{words})", re.IGNORECASE)
    for m in pattern.finditer(text):
        n = int(to_number(m.group(1), m.group(2)))
        best = n if best is None else max(best, n)
    return best


def gpu_memory(text: str) -> tuple[int, float] | None:
    """(count, GB per GPU) from "one 24 GB GPU", "2x A100 80GB", "two A100 80 GB GPUs"."""
    m = re.search(
        rf"(?:(\d+)\s*x?\s*|({'|'.join(_WORDS)})\s+)?(?:[A-Za-z]+\d*\s+)?(\d+(?:\.\d+)?)\s*gb\b",
        text,
        re.IGNORECASE,
    )
    if not m:
        return None
    count = 1
    if m.group(1):
        count = int(m.group(1))
    elif m.group(2):
        count = _WORDS[m.group(2).lower()]
    return max(count, 1), float(m.group(3))


def size_limit_b(text: str) -> float | None:
    """An upper bound on parameters: "under 8B", "at most 14B", "<= 7B", "max 13B"."""
    m = re.search(
        r"(?:under|below|at most|up to|max(?:imum)?|no (?:more|larger) than|<=?|smaller than|≤)\s*(\d+(?:\.\d+)?)\s*b\b",
        text,
        re.IGNORECASE,
    )
    return float(m.group(1)) if m else None


def mentions(text: str, *words: str) -> bool:
    low = text.lower()
    return any(re.search(rf"(?<![a-z]){re.escape(w.lower())}", low) for w in words)


def permissive_only(text: str) -> bool:
    return mentions(text, "apache", "mit licen", "mit-licen", "permissive", "osi") and mentions(text, "only", "must", "require", "licen")


def commercial_needed(text: str) -> bool:
    return mentions(text, "commercial", "product", "customer")


def context_tokens(text: str) -> int | None:
    """The longest length written in tokens: "32k tokens", "8k context", "about 2,000 tokens"."""
    found = [int(m.group(1)) * 1024 for m in re.finditer(r"(\d+)\s*k\s*(?:-?\s*tokens?|context|ctx)", text, re.IGNORECASE)]
    found += [int(m.group(1).replace(",", "")) for m in re.finditer(r"(?<![\d.,])(\d{1,3}(?:,\d{3})+|\d{3,7})\s*tokens?\b", text, re.IGNORECASE)]
    found = [n for n in found if 16 <= n <= 10_000_000]
    return max(found) if found else None


def money(text: str) -> float | None:
    m = re.search(r"\$\s*(\d+(?:[.,]\d+)*)\s*(k)?|(\d+(?:[.,]\d+)*)\s*(k)?\s*(?:usd|dollars|\$)", text, re.IGNORECASE)
    if not m:
        return None
    digits, suffix = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return to_number(digits, suffix)


_HOUR_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "eight": 8, "ten": 10, "twelve": 12,
               "twenty": 20, "twenty-four": 24, "fifty": 50, "a hundred": 100, "one hundred": 100}


def hours(text: str) -> float | None:
    """Hours (or days) of compute: "about 10 GPU hours", "Ten GPU hours", "2 days"."""
    text = re.sub(r"\b(" + "|".join(sorted(_HOUR_WORDS, key=len, reverse=True)) + r")\b(?=\s*(?:gpu[- ]?)?(?:hours?|hrs?|days?)\b)",
                  lambda m: str(_HOUR_WORDS[m.group(1).lower()]), text, flags=re.IGNORECASE)
    m = re.search(r"(\d+(?:\.\d+)?)\s*(?:gpu[- ]?)?(hours?|hrs?|h\b|days?)", text, re.IGNORECASE)
    if not m:
        return None
    value = float(m.group(1))
    return value * 24 if m.group(2).lower().startswith("d") else value


# Units a data volume is counted in: instruction data, and preference data.
SFT_UNITS = ("example", "pair", "conversation", "chat", "ticket", "sample", "instruction", "draft", "dialog", "record",
             "row", "email", "message", "transcript", "summar", "document", "report", "q&a", "question", "repl")
DPO_UNITS = ("preference", "chosen", "rejected", "comparison", "ranked", "rating")

# Problems the user reports in the data, by quality-checklist item: words that say a check is NOT met.
_ISSUES = {
    "quality": r"low[- ]quality|poor(?:ly)?[- ]?(?:quality|written)?|noisy|bad (?:answers|replies|responses|examples)|unreviewed|not reviewed|wrong answers|errors in|garbage|mediocre",
    "no_pii": r"(?:contain|include|has|have|with|full of)\w*\s+(?:\w+\s+){0,3}?(?:e-?mails?|e-?mail addresses|names|phone(?: numbers)?|addresses|pii|personal (?:data|information)|account numbers|credit card)"
              r"|not (?:yet )?(?:redacted|anonymi[sz]ed|scrubbed)|unredacted|raw pii",
    "consistency": r"inconsistent|mixed (?:styles?|formats?)|no (?:style guide|template)",
    "no_contamination": r"(?:overlap|leak)\w* (?:with|into) (?:the )?(?:eval|test)|not deduplicated|duplicates",
    "diversity": r"narrow|one (?:topic|category) only|unbalanced|imbalanced|skewed",
}


def data_issues(text: str) -> dict[str, str]:
    """Checklist items the text says are a problem, with the words that said so."""
    out: dict[str, str] = {}
    for check, pattern in _ISSUES.items():
        m = re.search(pattern, text, re.IGNORECASE)
        if m:
            out[check] = m.group(0).strip()
    return out


def share(text: str) -> float | None:
    """A share written as a percentage ("about 30%"), as a fraction."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*%", text)
    return float(m.group(1)) / 100 if m and float(m.group(1)) <= 100 else None
