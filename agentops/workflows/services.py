"""Workflows and their versions; schedules and their django-celery-beat periodic tasks."""

import json
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, timedelta

from celery.schedules import crontab
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from django_celery_beat.validators import crontab_validator

from agentops.outcomes.loop import run_start_graded, thread_grade
from agentops.outcomes.models import Evaluation
from agentops.runs import services as engine
from agentops.runs.models import Run, RunTrigger, StepKind, StepStatus, Thread, ThreadRole
from agentops.teams.services import audit_record, ensure_unique_name, unique_slug

from . import delegation
from .models import (
    LIMIT_RANGES,
    FireOutcome,
    OverlapPolicy,
    RosterEntry,
    Schedule,
    ScheduleFire,
    ScheduleKind,
    Workflow,
    WorkflowMode,
    WorkflowRun,
    WorkflowVersion,
    agent_ref,
    rubric_ref,
)


@dataclass(frozen=True)
class Specialist:
    """One roster line as a form or a caller gives it."""

    agent: object
    role_description: str
    pinned_version: object = None
    rubric: object = None


def _check_agent(team, agent, pinned, field):
    if agent.team_id != team.pk:
        raise ValidationError({field: "Choose an agent of this team."})
    if pinned is not None and pinned.agent_id != agent.pk:
        raise ValidationError({field: f"That pinned version is not a version of {agent.name}."})
    if pinned is None and agent.current_version_id is None:
        raise ValidationError({field: f"{agent.name} has no saved version yet."})


def _check_rubric(team, rubric, whose):
    """Why `rubric` may not grade `whose` answers, or ""."""
    if rubric is None:
        return ""
    if rubric.team_id != team.pk:
        return "Choose a rubric of this team."
    if rubric.is_archived:
        return f"The rubric {rubric.name} is archived; {whose} cannot be graded by it."
    if rubric.current_version_id is None:
        return f"The rubric {rubric.name} has no saved version yet."
    return ""


def _validated(team, values):
    """The values of one save, checked and normalised; a ValidationError names the field."""
    errors = {}
    name = (values.get("name") or "").strip()
    if not name:
        errors["name"] = "Give the workflow a name."
    mode = values.get("mode") or WorkflowMode.DELEGATE
    if mode not in WorkflowMode.values:
        errors["mode"] = "Choose delegate or fan-out."
    for field, (low, high) in LIMIT_RANGES.items():
        value = values.get(field)
        if value is None or not low <= int(value) <= high:
            errors[field] = f"Must be between {low} and {high}."
    for field in ("budget_tokens", "child_budget_tokens", "budget_cost_usd"):
        value = values.get(field)
        if value is not None and value <= 0:
            errors[field] = "Leave empty for no limit, or give a positive number."
    lead = values["lead_agent"]
    lead_pinned = values.get("lead_pinned_version")
    try:
        _check_agent(team, lead, lead_pinned, "lead_agent")
    except ValidationError as error:
        errors.update(error.message_dict)
    roster = list(values.get("roster") or [])
    seen = set()
    for specialist in roster:
        try:
            _check_agent(team, specialist.agent, specialist.pinned_version, "roster")
        except ValidationError as error:
            errors.setdefault("roster", []).extend(error.message_dict["roster"])
        if specialist.agent.pk == lead.pk:
            errors.setdefault("roster", []).append(
                f"{lead.name} is the lead; the lead cannot also be a specialist."
            )
        if specialist.agent.pk in seen:
            errors.setdefault("roster", []).append(
                f"{specialist.agent.name} is in the roster twice."
            )
        seen.add(specialist.agent.pk)
        if not specialist.role_description.strip():
            errors.setdefault("roster", []).append(
                f"Describe {specialist.agent.name}'s role: the lead reads it to choose."
            )
        problem = _check_rubric(team, specialist.rubric, f"{specialist.agent.name}'s answers")
        if problem:
            errors.setdefault("roster", []).append(problem)
    if not roster:
        errors["roster"] = "Add at least one specialist to the roster."
    if values.get("mode") == WorkflowMode.FAN_OUT and roster:
        limit = values.get("max_children")
        if limit is not None and len(roster) > int(limit):
            errors["max_children"] = (
                f"A fan-out starts one sub-agent per specialist: allow at least {len(roster)}."
            )
    problem = _check_rubric(team, values.get("rubric"), "the final result")
    if problem:
        errors["rubric"] = problem
    if errors:
        raise ValidationError(errors)
    return {
        "name": name,
        "description": (values.get("description") or "").strip(),
        "lead_agent": lead,
        "lead_pinned_version": lead_pinned,
        "mode": mode,
        "max_parallel": int(values["max_parallel"]),
        "max_children": int(values["max_children"]),
        "max_depth": int(values["max_depth"]),
        "budget_tokens": values.get("budget_tokens"),
        "budget_cost_usd": values.get("budget_cost_usd"),
        "child_budget_tokens": values.get("child_budget_tokens"),
        "rubric": values.get("rubric"),
        "roster": roster,
    }


