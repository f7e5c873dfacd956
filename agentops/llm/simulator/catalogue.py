"""The models the simulator lists on GET /v1/models.

Any model id is accepted by POST /v1/messages (the answer echoes it); this list only serves
pickers and the models endpoint. Minimum cacheable prompt lengths follow Anthropic's
prompt-caching documentation for the 4.5 models; the 4.6 models reuse their line's value.
"""

EPOCH = "1970-01-01T00:00:00Z"  # the API's value for "release date unknown"

# Newest first, the order GET /v1/models uses. Release dates the simulator does not know
# are given as the epoch, as the API documents for unknown dates.
SIMULATED_MODELS = (
    {
        "id": "claude-opus-4-6",
        "display_name": "Claude Opus 4.6",
        "created_at": EPOCH,
        "line": "opus",
        "max_input_tokens": 200_000,
        "max_tokens": 128_000,
        "min_cache_tokens": 4096,
    },
    {
        "id": "claude-sonnet-4-6",
        "display_name": "Claude Sonnet 4.6",
        "created_at": EPOCH,
        "line": "sonnet",
        "max_input_tokens": 200_000,
        "max_tokens": 64_000,
        "min_cache_tokens": 1024,
    },
    {
        "id": "claude-opus-4-5",
        "display_name": "Claude Opus 4.5",
        "created_at": "2025-11-24T00:00:00Z",
        "line": "opus",
        "max_input_tokens": 200_000,
        "max_tokens": 64_000,
        "min_cache_tokens": 4096,
    },
    {
        "id": "claude-haiku-4-5",
        "display_name": "Claude Haiku 4.5",
        "created_at": "2025-10-15T00:00:00Z",
        "line": "haiku",
        "max_input_tokens": 200_000,
        "max_tokens": 64_000,
        "min_cache_tokens": 4096,
    },
    {
        "id": "claude-sonnet-4-5",
        "display_name": "Claude Sonnet 4.5",
        "created_at": "2025-09-29T00:00:00Z",
        "line": "sonnet",
        # The SDK lists this model as retiring on 2026-11-30.
        "lifecycle": "deprecated",
        "retires_at": "2026-11-30T00:00:00Z",
        "max_input_tokens": 200_000,
        "max_tokens": 64_000,
        "min_cache_tokens": 1024,
    },
)

DEFAULT_MIN_CACHE_TOKENS = 1024
DEFAULT_CONTEXT_WINDOW = 200_000


def _find(model_id: str):
    for model in SIMULATED_MODELS:
        if model_id == model["id"] or model_id.startswith(model["id"] + "-"):
            return model
    return None


def min_cache_tokens(model_id: str) -> int:
    model = _find(model_id)
    return model["min_cache_tokens"] if model else DEFAULT_MIN_CACHE_TOKENS


def context_window(model_id: str) -> int:
    model = _find(model_id)
    return model["max_input_tokens"] if model else DEFAULT_CONTEXT_WINDOW


def model_info(model: dict) -> dict:
    return {
        "type": "model",
        "id": model["id"],
        "display_name": model["display_name"],
        "created_at": model["created_at"],
        "lifecycle": model.get("lifecycle", "active"),
        "retires_at": model.get("retires_at"),
        "line": model["line"],
        "max_input_tokens": model["max_input_tokens"],
        "max_tokens": model["max_tokens"],
    }


def retrieve_model(model_id: str) -> dict | None:
    for model in SIMULATED_MODELS:
        if model["id"] == model_id:
            return model_info(model)
    return None


def list_models(*, limit: int = 20, after_id: str | None = None, before_id: str | None = None):
    """One page of GET /v1/models, newest first, with the API's cursor fields."""
    models = list(SIMULATED_MODELS)
    ids = [m["id"] for m in models]
    limit = max(1, min(int(limit), 1000))
    if after_id in ids:
        models = models[ids.index(after_id) + 1 :]
        page = models[:limit]
        has_more = len(models) > limit
    elif before_id in ids:
        models = models[: ids.index(before_id)]
        page = models[-limit:]
        has_more = len(models) > limit
    else:
        page = models[:limit]
        has_more = len(models) > limit
    data = [model_info(m) for m in page]
    return {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
