"""The error every service raises for a problem in the project folder that the user can fix."""

from __future__ import annotations

import errno
from pathlib import Path


class ProjectError(ValueError):
    """A problem with the project folder that the user can fix; the message says how.

    A ValueError, so the LangGraph API server passes the message on to its clients."""


def write_problem(path: Path, exc: OSError) -> str:
    """What went wrong writing `path`, and what to do about it."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        fix = "Free some space on that disk"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"Make {path.parent} writable (for example `chmod u+w {path.parent}`)"
    else:
        fix = "Fix the cause"
    return f"Could not write {path}: {reason}. {fix}, then answer again: nothing was changed, and your answer is kept."
