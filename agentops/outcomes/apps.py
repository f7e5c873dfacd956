from django.apps import AppConfig


class OutcomesConfig(AppConfig):
    name = "agentops.outcomes"
    label = "outcomes"
    verbose_name = "Outcomes"

    def ready(self):
        from .loop import install

        install()
