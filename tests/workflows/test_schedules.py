import json
import zoneinfo
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django_celery_beat.models import PeriodicTask

from agentops.runs.models import RunStatus, RunTrigger
from agentops.workflows.models import FireOutcome, ScheduleKind
from agentops.workflows.services import (
    cron_errors,
    schedule_create,
    schedule_delete,
    schedule_fire,
    schedule_next_run,
    schedule_pause,
    schedule_resume,
    schedule_update,
)


@pytest.mark.parametrize(
    "expression,ok",
    [
        ("*/5 * * * *", True),
        ("0 9 * * mon-fri", True),
        ("61 * * * *", False),
        ("* * *", False),
        ("a b c d e", False),
        ("0 0 31 2 *", False),
    ],
)
def test_cron_validation(expression, ok):
    assert (cron_errors(expression) == "") is ok


def test_an_empty_cron_expression_is_asked_for_not_counted():
    assert cron_errors("  ").startswith("Give a cron expression")


@pytest.fixture
def workflow_schedule(make_workflow, team_a, alice):
    def make(**extra):
        if "workflow" not in extra:
            extra["workflow"] = make_workflow()
        values = dict(
            team=team_a,
            actor=alice,
            name="Morning digest",
            input="Summarize yesterday.",
            kind=ScheduleKind.CRON,
            cron="0 9 * * mon-fri",
            timezone="Europe/Paris",
        )
        return schedule_create(**(values | extra))

    return make


def test_create_keeps_a_periodic_task_in_sync(workflow_schedule, alice):
    schedule = workflow_schedule()
    task = schedule.periodic_task
    assert task.task == "agentops.workflows.tasks.schedule_fire"
    assert json.loads(task.kwargs) == {"schedule_id": schedule.pk}
    assert task.crontab.hour == "9" and str(task.crontab.timezone) == "Europe/Paris"
    assert task.enabled
    schedule_update(
        schedule=schedule,
        actor=alice,
        name="Every ten",
        workflow=schedule.workflow,
        input="x",
        kind=ScheduleKind.INTERVAL,
        every_minutes=10,
    )
    task.refresh_from_db()
    assert task.crontab is None and task.interval.every == 10
    schedule = schedule_pause(schedule=schedule, actor=alice)
    task.refresh_from_db()
    assert not task.enabled
    assert schedule_next_run(schedule) is None
    schedule = schedule_resume(schedule=schedule, actor=alice)
    task.refresh_from_db()
    assert task.enabled
    assert schedule_next_run(schedule) is not None
    schedule_delete(schedule=schedule, actor=alice)
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()


def test_next_run_respects_the_time_zone(workflow_schedule):
    schedule = workflow_schedule(cron="0 9 * * *", timezone="Asia/Tokyo")
    now = datetime(2026, 1, 5, 1, 30, tzinfo=UTC)  # 10:30 in Tokyo: today's 9:00 has passed
    upcoming = schedule_next_run(schedule, now=now)
    assert upcoming.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo")).replace(tzinfo=None) == datetime(
        2026, 1, 6, 9, 0
    )


def test_invalid_values_name_their_fields(workflow_schedule, make_workflow, specialists):
    workflow = make_workflow()
    with pytest.raises(ValidationError) as error:
        workflow_schedule(cron="61 * * * *", workflow=workflow)
    assert "cron" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        workflow_schedule(timezone="Mars/Olympus", workflow=workflow)
    assert "timezone" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        workflow_schedule(agent=specialists[0], workflow=workflow)
    assert "target" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        workflow_schedule(kind=ScheduleKind.INTERVAL, every_minutes=0, workflow=workflow)
    assert "every_minutes" in error.value.message_dict


def test_firing_starts_a_run_and_skips_while_it_is_active(workflow_schedule, sim, drain):
    schedule = workflow_schedule()
    first = schedule_fire(schedule_id=schedule.pk)
    assert first.outcome == FireOutcome.STARTED
    assert first.run.trigger == RunTrigger.SCHEDULE
    assert first.run.workflow_run.workflow == schedule.workflow
    second = schedule_fire(schedule_id=schedule.pk)
    assert second.outcome == FireOutcome.SKIPPED
    assert second.message == f"skipped: previous run {first.run_id} still active"
    assert drain(first.run).status == RunStatus.SUCCEEDED
    third = schedule_fire(schedule_id=schedule.pk)
    assert third.outcome == FireOutcome.STARTED


def test_allow_overlap_starts_anyway_and_agents_can_be_scheduled(team_a, alice, specialists, sim):
    schedule = schedule_create(
        team=team_a,
        actor=alice,
        name="Agent every minute",
        agent=specialists[0],
        input="Check the news.",
        kind=ScheduleKind.INTERVAL,
        every_minutes=1,
        overlap="allow",
    )
    runs = [schedule_fire(schedule_id=schedule.pk).run for _ in range(2)]
    assert all(run.agent == specialists[0] for run in runs)
    assert runs[0].pk != runs[1].pk


def test_paused_schedule_does_not_fire(workflow_schedule, alice):
    schedule = workflow_schedule()
    schedule_pause(schedule=schedule, actor=alice)
    assert schedule_fire(schedule_id=schedule.pk) is None
    assert not schedule.fires.exists()


def test_an_interval_beyond_a_year_is_refused_by_the_service(workflow_schedule):
    with pytest.raises(ValidationError) as refused:
        workflow_schedule(kind=ScheduleKind.INTERVAL, cron="", every_minutes=366 * 24 * 60 + 1)
    assert "at most 527,040 minutes" in str(refused.value)


def test_the_next_run_of_an_interval_is_the_first_firing_still_ahead(workflow_schedule):
    schedule = workflow_schedule(kind=ScheduleKind.INTERVAL, cron="", every_minutes=60)
    task = schedule.periodic_task
    task.last_run_at = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    task.save()
    schedule.refresh_from_db()
    now = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
    assert schedule_next_run(schedule, now=now) == datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    on_the_hour = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    assert schedule_next_run(schedule, now=on_the_hour) == on_the_hour


def test_an_interval_saved_too_long_to_compute_shows_no_next_run(workflow_schedule):
    # Saved before intervals had an upper bound (SQLite, the embedded default, stores any
    # integer; PostgreSQL's column refuses one this large): the pages must not fail.
    schedule = workflow_schedule(kind=ScheduleKind.INTERVAL, cron="", every_minutes=60)
    schedule.periodic_task.interval.every = 99_999_999_999
    assert schedule_next_run(schedule) is None


def test_a_schedule_skips_while_the_team_budget_is_used_up(workflow_schedule, team_a, sim, drain):
    from agentops.runs.models import TeamBudget

    schedule = workflow_schedule()
    first = schedule_fire(schedule_id=schedule.pk)
    run = drain(first.run)
    budget = TeamBudget.objects.create(team=team_a, monthly_tokens=run.total_tokens)
    skipped = schedule_fire(schedule_id=schedule.pk)
    assert skipped.outcome == FireOutcome.SKIPPED and skipped.run is None
    assert skipped.message.startswith("skipped: Team monthly token budget reached")
    budget.monthly_tokens = run.total_tokens * 2
    budget.save()
    assert schedule_fire(schedule_id=schedule.pk).outcome == FireOutcome.STARTED
