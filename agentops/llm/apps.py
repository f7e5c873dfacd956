from django.apps import AppConfig


class LlmConfig(AppConfig):
    name = "agentops.llm"
    label = "llm"
