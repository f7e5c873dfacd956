"""The model layer's services: the one model call, API keys, rate limits, usage.

`model_call` is the only way agentops talks to a model. It is synchronous, makes exactly one
Messages API request (the SDK's retries are off and it does not retry either: the run engine
decides, using `retry_delay`), waits for rate budget first, and writes one ModelCallRecord
afterwards. It must never run inside a database transaction.
"""

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Case, Count, F, Sum, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from agentops.fastsql import insert_row
from agentops.teams.services import audit_record

from .catalogue import cost_of, model_choices, price_for  # noqa: F401  (re-exported)
from .client import (  # noqa: F401  (re-exported)
    Credential,
    Source,
    client_for_credential,
    client_for_team,
    credential_for_team,
    forget_clients,
    trim_simulator_history,
    uses_simulator,
)
from .crypto import UndecryptableKey, encrypt, fingerprint
from .errors import classify, scrub
from .models import CallStatus, KeyTestStatus, ModelCallRecord, RateLimit, TeamCredential
from .ratelimit import HEADER_PREFIX, Limits, bucket_name, get_limiter
from .retry import retry_delay  # noqa: F401  (re-exported)
from .types import (  # noqa: F401  (re-exported)
    ModelError,
    ModelResult,
    PermanentModelError,
    RateBudgetExhausted,
    TransientModelError,
)

log = logging.getLogger(__name__)

STEP_HEADER = "X-Agentops-Step"
# The in-process simulator has no account limits; these keep its bucket out of the way.
SIMULATOR_LIMITS = Limits(rpm=4_000, itpm=2_000_000, otpm=400_000)
# The input estimate starts at 3 characters a token (real text runs 3.5-4, so it starts
# high) and then learns each model's real ratio from the usage the API reports, plus a
# margin: a short estimate risks a 429, a long one holds budget until the refund.
CHARS_PER_TOKEN_ESTIMATE = 3
ESTIMATE_MARGIN = 1.05
_ESTIMATE_WEIGHT = 0.2  # how fast the learned ratio follows new observations
_tokens_per_char = {}
_tokens_per_char_lock = threading.Lock()
# The usage label of a dream's calls starts with this (dreams run for no agent); the usage
# page shows them all in one row.
DREAM_LABEL_PREFIX = "dream "
DREAMS_PURPOSE = "dreams"
USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


class ModelCallInTransaction(RuntimeError):
    pass


def _in_transaction():
    # Test cases wrap each test in atomic blocks marked _from_testcase; those do not count.
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def release_database_connection():
    """Hand this thread's pooled database connection back while it waits on the network.

    A model call can last a minute. Held through it, a connection would sit idle while other
    worker threads of the process wait for one (the pool is smaller than a fan-out's threads);
    the next query takes one from the pool again. Never inside an atomic block."""
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()


def _text_length(value):
    if isinstance(value, str):
        return len(value)
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def prompt_chars(*, system="", messages=(), tools=None):
    return _text_length(system or "") + _text_length(list(messages)) + _text_length(tools or [])


def estimate_input_tokens(*, system="", messages=(), tools=None, model=""):
    chars = prompt_chars(system=system, messages=messages, tools=tools)
    with _tokens_per_char_lock:
        learned = _tokens_per_char.get(model)
    if learned is None:
        return math.ceil(chars / CHARS_PER_TOKEN_ESTIMATE) + 4 * (len(messages) + 1)
    return math.ceil(chars * learned * ESTIMATE_MARGIN) + 1


def learn_tokens_per_char(model, *, chars, tokens):
    if chars <= 0 or tokens <= 0:
        return
    observed = min(max(tokens / chars, 1 / 8), 1.0)
    with _tokens_per_char_lock:
        previous = _tokens_per_char.get(model)
        _tokens_per_char[model] = (
            observed if previous is None else previous + _ESTIMATE_WEIGHT * (observed - previous)
        )


# Every model call needs the team's credential and rate-limit rows; they change rarely, so a
# process keeps them this long instead of reading two rows per call. The services that save
# a key or a limit forget them at once in their own process; other processes (workers) see
# the change within this many seconds.
CALL_SETTINGS_TTL_S = 2.0
_call_settings = {}
_call_settings_lock = threading.Lock()


def call_settings(team, model) -> tuple[Credential, Limits]:
    """The credential and limits a call of `model` for `team` uses, briefly cached."""
    key = (getattr(team, "pk", None), model)
    now = time.monotonic()
    with _call_settings_lock:
        cached = _call_settings.get(key)
    if cached is not None and cached[0] > now:
        return cached[1], cached[2]
    credential = credential_for_team(team)
    limits = limits_for(team, model, credential)
    with _call_settings_lock:
        _call_settings[key] = (now + CALL_SETTINGS_TTL_S, credential, limits)
    return credential, limits