def _comparable(values):
    """A save's values in the form WorkflowVersion.snapshot() has, to spot unchanged saves."""
    lead, pinned = values["lead_agent"], values["lead_pinned_version"]
    cost = values["budget_cost_usd"]
    return {
        "name": values["name"],
        "description": values["description"],
        "lead": agent_ref(lead, pinned),
        "mode": values["mode"],
        "max_parallel": values["max_parallel"],
        "max_children": values["max_children"],
        "max_depth": values["max_depth"],
        "budget_tokens": values["budget_tokens"],
        "budget_cost_usd": str(cost) if cost is not None else None,
        "child_budget_tokens": values["child_budget_tokens"],
        "rubric": rubric_ref(values["rubric"]),
        "roster": [
            {
                "agent": agent_ref(s.agent, s.pinned_version),
                "role": s.role_description.strip(),
                "rubric": rubric_ref(s.rubric),
            }
            for s in values["roster"]
        ],
    }


def _new_version(workflow, actor, values):
    number = (workflow.versions.aggregate(top=Max("number"))["top"] or 0) + 1
    fields = {k: v for k, v in values.items() if k != "roster"}
    version = WorkflowVersion.objects.create(
        workflow=workflow, number=number, created_by=actor, **fields
    )
    RosterEntry.objects.bulk_create(
        RosterEntry(
            workflow_version=version,
            position=position,
            agent=specialist.agent,
            pinned_version=specialist.pinned_version,
            role_description=specialist.role_description.strip(),
            rubric=specialist.rubric,
        )
        for position, specialist in enumerate(values["roster"])
    )
    return version


