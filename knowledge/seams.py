"""What knowledge needs of the agents layer above it, which it may not import:
the shape of an agent and of a session, as Protocols. The agents app's own
models satisfy them, and mypy checks each place the agents layer hands one in."""

from typing import Any, Protocol

from beads.models import Bead


class AgentLike(Protocol):
    @property
    def pk(self) -> Any: ...

    @property
    def preset(self) -> str: ...


class SessionLike(Protocol):
    @property
    def pk(self) -> Any: ...

    @property
    def bead(self) -> Bead: ...

    @property
    def bead_id(self) -> str: ...

    @property
    def agent(self) -> AgentLike: ...

    @property
    def base_sha(self) -> str: ...  # the commit its clone starts from ("" before a claim)

    @property
    def changed_files(self) -> Any: ...  # a list of paths, from a JSON column