def forget_call_settings():
    with _call_settings_lock:
        _call_settings.clear()


def _forget_settings_and_clients():
    forget_call_settings()
    forget_clients()


def limits_for(team, model, credential) -> Limits:
    """The team's budget for this model: its row, its catch-all row, or the default."""
    rows = {r.model: r for r in RateLimit.objects.filter(team=team, model__in=[model, ""])}
    row = rows.get(model) or rows.get("")
    if row is not None:
        return Limits(row.rpm, row.itpm, row.otpm)
    return default_limits(credential)


def default_limits(credential) -> Limits:
    """Limits for a model the team has not configured."""
    if credential.source == Source.SIMULATOR:
        return SIMULATOR_LIMITS
    return Limits(
        settings.AGENTOPS_RATE_DEFAULT_RPM,
        settings.AGENTOPS_RATE_DEFAULT_ITPM,
        settings.AGENTOPS_RATE_DEFAULT_OTPM,
    )


def _ratelimit_headers(headers):
    if headers is None:
        return {}
    wanted = ("anthropic-ratelimit-", "retry-after")
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith(wanted)}


def _usage_dict(usage):
    return {name: int(getattr(usage, name, 0) or 0) for name in USAGE_FIELDS}


@dataclass
class CallOutcome:
    """What `execute_call` knows after one attempt, success or not (for records and bench)."""

    result: ModelResult | None = None
    error: ModelError | None = None
    waited_ms: int = 0
    latency_ms: int = 0
    admitted_at: float = 0.0  # time.time() when the request was sent


def execute_call(
    *,
    credential: Credential,
    client,
    limiter,
    limits: Limits,
    model,
    messages,
    system="",
    tools=None,
    tool_choice=None,
    max_tokens,
    temperature=None,
    thinking_budget=None,
    step_id=None,
    max_wait_s,
    sleep=time.sleep,
    on_wait=None,
) -> CallOutcome:
    """Admission, one request, settlement. Needs no database: the bench drives it directly.
    `on_wait(seconds)` hears of a wait for the rate limit of at least
    AGENTOPS_RATE_WAIT_NOTICE_S before it begins."""
    outcome = CallOutcome()
    reservation = limiter.reserve(
        bucket=bucket_name(credential.bucket_id, model),
        limits=limits,
        input_tokens=estimate_input_tokens(
            system=system, messages=messages, tools=tools, model=model
        ),
        output_tokens=max_tokens,
        max_wait_s=max_wait_s,
    )
    if on_wait is not None and reservation.wait_s >= settings.AGENTOPS_RATE_WAIT_NOTICE_S:
        on_wait(reservation.wait_s)
    waiting_since = time.monotonic()
    limiter.wait(reservation, sleep=sleep)
    outcome.waited_ms = int((time.monotonic() - waiting_since) * 1000)
    outcome.admitted_at = time.time()

    params = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if system:
        params["system"] = system
    if tools:
        params["tools"] = tools
    if tool_choice:
        params["tool_choice"] = tool_choice
    if temperature is not None:
        # This SDK dropped `temperature` from create() (newer models reject sampling
        # parameters); models that still accept it get it in the body.
        params["extra_body"] = {"temperature": temperature}
    if thinking_budget:
        params["thinking"] = {"type": "enabled", "budget_tokens": thinking_budget}
    if step_id is not None:
        params["extra_headers"] = {STEP_HEADER: str(step_id)}

    started = time.monotonic()
    try:
        raw = client.messages.with_raw_response.create(**params)
        message = raw.parse()
        content = [block.model_dump(mode="json", exclude_none=True) for block in message.content]
    except Exception as exc:  # every failure is classified once, here
        outcome.latency_ms = int((time.monotonic() - started) * 1000)
        error = classify(exc, secrets=(credential.api_key,))
        response = getattr(exc, "response", None)
        headers = response.headers if response is not None else None
        rejected = error.status == 429
        limiter.settle(
            reservation,
            # A 429 was not counted by the server; any other failure may have used input.
            input_tokens=0 if rejected else None,
            output_tokens=0,
            headers=headers,
            hold_s=(error.retry_after or 1.0) if rejected else 0.0,
        )
        outcome.error = error
        return outcome
    outcome.latency_ms = int((time.monotonic() - started) * 1000)
    usage = _usage_dict(message.usage)
    learn_tokens_per_char(
        model,
        chars=prompt_chars(system=system, messages=messages, tools=tools),
        tokens=usage["input_tokens"]
        + usage["cache_creation_input_tokens"]
        + usage["cache_read_input_tokens"],
    )
    # Cache reads do not count towards the input-token budget; cache writes do.
    limiter.settle(
        reservation,
        input_tokens=usage["input_tokens"] + usage["cache_creation_input_tokens"],
        output_tokens=usage["output_tokens"],
        headers=raw.headers,
    )
    outcome.result = ModelResult(
        content=content,
        stop_reason=message.stop_reason or "",
        usage=usage,
        cost_usd=cost_of(message.model or model, usage),
        latency_ms=outcome.latency_ms,
        request_id=raw.headers.get("request-id", "") or "",
        model=message.model or model,
        ratelimit=_ratelimit_headers(raw.headers),
        simulated=credential.simulated,
        waited_ms=outcome.waited_ms,
    )
    return outcome


