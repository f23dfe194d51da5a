"""Bodies of the processes tests start with ``spawn``. A spawned child imports the module of the function it
runs; this one imports only the clock, so a child starts in a fraction of a second instead of the ~3 s a test
module's imports (torch, the search) take on a 2-core machine."""

from __future__ import annotations

from typing import Any

from search.tune.clock import Deadline


def read_deadline_when_told(deadline: Deadline, told: Any, out: Any) -> None:
    """Wait for ``told``, then send what the shared ``deadline`` says now."""
    told.wait(30)
    out.put(deadline.at)
