"""What every dashboard page shows whatever its view: the sandbox's state."""

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from workspace import sandbox


def sandbox_state(request: HttpRequest) -> dict[str, Any]:
    """`sandbox_problem` (why bwrap cannot start) when it cannot, and whether
    agents' code then runs unsandboxed (`unsandboxed`) or is refused."""
    problem = sandbox.problem()
    if problem is None:
        return {}
    return {"sandbox_problem": problem, "unsandboxed": settings.UNSANDBOXED}