def model_call(
    *,
    team,
    model: str,
    messages: list[dict],
    system: str = "",
    tools: list[dict] | None = None,
    tool_choice: dict | None = None,
    max_tokens: int,
    temperature: float | None = None,
    thinking_budget: int | None = None,
    step_id: int | str | None = None,
    max_wait_s: float | None = None,
    agent_id: int | None = None,
    usage_label: str = "",
    on_wait=None,
    defer_record: bool = False,
) -> ModelResult:
    """One Messages API call for `team`, admitted by the shared rate limiter.

    Waits up to `max_wait_s` (default settings.AGENTOPS_RATE_MAX_WAIT_S) for budget, then
    raises RateBudgetExhausted; `on_wait(seconds)` hears of a long wait before it begins (it
    may use the database: its connection is handed back before the wait). Raises
    TransientModelError or PermanentModelError when the call fails; never retries. Writes
    one ModelCallRecord (with `agent_id` and `usage_label`, for the usage page) whatever the
    outcome, except when no budget was granted. With `defer_record`, a successful call's
    record comes back unsaved as `result.record`: the caller saves it with what it writes
    of the answer (one round trip fewer), or with call_record_save if that fails.
    """
    if _in_transaction():
        raise ModelCallInTransaction("model_call must not run inside a database transaction")
    try:
        credential, limits = call_settings(team, model)
    except UndecryptableKey as exc:
        raise PermanentModelError(str(exc), kind="key_unreadable") from None
    release_database_connection()
    outcome = execute_call(
        credential=credential,
        client=client_for_credential(credential),
        limiter=get_limiter(),
        limits=limits,
        model=model,
        messages=messages,
        system=system,
        tools=tools,
        tool_choice=tool_choice,
        max_tokens=max_tokens,
        temperature=temperature,
        thinking_budget=thinking_budget,
        step_id=step_id,
        max_wait_s=settings.AGENTOPS_RATE_MAX_WAIT_S if max_wait_s is None else max_wait_s,
        on_wait=on_wait and _without_holding_a_connection(on_wait),
    )
    record = _call_record(team, model, outcome, credential, agent_id, usage_label, step_id)
    if defer_record and outcome.error is None:
        outcome.result.record = record
    else:
        call_record_save(record)
    if credential.source == Source.SIMULATOR:
        trim_simulator_history()
    if outcome.error is not None:
        log.warning(
            "model call failed: team=%s model=%s kind=%s status=%s",
            team.pk,
            model,
            outcome.error.kind,
            outcome.error.status,
        )
        raise outcome.error
    return outcome.result


def _without_holding_a_connection(callback):
    def call(*args):
        callback(*args)
        release_database_connection()

    return call


def call_record_save(record):
    try:
        if connection.in_atomic_block:  # a failure must not end the caller's transaction
            with transaction.atomic():
                insert_row(record)
        else:
            insert_row(record)  # precompiled (see agentops/fastsql.py), autocommitted
    except DatabaseError:
        # The call is made and paid for: its answer matters more than the usage page's
        # row (the step keeps its tokens and cost). Raising would make the engine call
        # the model again.
        log.exception(
            "Could not record a model call: team=%s model=%s", record.team_id, record.model
        )


def call_record_save_unless_saved(record):
    """Save a deferred record (model_call(defer_record=True)) whose caller's transaction
    failed, unless that transaction committed it before failing."""
    try:
        # Its own row, not one that took its id after a rollback (SQLite reuses them).
        saved = ModelCallRecord.objects.filter(
            pk=record.pk, step_id=record.step_id, request_id=record.request_id
        )
        if record.pk is not None and saved.exists():
            return
    except DatabaseError:
        pass  # unknown: saving it again risks a duplicate less than losing it
    record.pk = None
    record._state.adding = True
    call_record_save(record)


