from django.apps import AppConfig


class MemoryConfig(AppConfig):
    name = "agentops.memory"
    label = "memory"

    def ready(self):
        # Connects memory to the run engine's model context and registers the memory tools.
        from . import wiring  # noqa: F401
