from celery import shared_task

from agentops.teams.models import Team

from . import services


@shared_task(ignore_result=True)
def llm_test_key(team_id):
    """Test the team's model credential (it is read from the database, never sent here)."""
    team = Team.objects.filter(pk=team_id).first()
    if team is not None:
        services.api_key_test_run(team=team)
