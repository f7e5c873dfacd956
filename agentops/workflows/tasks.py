"""Thin Celery tasks: ids in, one service call."""

from celery import shared_task

from . import services


@shared_task(name="agentops.workflows.tasks.schedule_fire")
def schedule_fire(schedule_id):
    services.schedule_fire(schedule_id=schedule_id)
