"""What the run_agent and run_workflow commands share: finding the object a slug names, and
waiting for a run to end."""

import time

from django.core.management.base import CommandError

from . import services
from .models import Run, RunStatus


def one_by_slug(queryset, *, slug, team, noun):
    """The one active object with this slug (in this team, if named), or a CommandError."""
    queryset = queryset.filter(slug=slug, archived_at__isnull=True)
    if team:
        queryset = queryset.filter(team__slug=team)
    found = list(queryset.select_related("team", "current_version")[:2])
    if not found:
        raise CommandError(f"No {noun} with the slug {slug!r}.")
    if len(found) > 1:
        raise CommandError(f"Several teams have a {noun} {slug!r}; name one with --team.")
    return found[0]


def rubric_by_slug(team, slug):
    """The team's gradable rubric with this slug, or a CommandError."""
    from agentops.outcomes.models import Rubric

    rubric = Rubric.objects.gradable(team).filter(slug=slug).first()
    if rubric is None:
        raise CommandError(f"No rubric {slug!r} in team {team.slug!r}.")
    return rubric


def verdict_line(evaluation):
    return f"verdict: {evaluation.verdict or 'none'} ({evaluation.status})"


def wait_for_end(run, *, inline, timeout, max_steps, on_awaiting_approval=None):
    """Poll (or, inline, execute) the run until it ends or `timeout` seconds pass."""

    def advance(current):
        if inline:
            return services.run_execute_inline(run=current, max_steps=max_steps)
        return Run.objects.get(pk=current.pk)

    if inline:
        run = advance(run)
    deadline = time.monotonic() + timeout
    told_about_approval = False
    while run.is_active and time.monotonic() < deadline:
        if run.status == RunStatus.AWAITING_APPROVAL and not told_about_approval:
            if on_awaiting_approval:
                on_awaiting_approval()
            told_about_approval = True
        time.sleep(0.25)
        run = advance(run)
    return run