def _call_record(team, model, outcome, credential, agent_id, label, step_id):
    result, error = outcome.result, outcome.error
    usage = result.usage if result else {}
    return ModelCallRecord(
        team=team,
        model=result.model if result else model,
        agent_id=agent_id,
        label=label[:80],
        step_id="" if step_id is None else str(step_id)[:64],
        status=CallStatus.OK if result else CallStatus.ERROR,
        error_kind=error.kind if error else "",
        cost_usd=result.cost_usd if result else Decimal(0),
        latency_ms=outcome.latency_ms,
        waited_ms=outcome.waited_ms,
        request_id=(result.request_id if result else error.request_id)[:120],
        simulated=credential.simulated,
        **{name: usage.get(name, 0) for name in USAGE_FIELDS},
    )


# --- API keys ---------------------------------------------------------------------------


def _credential_row(team):
    row, _ = TeamCredential.objects.get_or_create(team=team)
    return row


@transaction.atomic
def api_key_save(*, team, actor, api_key: str):
    """Store (or replace) the team's key, encrypted. The audit row names only its last 4."""
    api_key = api_key.strip()
    row = TeamCredential.objects.select_for_update().filter(team=team).first() or (
        _credential_row(team)
    )
    rotated = row.has_key
    before = {"key": row.masked_key} if rotated else {}
    row.encrypted_key = encrypt(api_key)
    row.key_last4 = api_key[-4:]
    row.key_fingerprint = fingerprint(api_key)
    row.key_updated_at = timezone.now()
    row.key_updated_by = actor
    _reset_test(row)
    row.save()
    audit_record(
        team=team,
        actor=actor,
        verb="model_key.rotate" if rotated else "model_key.add",
        obj=row,
        before=before,
        after={"key": row.masked_key},
    )
    forget_call_settings()
    transaction.on_commit(_forget_settings_and_clients)
    return row


@transaction.atomic
def api_key_remove(*, team, actor):
    row = TeamCredential.objects.select_for_update().filter(team=team).first()
    if row is None or not row.has_key:
        return row
    before = {"key": row.masked_key}
    row.encrypted_key = ""
    row.key_last4 = ""
    row.key_fingerprint = ""
    row.key_updated_at = timezone.now()
    row.key_updated_by = actor
    _reset_test(row)
    row.save()
    audit_record(team=team, actor=actor, verb="model_key.remove", obj=row, before=before)
    forget_call_settings()
    transaction.on_commit(_forget_settings_and_clients)
    return row


def _reset_test(row):
    row.test_status = KeyTestStatus.UNTESTED
    row.test_kind = ""
    row.test_message = ""
    row.tested_at = None
    row.tested_source = ""
    row.available_models = []


@transaction.atomic
def api_key_test_start(*, team, actor):
    """Mark the test pending and queue `llm_test_key` (which gets the team id only)."""
    from .tasks import llm_test_key

    row = TeamCredential.objects.select_for_update().filter(team=team).first() or (
        _credential_row(team)
    )
    row.test_status = KeyTestStatus.PENDING
    row.test_kind = ""
    row.test_message = ""
    row.save(update_fields=["test_status", "test_kind", "test_message"])
    audit_record(team=team, actor=actor, verb="model_key.test", obj=row)
    llm_test_key.delay_on_commit(team.pk)
    return row


def api_key_test_run(*, team):
    """List the models with the team's current credential and store the outcome.

    Runs in the worker. The Models API is used because it proves the key without spending
    tokens or message budget. The result is discarded if the key changed meanwhile.
    """
    started_with = _credential_row(team).key_fingerprint
    models, error = [], None
    try:
        credential = credential_for_team(team)
    except UndecryptableKey as exc:
        credential = Credential(Source.TEAM)
        error = PermanentModelError(str(exc), kind="key_unreadable")
    try:
        if error is not None:
            raise error
        client = client_for_credential(credential)
        for info in client.models.list(limit=100):
            models.append({"id": info.id, "name": getattr(info, "display_name", "") or info.id})
    except Exception as exc:  # classified and stored, never raised into the worker
        error = classify(exc, secrets=(credential.api_key,))
    with transaction.atomic():
        row = TeamCredential.objects.select_for_update().filter(team=team).first()
        if row is None or row.key_fingerprint != started_with:
            return row
        row.tested_at = timezone.now()
        row.tested_source = credential.source
        if error is None:
            row.test_status = KeyTestStatus.OK
            row.test_kind = ""
            row.test_message = f"{len(models)} models available"
            row.available_models = models
        else:
            row.test_status = KeyTestStatus.FAILED
            row.test_kind = error.kind
            row.test_message = scrub(error.message, (credential.api_key,))[:300]
            row.available_models = []
        row.save()
        audit_record(
            team=team,
            actor=None,
            actor_label="key test",
            verb="model_key.tested",
            obj=row,
            after={"status": row.test_status, "kind": row.test_kind},
        )
    return row