@transaction.atomic
def workflow_create(
    *,
    team,
    actor,
    name,
    lead_agent,
    roster,
    description="",
    lead_pinned_version=None,
    mode=WorkflowMode.DELEGATE,
    max_parallel=5,
    max_children=10,
    max_depth=1,
    budget_tokens=None,
    budget_cost_usd=None,
    child_budget_tokens=None,
    rubric=None,
):
    """A new workflow with its first version. `roster` is a list of Specialist; `rubric`
    grades the final result."""
    values = _validated(team, locals())
    ensure_unique_name(Workflow, team, values["name"], noun="a workflow")
    workflow = Workflow.objects.create(
        team=team,
        name=values["name"],
        slug=unique_slug(Workflow, team, values["name"], fallback="workflow"),
        description=values["description"],
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    version = _new_version(workflow, workflow.created_by, values)
    workflow.current_version = version
    workflow.save(update_fields=["current_version", "updated_at"])
    audit_record(
        team=team,
        actor=actor,
        verb="workflow.create",
        obj=workflow,
        after={"version": 1, **_comparable(values)},
    )
    return workflow


@transaction.atomic
def workflow_update(
    *,
    workflow,
    actor,
    name,
    lead_agent,
    roster,
    description="",
    lead_pinned_version=None,
    mode=WorkflowMode.DELEGATE,
    max_parallel=5,
    max_children=10,
    max_depth=1,
    budget_tokens=None,
    budget_cost_usd=None,
    child_budget_tokens=None,
    rubric=None,
):
    """Save a new version if anything changed; the new WorkflowVersion, or None."""
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    if workflow.is_archived:
        raise ValidationError("An archived workflow cannot be edited; unarchive it first.")
    values = _validated(workflow.team, locals())
    ensure_unique_name(
        Workflow, workflow.team, values["name"], noun="a workflow", exclude_pk=workflow.pk
    )
    current = workflow.current_version
    before = current.snapshot() if current else {}
    after = _comparable(values)
    if before == after:
        return None
    version = _new_version(workflow, actor if actor and actor.is_authenticated else None, values)
    workflow.name = values["name"]
    workflow.description = values["description"]
    workflow.current_version = version
    workflow.save(update_fields=["name", "description", "current_version", "updated_at"])
    changed = [key for key in after if before.get(key) != after[key]]
    audit_record(
        team=workflow.team,
        actor=actor,
        verb="workflow.update",
        obj=workflow,
        before={"version": current.number if current else None}
        | {k: before.get(k) for k in changed},
        after={"version": version.number} | {k: after[k] for k in changed},
    )
    return version


@transaction.atomic
def workflow_archive(*, workflow, actor):
    """Archive instead of delete: runs pin workflow versions. Its schedules are paused."""
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    if workflow.is_archived:
        return workflow
    workflow.archived_at = timezone.now()
    workflow.save(update_fields=["archived_at", "updated_at"])
    for schedule in workflow.schedules.filter(enabled=True):
        schedule_pause(schedule=schedule, actor=actor)
    audit_record(team=workflow.team, actor=actor, verb="workflow.archive", obj=workflow)
    return workflow


@transaction.atomic
def workflow_unarchive(*, workflow, actor):
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    if not workflow.is_archived:
        return workflow
    workflow.archived_at = None
    workflow.save(update_fields=["archived_at", "updated_at"])
    audit_record(team=workflow.team, actor=actor, verb="workflow.unarchive", obj=workflow)
    return workflow


def workflows_using_agent(agent):
    """The team's active workflows whose current version has `agent` as lead or specialist:
    archiving the agent makes their delegations to it come back refused."""
    return list(
        Workflow.objects.filter(team=agent.team, archived_at__isnull=True)
        .filter(Q(current_version__lead_agent=agent) | Q(current_version__roster__agent=agent))
        .distinct()
        .order_by("name")
    )


def version_diff(old, new):
    """(label, before, after) for each part of the configuration that differs."""
    labels = {
        "name": "Name",
        "description": "Description",
        "lead": "Lead agent",
        "mode": "Mode",
        "max_parallel": "Max parallel sub-agents",
        "max_children": "Max sub-agents per run",
        "max_depth": "Max delegation depth",
        "budget_tokens": "Run token budget",
        "budget_cost_usd": "Run cost budget (USD)",
        "child_budget_tokens": "Token budget per sub-agent",
        "rubric": "Rubric for the final result",
        "roster": "Roster",
    }
    a, b = old.snapshot(), new.snapshot()
    rows = []
    for key, label in labels.items():
        if a.get(key) != b.get(key):
            rows.append((label, _shown(key, a.get(key)), _shown(key, b.get(key))))
    return rows


def _shown(key, value):
    if key == "roster":
        return (
            "\n".join(
                f"{entry['agent']}: {entry['role']}"
                + (f" (graded by {entry['rubric']})" if entry.get("rubric") else "")
                for entry in value
            )
            or "(none)"
        )
    if value is None or value == "":
        return "(not set)"
    return str(value)


# --- schedules --------------------------------------------------------------------------------

FIRE_TASK = "agentops.workflows.tasks.schedule_fire"


def cron_errors(expression):
    """Why `expression` is not a usable five-field cron expression, or "" when it is."""
    fields = (expression or "").split()
    if not fields:
        return "Give a cron expression, e.g. 0 9 * * mon-fri (09:00 on weekdays)."
    if len(fields) != 5:
        return (
            "A cron expression has five fields: minute hour day-of-month month day-of-week "
            f"(got {len(fields)})."
        )
    try:
        crontab_validator(" ".join(fields))
        crontab(
            minute=fields[0],
            hour=fields[1],
            day_of_month=fields[2],
            month_of_year=fields[3],
            day_of_week=fields[4],
        )
    except (ValidationError, ValueError) as error:
        message = error.messages[0] if isinstance(error, ValidationError) else str(error)
        return f"Not a valid cron expression: {message}"
    return ""


def _schedule_values(team, values):
    errors = {}
    name = (values.get("name") or "").strip()
    if not name:
        errors["name"] = "Give the schedule a name."
    workflow, agent = values.get("workflow"), values.get("agent")
    if (workflow is None) == (agent is None):
        errors["target"] = "Choose either a workflow or an agent to run."
    elif (workflow or agent).team_id != team.pk:
        errors["target"] = "Choose a workflow or agent of this team."
    elif (workflow or agent).is_archived:
        errors["target"] = f"{workflow or agent} is archived."
    if not (values.get("input") or "").strip():
        errors["input"] = "Give the runs some input text."
    rubric = values.get("rubric")
    problem = _check_rubric(team, rubric, "the runs")
    if problem:
        errors["rubric"] = problem
    kind = values.get("kind")
    cron = " ".join((values.get("cron") or "").split())
    every = values.get("every_minutes")
    if kind == ScheduleKind.CRON:
        problem = cron_errors(cron)
        if problem:
            errors["cron"] = problem
        every = None
    elif kind == ScheduleKind.INTERVAL:
        if not every or int(every) < 1:
            errors["every_minutes"] = "Give an interval of at least one minute."
        elif int(every) > MAX_INTERVAL_MINUTES:
            errors["every_minutes"] = INTERVAL_TOO_LONG
        cron = ""
    else:
        errors["kind"] = "Choose cron or interval."
    tz = values.get("timezone") or "UTC"
    if tz not in zoneinfo.available_timezones():
        errors["timezone"] = f"Unknown time zone {tz!r}; use a name like Europe/Paris."
    overlap = values.get("overlap") or OverlapPolicy.SKIP
    if overlap not in OverlapPolicy.values:
        errors["overlap"] = "Choose skip or allow."
    if errors:
        raise ValidationError(errors)
    return {
        "name": name,
        "workflow": workflow,
        "agent": agent,
        "rubric": rubric,
        "input": values["input"].strip(),
        "kind": kind,
        "cron": cron,
        "every_minutes": int(every) if every else None,
        "timezone": tz,
        "overlap": overlap,
    }


def _beat_schedule(schedule):
    """The CrontabSchedule or IntervalSchedule row for a schedule (shared rows are reused)."""
    if schedule.kind == ScheduleKind.CRON:
        minute, hour, day_of_month, month_of_year, day_of_week = schedule.cron.split()
        crontab_row, _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
            timezone=zoneinfo.ZoneInfo(schedule.timezone),
        )
        return {"crontab": crontab_row, "interval": None}
    interval_row, _ = IntervalSchedule.objects.get_or_create(
        every=schedule.every_minutes, period=IntervalSchedule.MINUTES
    )
    return {"crontab": None, "interval": interval_row}


