"""The words that record a decision, pinned: the graph's is_yes and the evals' scorers each hold
their own copy, and both must be exactly this list."""

from __future__ import annotations

import pytest

from agent.interview import is_yes
from evals.scorers import CONFIRMATIONS, is_confirmation

ACCEPTED = ["y", "yes", "ok", "okay", "accept", "confirm", "confirmed", "agree", "sure", "looks good", "lgtm"]
NOT_ACCEPTED = ["", "maybe", "no", "n", "yes please", "yess", "not yes", "ja", "1", "true", "go", "yes, but r: 32", "looks", "y e s"]


def test_the_scorers_hold_the_pinned_words():
    assert CONFIRMATIONS == set(ACCEPTED)


@pytest.mark.parametrize("judge", [is_yes, is_confirmation], ids=["graph", "scorers"])
@pytest.mark.parametrize("word", ACCEPTED)
def test_accepted_in_any_case_with_spaces_and_a_final_stop(judge, word):
    for form in (word, word.upper(), f"  {word.title()} ", f"{word}.", f"{word}!"):
        assert judge(form), form


@pytest.mark.parametrize("judge", [is_yes, is_confirmation], ids=["graph", "scorers"])
@pytest.mark.parametrize("text", NOT_ACCEPTED)
def test_anything_else_is_not_a_confirmation(judge, text):
    assert not judge(text)
