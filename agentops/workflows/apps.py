from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "agentops.workflows"
    label = "workflows"

    def ready(self):
        from . import delegation

        delegation.install()