def _sync_periodic_task(schedule):
    """Create or update the schedule's PeriodicTask so beat fires it as configured."""
    fields = {
        "name": f"agentops schedule {schedule.pk}: {schedule.name}"[:200],
        "task": FIRE_TASK,
        "kwargs": json.dumps({"schedule_id": schedule.pk}),
        "enabled": schedule.enabled,
        "description": f"Starts {schedule.target_label} for team {schedule.team}.",
        **_beat_schedule(schedule),
    }
    task = schedule.periodic_task
    if task is None:
        task = PeriodicTask.objects.create(**fields)
        schedule.periodic_task = task
        schedule.save(update_fields=["periodic_task"])
    else:
        for key, value in fields.items():
            setattr(task, key, value)
        task.save()
    return task


def _schedule_audit(schedule):
    return {
        "name": schedule.name,
        "target": schedule.target_label,
        "input": schedule.input,
        "rubric": schedule.rubric.name if schedule.rubric_id else "",
        "when": schedule.when_label,
        "overlap": schedule.overlap,
        "enabled": schedule.enabled,
    }


@transaction.atomic
def schedule_create(
    *,
    team,
    actor,
    name,
    input,  # noqa: A002
    kind,
    workflow=None,
    agent=None,
    cron="",
    every_minutes=None,
    timezone="UTC",  # noqa: A002 - the field's name
    overlap=OverlapPolicy.SKIP,
    enabled=True,
    rubric=None,
):
    values = _schedule_values(team, locals())
    schedule = Schedule.objects.create(
        team=team,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        enabled=enabled,
        **values,
    )
    _sync_periodic_task(schedule)
    audit_record(
        team=team,
        actor=actor,
        verb="schedule.create",
        obj=schedule,
        after=_schedule_audit(schedule),
    )
    return schedule


