from django.apps import AppConfig


class TeamsConfig(AppConfig):
    name = "agentops.teams"
    label = "teams"
