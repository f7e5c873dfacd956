"""Thin Celery tasks: ids in, one service call."""

from celery import shared_task

from . import dreaming


@shared_task(name="agentops.memory.dream_execute")
def dream_execute_task(dream_id):
    delay = dreaming.dream_execute(dream_id=dream_id)
    if delay is not None:
        # A transient model error or an exhausted rate budget: the dream is queued again.
        dream_execute_task.apply_async((dream_id,), countdown=delay)


@shared_task(name="agentops.memory.dreams_tick")
def dreams_tick_task():
    dreaming.dreams_tick()