@transaction.atomic
def schedule_update(
    *,
    schedule,
    actor,
    name,
    input,  # noqa: A002
    kind,
    workflow=None,
    agent=None,
    cron="",
    every_minutes=None,
    timezone="UTC",  # noqa: A002
    overlap=OverlapPolicy.SKIP,
    rubric=None,
):
    schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
    values = _schedule_values(schedule.team, locals())
    before = _schedule_audit(schedule)
    for key, value in values.items():
        setattr(schedule, key, value)
    schedule.save()
    _sync_periodic_task(schedule)
    after = _schedule_audit(schedule)
    audit_record(
        team=schedule.team,
        actor=actor,
        verb="schedule.update",
        obj=schedule,
        before={k: v for k, v in before.items() if after[k] != v},
        after={k: v for k, v in after.items() if before[k] != v},
    )
    return schedule


def _set_enabled(schedule, actor, enabled, verb):
    schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
    if schedule.enabled == enabled:
        return schedule
    if enabled and schedule.target.is_archived:
        raise ValidationError(f"{schedule.target} is archived; unarchive it first.")
    schedule.enabled = enabled
    schedule.save(update_fields=["enabled", "updated_at"])
    _sync_periodic_task(schedule)
    audit_record(team=schedule.team, actor=actor, verb=verb, obj=schedule)
    return schedule


@transaction.atomic
def schedule_pause(*, schedule, actor):
    return _set_enabled(schedule, actor, False, "schedule.pause")


@transaction.atomic
def schedule_resume(*, schedule, actor):
    return _set_enabled(schedule, actor, True, "schedule.resume")


@transaction.atomic
def schedule_delete(*, schedule, actor):
    schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
    audit_record(
        team=schedule.team,
        actor=actor,
        verb="schedule.delete",
        obj=schedule,
        before=_schedule_audit(schedule),
    )
    task = schedule.periodic_task
    schedule.delete()
    if task is not None:
        task.delete()


def _cron_next(expression, tz, now):
    """The first time after `now` that the cron expression matches, read in time zone tz."""
    minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
    local_now = now.astimezone(tz)
    schedule = crontab(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        nowfun=lambda: local_now,
    )
    start, delta, _ = schedule.remaining_delta(local_now, tz=tz)
    return (start + delta).astimezone(UTC)


# Beyond a year an interval is a date, which a cron expression says better; and a huge
# one would overflow datetime arithmetic (the next-run time, and beat's own).
MAX_INTERVAL_MINUTES = 366 * 24 * 60
INTERVAL_TOO_LONG = (
    f"Give an interval of at most {MAX_INTERVAL_MINUTES:,} minutes (366 days); for rarer "
    "runs use a cron expression."
)


