"""Roles the simulator plays. The first role whose `matches` accepts a request answers it.

A role writes the reply's content (text and tool calls) and, when extended thinking is on,
its thinking text; the core adds ids, stop reasons, truncation and usage. To add a role
(grader, lead, dreamer), write a class with `name`, `matches(conversation)` and
`respond(conversation) -> Reply`, and put it before the worker in ROLES.
"""

from .base import Reply, Role
from .dreamer import DreamerRole
from .grader import GraderRole
from .lead import LeadRole
from .reviser import ReviserRole
from .worker import WorkerRole

ROLES: tuple[Role, ...] = (
    DreamerRole(),
    GraderRole(),
    ReviserRole(),
    LeadRole(),
    WorkerRole(),
)


def choose_role(conversation) -> Role:
    return next(role for role in ROLES if role.matches(conversation))


__all__ = [
    "ROLES",
    "DreamerRole",
    "GraderRole",
    "LeadRole",
    "Reply",
    "ReviserRole",
    "Role",
    "WorkerRole",
    "choose_role",
]
