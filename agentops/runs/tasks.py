"""Thin Celery tasks: ids in, one service call."""

from celery import shared_task
from django.conf import settings

from . import services


@shared_task(name="agentops.runs.step_execute")
def step_execute(step_id):
    services.step_execute(step_id=step_id, keep_for_s=settings.AGENTOPS_STEP_KEEP_S)


@shared_task(name="agentops.runs.steps_sweep")
def steps_sweep():
    services.steps_sweep()