def schedule_next_run(schedule, *, now=None):
    """When beat will next fire the schedule, or None when it is paused."""
    task = schedule.periodic_task
    if not schedule.enabled or task is None:
        return None
    now = now or timezone.now()
    if schedule.kind == ScheduleKind.CRON and task.crontab is not None:
        return _cron_next(schedule.cron, zoneinfo.ZoneInfo(schedule.timezone), now)
    if task.interval is not None:
        every = timedelta(minutes=task.interval.every)
        last = task.last_run_at or task.start_time or task.date_changed or now
        # The first firing still ahead (beat catches up on missed ones with one run).
        firings = max(-((last - now) // every), 1)
        try:
            return last + every * firings
        except OverflowError:  # an interval saved before intervals had an upper bound
            return None
    return None


# --- workflow runs ----------------------------------------------------------------------------


def workflow_run_start(
    *,
    workflow,
    input,  # noqa: A002
    actor=None,
    trigger=RunTrigger.BROWSER,
    rubric=None,
    version=None,
    rerun_of=None,
):
    """Start a run of the workflow's current version (or of `version`, for a rerun). In
    delegate mode the lead's first model call is queued; in fan-out mode every specialist
    gets the input at once and the lead's first call synthesizes their results. The final
    result is graded against `rubric` (a schedule's), else the version's own rubric, if
    either is set. Returns the Run."""
    workflow = Workflow.objects.select_related("current_version__lead_agent").get(pk=workflow.pk)
    version = version or workflow.current_version
    if workflow.is_archived:
        raise ValidationError("Archived workflows cannot be run.")
    if version is None:
        raise ValidationError("This workflow has no saved version to run yet.")
    if not (input or "").strip():
        raise ValidationError({"input": "Give the run some input."})
    lead = version.lead_agent
    lead_version = version.lead_version()
    if lead.is_archived:
        raise ValidationError(f"The lead agent {lead.name} is archived.")
    if lead_version is None:
        raise ValidationError(f"The lead agent {lead.name} has no saved version.")
    with transaction.atomic():
        run = Run.objects.create(
            team_id=workflow.team_id,
            agent=lead,
            agent_version=lead_version,
            input=input,
            trigger=trigger,
            budget_tokens=version.budget_tokens,
            budget_cost_usd=version.budget_cost_usd,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
            rerun_of=rerun_of,
            in_workflow=True,
        )
        WorkflowRun.objects.create(run=run, workflow=workflow, version=version)
        thread = Thread.objects.create(
            run=run,
            agent_version=lead_version,
            role=ThreadRole.LEAD,
            messages=[{"role": "user", "content": input}],
        )
        final_rubric = rubric or version.rubric
        if final_rubric is not None:
            thread_grade(thread=thread, rubric=final_rubric, actor=actor)
        if version.mode == WorkflowMode.FAN_OUT:
            _fan_out(run, thread, version, input)
        else:
            engine.step_create(thread=thread, kind=StepKind.MODEL_CALL, turn=1)
        thread.save()
        audit_record(
            team=workflow.team,
            actor=actor,
            actor_label="" if actor else trigger,
            verb="workflow.run",
            obj=run,
            after={"workflow": workflow.slug, "version": version.number, "trigger": trigger},
        )
    return run


def workflow_rerun(*, run, actor, latest_version):
    """RERUN_STARTERS: a workflow's run is rerun as a run of its workflow, on the version it
    ran (or the workflow's latest), graded by the same final-result rubric."""
    marker = WorkflowRun.objects.select_related("workflow", "version").filter(run=run).first()
    if marker is None:
        return None
    original = Evaluation.objects.filter(run=run).select_related("rubric_version__rubric").first()
    return workflow_run_start(
        workflow=marker.workflow,
        input=run.input,
        actor=actor,
        trigger=RunTrigger.RERUN,
        rubric=original.rubric_version.rubric if original else None,
        version=None if latest_version else marker.version,
        rerun_of=run,
    )


def _fan_out(run, thread, version, input):  # noqa: A002
    """Write the delegation the platform makes on the lead's behalf (turn 0), one call per
    specialist, so the lead's first model call sees every result as a tool result."""
    calls = [
        {
            "type": "tool_use",
            "id": f"toolu_fanout_{run.pk}_{position}",
            "name": delegation.DELEGATE,
            "input": {"specialist": entry.key, "task": input},
        }
        for position, entry in enumerate(delegation.roster_of(version))
    ]
    note = {"type": "text", "text": "Fan-out: every specialist gets the input in parallel."}
    thread.messages = [*thread.messages, {"role": "assistant", "content": [note, *calls]}]
    now = timezone.now()
    steps = engine.steps_create(
        {
            "thread": thread,
            "kind": StepKind.TOOL_CALL,
            "turn": 0,
            "status": StepStatus.RUNNING,
            "claimed_at": now,
            "tool_use_id": call["id"],
            "tool_name": call["name"],
            "request": {"input": call["input"], "fan_out": True},
        }
        for call in calls
    )
    thread.pending_tools = len(steps)
    delegation.delegations_start(run=run, thread=thread, steps=steps)


def thread_cancel(*, thread, actor):
    """Cancel one thread: the lead cancels the whole run (its tree); a sub-agent ends with
    an error result to its parent, after its own sub-agents."""
    if thread.role == ThreadRole.GRADER:
        raise ValidationError(
            "A grader stops with the thread it grades: cancel that thread (or the run) instead."
        )
    if thread.parent_id is None:
        return engine.run_cancel(run=thread.run, actor=actor)
    who = actor.get_username() if actor else "the system"
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=thread.run_id)
        if not run.is_active:
            raise ValidationError(f"This run has already ended ({run.get_status_display()}).")
        locked = Thread.objects.select_for_update().get(pk=thread.pk)
        if locked.status in engine.FINISHED_THREAD_STATUSES:
            raise ValidationError("This thread has already ended.")
        for descendant in reversed(_descendants(locked)):
            if descendant.status not in engine.FINISHED_THREAD_STATUSES:
                engine.child_thread_end(
                    run=run, thread=descendant, outcome="cancelled", text=f"Cancelled by {who}."
                )
        locked.refresh_from_db()
        engine.child_thread_end(
            run=run, thread=locked, outcome="cancelled", text=f"Cancelled by {who}."
        )
        run.save()
        audit_record(team=run.team, actor=actor, verb="thread.cancel", obj=locked)
    return run


def _descendants(thread):
    """The thread's sub-agents, theirs, and so on, parents before children, locked."""
    found, frontier = [], [thread.pk]
    while frontier:
        level = list(
            Thread.objects.select_for_update().filter(parent_id__in=frontier).order_by("id")
        )
        found.extend(level)
        frontier = [t.pk for t in level]
    return found


# --- firing schedules -------------------------------------------------------------------------


def schedule_fire(*, schedule_id):
    """Beat fired a schedule: start its run unless the overlap policy says skip. Writes one
    ScheduleFire row either way; returns it (None for a deleted or paused schedule)."""
    with transaction.atomic():
        schedule = (
            Schedule.objects.select_for_update(of=("self",))
            .select_related("workflow__current_version", "agent__current_version", "team", "rubric")
            .filter(pk=schedule_id)
            .first()
        )
        if schedule is None or not schedule.enabled:
            return None
        now = timezone.now()
        schedule.last_fired_at = now
        schedule.save(update_fields=["last_fired_at"])
        previous = schedule.fires.filter(run__isnull=False).select_related("run").first()
        if (
            schedule.overlap == OverlapPolicy.SKIP
            and previous is not None
            and previous.run.is_active
        ):
            return ScheduleFire.objects.create(
                schedule=schedule,
                outcome=FireOutcome.SKIPPED,
                message=f"skipped: previous run {previous.run_id} still active",
            )
        # A run started now would stop before its first model call.
        used_up = engine.team_budget_stop_reason(schedule.team)
        if used_up:
            return ScheduleFire.objects.create(
                schedule=schedule, outcome=FireOutcome.SKIPPED, message=f"skipped: {used_up}"
            )
        try:
            with transaction.atomic():
                if schedule.workflow_id:
                    run = workflow_run_start(
                        workflow=schedule.workflow,
                        input=schedule.input,
                        trigger=RunTrigger.SCHEDULE,
                        rubric=schedule.rubric,
                    )
                elif schedule.rubric_id:
                    run = run_start_graded(
                        rubric=schedule.rubric,
                        agent=schedule.agent,
                        input=schedule.input,
                        trigger=RunTrigger.SCHEDULE,
                    )
                else:
                    run = engine.run_start(
                        agent=schedule.agent, input=schedule.input, trigger=RunTrigger.SCHEDULE
                    )
        except ValidationError as error:
            return ScheduleFire.objects.create(
                schedule=schedule, outcome=FireOutcome.FAILED, message=" ".join(error.messages)
            )
        return ScheduleFire.objects.create(
            schedule=schedule, outcome=FireOutcome.STARTED, run=run, message=f"started run {run.pk}"
        )