# --- rate limits ------------------------------------------------------------------------


@transaction.atomic
def rate_limit_save(*, team, actor, model, rpm, itpm, otpm, rate_limit=None):
    before = {}
    if rate_limit is None:
        rate_limit = RateLimit(team=team, model=model)
        verb = "rate_limit.add"
    else:
        # Re-read under a lock: a bound ModelForm has already changed the instance it holds.
        rate_limit = RateLimit.objects.select_for_update().get(pk=rate_limit.pk, team=team)
        before = {
            "model": rate_limit.model,
            "rpm": rate_limit.rpm,
            "itpm": rate_limit.itpm,
            "otpm": rate_limit.otpm,
        }
        rate_limit.model = model
        verb = "rate_limit.change"
    rate_limit.rpm, rate_limit.itpm, rate_limit.otpm = rpm, itpm, otpm
    rate_limit.full_clean()
    rate_limit.save()
    forget_call_settings()
    transaction.on_commit(forget_call_settings)
    audit_record(
        team=team,
        actor=actor,
        verb=verb,
        obj=rate_limit,
        before=before,
        after={"model": model, "rpm": rpm, "itpm": itpm, "otpm": otpm},
    )
    return rate_limit


@transaction.atomic
def rate_limit_delete(*, rate_limit, actor):
    audit_record(
        team=rate_limit.team,
        actor=actor,
        verb="rate_limit.delete",
        obj=rate_limit,
        before={
            "model": rate_limit.model,
            "rpm": rate_limit.rpm,
            "itpm": rate_limit.itpm,
            "otpm": rate_limit.otpm,
        },
    )
    rate_limit.delete()
    forget_call_settings()
    transaction.on_commit(forget_call_settings)


def rate_limit_state(*, team, models):
    """The live state of the team's buckets for these models (for the usage page)."""
    try:
        credential = credential_for_team(team)
    except UndecryptableKey:
        return []
    limiter = get_limiter()
    rows = []
    for model in models:
        limits = limits_for(team, model, credential)
        state = limiter.state(bucket=bucket_name(credential.bucket_id, model), limits=limits)
        server = state["server"]
        for budget in state["budgets"]:
            prefix = HEADER_PREFIX[budget["name"]]
            budget["server_limit"] = server.get(f"{prefix}-limit", "")
            budget["server_remaining"] = server.get(f"{prefix}-remaining", "")
        rows.append({"model": model, **state})
    return rows


# --- usage ------------------------------------------------------------------------------


def usage_summary(*, calls):
    """Totals by day, agent and model over a ModelCallRecord queryset."""
    totals = {
        "calls": Count("id"),
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "cache_read": Sum("cache_read_input_tokens"),
        "cache_write": Sum("cache_creation_input_tokens"),
        "cost": Sum("cost_usd"),
    }
    by_day = list(
        calls.annotate(day=TruncDate("created_at")).values("day").annotate(**totals).order_by("day")
    )
    # One row per agent; calls made for no agent are grouped by label, and all dreams (each
    # labelled with its own number) in one row.
    purpose = Case(
        When(label__startswith=DREAM_LABEL_PREFIX, then=Value(DREAMS_PURPOSE)), default=F("label")
    )
    by_agent = list(
        calls.filter(agent__isnull=False)
        .values("agent_id", "agent__name")
        .annotate(**totals)
        .order_by("-cost")
    ) + list(
        calls.filter(agent__isnull=True)
        .annotate(purpose=purpose)
        .values("purpose")
        .annotate(**totals)
        .order_by("-cost")
    )
    by_model = list(calls.values("model").annotate(**totals).order_by("-cost"))
    overall = calls.aggregate(**totals)
    return {"by_day": by_day, "by_agent": by_agent, "by_model": by_model, "overall": overall}


def daily_series(by_day, *, since, until):
    """One entry per day in [since, until], zero-filled, for the chart."""
    found = {row["day"]: row for row in by_day}
    series = []
    day = since
    while day <= until:
        row = found.get(day) or {}
        series.append(
            {
                "day": day,
                "cost": row.get("cost") or Decimal(0),
                "tokens": (row.get("input_tokens") or 0) + (row.get("output_tokens") or 0),
                "calls": row.get("calls") or 0,
            }
        )
        day += timedelta(days=1)
    return series
