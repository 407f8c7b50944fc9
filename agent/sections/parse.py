"""Reading constraints out of plain-language answers; the rules live with the planner (agent.planning.reading)."""

from agent.planning.reading import (  # noqa: F401 - the sections' names for them
    commercial_needed,
    context_tokens,
    count_near,
    gpu_memory,
    hours,
    mentions,
    money,
    permissive_only,
    size_limit_b,
    to_number,
)
