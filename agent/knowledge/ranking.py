"""Lexical ranking: the embedded server's search, and the client's choice of what to keep.

A small Okapi BM25 with a separate title field over a crude stemmer: enough to
order a few hundred short knowledge items by how well they answer a query,
with no model to download. `select` picks the few items a query keeps.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.knowledge.models import KnowledgeItem

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_JOINER = re.compile(r"[-']")

STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have how if in into is it its "
    "not of on or so such than that the their them then there these this to use used "
    "using vs versus was what when where which while who why will with you your".split()
)
# British spellings users may type; the data is written in American English.
_SPELLING = {"licence": "license", "licences": "licenses", "behaviour": "behavior",
             "behaviours": "behaviors", "optimise": "optimize", "finetune": "fine-tune",
             "finetuning": "fine-tuning", "finetuned": "fine-tuned"}
# A title says what an item is about; a match there counts this much extra.
TITLE_WEIGHT = 2.0


@lru_cache(maxsize=16384)
def stem(word: str) -> str:
    """Strip a plural, then a verb or agent suffix: 'trackers', 'tracking', 'tracked' -> 'track'."""
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, repl in (("ies", "y"), ("es", "e"), ("s", "")):
        if word.endswith(suffix) and not word.endswith(("ss", "is", "us", "ias")) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + repl
            break
    for suffix in ("ing", "ed", "er"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Lower-case word stems without stopwords or bare numbers; hyphenated words also count whole.

    "fine-tuning" yields "finetun", "fin" and "tun", so it matches both
    "fine tuning" and "finetuning"; "2e-5" stays one token.
    """
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        word = _SPELLING.get(word, word)
        if word.isdigit():
            continue  # bare numbers match by accident far more often than by meaning
        if "-" not in word and "'" not in word:
            if word not in STOPWORDS:
                out.append(stem(word))
            continue
        parts = _JOINER.split(word)
        out.append(stem("".join(parts)))
        if not any(c.isdigit() for c in word):
            out.extend(stem(p) for p in parts if p and p not in STOPWORDS)
    return out


class BM25:
    """Okapi BM25 over pre-tokenized documents (k1 and b at their usual values)."""

    def __init__(self, docs: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.tf = [Counter(d) for d in docs]
        self.len = [len(d) for d in docs]
        self.avg = (sum(self.len) / len(docs)) if docs else 0.0
        df: Counter[str] = Counter()
        for counts in self.tf:
            df.update(counts.keys())
        n = len(docs)
        # The "+1" form keeps idf positive even for terms present in most documents.
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: Sequence[str]) -> list[float]:
        terms = set(query)
        out = []
        for counts, length in zip(self.tf, self.len):
            s = 0.0
            norm = self.k1 * (1 - self.b + self.b * length / self.avg) if self.avg else self.k1
            for t in terms:
                f = counts.get(t)
                if f:
                    s += self.idf[t] * f * (self.k1 + 1) / (f + norm)
            out.append(s)
        return out


class TitledIndex:
    """Two-field BM25: whole text plus title, with the term weights (idf) of the whole text.

    Sharing the idf matters: a word every item mentions ("fine-tuning" here) is rare
    among titles, and must not count as telling when it appears in one.
    """

    def __init__(self, titles: Sequence[str], texts: Sequence[str]):
        self.full = BM25([tokenize(f"{t} {x}") for t, x in zip(titles, texts)])
        self.title = BM25([tokenize(t) for t in titles])
        self.title.idf = self.full.idf

    def scores(self, query: str) -> list[float]:
        q = tokenize(query)
        return [f + TITLE_WEIGHT * t for f, t in zip(self.full.scores(q), self.title.scores(q))]


_NON_WORD = re.compile(r"[^a-z0-9]+")
_SAME_KIND_DISCOUNT = 0.5


def select(items: list[KnowledgeItem], question: str, n: int) -> list[KnowledgeItem]:
    """The n items that best answer the question, without duplicates, not all of one kind.

    Search results keep the server's order: it ranked them for this very query (the real
    server semantically, better than our lexical scoring could). Filter results come in
    storage order, which means nothing, so BM25 against the question orders them. Then
    each further item of a kind already picked counts for less, so that a decision, a
    warning and a methodology beat three near-identical passages.
    """
    unique: list[KnowledgeItem] = []
    seen: set[str] = set()
    for item in items:
        title_key = _NON_WORD.sub(" ", item.title.lower()).strip()
        if item.id in seen or title_key in seen:
            continue
        seen.update((item.id, title_key))
        unique.append(item)
    if not unique:
        return []
    if all(i.score is not None for i in unique):
        merit = [1 - k / len(unique) for k in range(len(unique))]
    else:
        scores = TitledIndex([i.title for i in unique], [i.body for i in unique]).scores(question)
        top = max(scores) or 1.0
        merit = [s / top for s in scores]
    picked: list[int] = []
    per_type: dict[str, int] = {}
    left = list(range(len(unique)))
    while left and len(picked) < n:
        best = max(left, key=lambda k: (merit[k] * _SAME_KIND_DISCOUNT ** per_type.get(unique[k].type, 0), -k))
        left.remove(best)
        picked.append(best)
        per_type[unique[best].type] = per_type.get(unique[best].type, 0) + 1
    return [unique[k] for k in picked]
