WEBHOOK_SECRET = "test-webhook-secret-0123456789"


def agent_form_data(**overrides):
    data = {
        "name": "Helper",
        "description": "",
        "model": "claude-sonnet-4-5",
        "system_prompt": "You help.",
        "max_tokens": "1024",
        "temperature": "",
        "thinking_budget": "",
    }
    data.update(overrides)
    return data
