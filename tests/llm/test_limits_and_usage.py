"""Rate limits edited in the browser, and the usage page."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from agentops.agents.models import Agent
from agentops.llm import services
from agentops.llm.client import Credential
from agentops.llm.models import ModelCallRecord, RateLimit
from agentops.llm.ratelimit import Limits
from agentops.teams.models import AuditEvent, Role

MODEL = "claude-haiku-4-5"


def post_limit(client, **values):
    data = {"model": MODEL, "rpm": 50, "itpm": 30000, "otpm": 8000, **values}
    return client.post(reverse("llm:limit-add"), data)


def test_owner_sets_a_limit_and_calls_use_it(alice_client, team_a):
    response = post_limit(alice_client)
    assert response.status_code == 302
    row = RateLimit.objects.get(team=team_a)
    assert (row.model, row.rpm, row.itpm, row.otpm) == (MODEL, 50, 30000, 8000)
    assert AuditEvent.objects.filter(verb="rate_limit.add").exists()
    assert services.limits_for(team_a, MODEL, Credential("team")) == Limits(50, 30000, 8000)
    other = services.limits_for(team_a, "claude-opus-4-8", Credential("team"))
    assert other == services.default_limits(Credential("team"))


def test_catch_all_row_and_defaults(team_a, settings):
    settings.AGENTOPS_RATE_DEFAULT_RPM = 7
    assert services.limits_for(team_a, MODEL, Credential("team")).rpm == 7
    assert services.limits_for(team_a, MODEL, Credential("simulator")) == services.SIMULATOR_LIMITS
    RateLimit.objects.create(team=team_a, model="", rpm=11, itpm=12, otpm=13)
    assert services.limits_for(team_a, MODEL, Credential("team")) == Limits(11, 12, 13)
    RateLimit.objects.create(team=team_a, model=MODEL, rpm=21, itpm=22, otpm=23)
    assert services.limits_for(team_a, MODEL, Credential("team")) == Limits(21, 22, 23)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rpm", -5, b"greater than or equal to"),
        ("rpm", 0, b"greater than or equal to 1"),
        ("itpm", 0, b"greater than or equal to 1"),
        ("otpm", -1, b"greater than or equal to"),
        ("rpm", 10**9, b"less than or equal to 100000"),
        ("itpm", 10**12, b"less than or equal to"),
        ("otpm", 10**10, b"less than or equal to"),
        ("rpm", "lots", b"Enter a whole number"),
    ],
)
def test_bad_limits_are_field_errors(alice_client, team_a, field, value, message):
    response = post_limit(alice_client, **{field: value})
    assert response.status_code == 400
    assert message in response.content
    assert b"field-error" in response.content
    assert not RateLimit.objects.exists()


def test_a_duplicate_model_is_a_field_error(alice_client, team_a):
    RateLimit.objects.create(team=team_a, model=MODEL, rpm=1, itpm=1, otpm=1)
    response = post_limit(alice_client)
    assert response.status_code == 400
    assert b"already has a limit" in response.content


def test_edit_and_delete(alice_client, team_a):
    row = RateLimit.objects.create(team=team_a, model=MODEL, rpm=1, itpm=1, otpm=1)
    url = reverse("llm:limit-edit", args=[row.pk])
    assert alice_client.get(url).status_code == 200
    response = alice_client.post(url, {"model": MODEL, "rpm": 0, "itpm": 5, "otpm": 5})
    assert response.status_code == 400 and b"greater than or equal to 1" in response.content
    response = alice_client.post(url, {"model": MODEL, "rpm": 99, "itpm": 5, "otpm": 5})
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.rpm == 99
    event = AuditEvent.objects.get(verb="rate_limit.change")
    assert event.before["rpm"] == 1 and event.after["rpm"] == 99
    assert alice_client.post(reverse("llm:limit-delete", args=[row.pk])).status_code == 302
    assert not RateLimit.objects.exists()


def test_reviewer_cannot_change_limits(bob_client, team_a):
    row = RateLimit.objects.create(team=team_a, model=MODEL, rpm=1, itpm=1, otpm=1)
    assert post_limit(bob_client).status_code == 403
    assert bob_client.get(reverse("llm:limit-edit", args=[row.pk])).status_code == 403
    assert bob_client.post(reverse("llm:limit-delete", args=[row.pk])).status_code == 403
    assert RateLimit.objects.count() == 1


def test_another_team_gets_404_for_our_limit(charlie_client, team_a):
    row = RateLimit.objects.create(team=team_a, model=MODEL, rpm=1, itpm=1, otpm=1)
    assert charlie_client.get(reverse("llm:limit-edit", args=[row.pk])).status_code == 404
    assert charlie_client.post(reverse("llm:limit-delete", args=[row.pk])).status_code == 404
    assert RateLimit.objects.filter(pk=row.pk).exists()


def test_editor_cannot_change_limits(member_of_team_a, login):
    assert post_limit(login(member_of_team_a(Role.EDITOR))).status_code == 403


@pytest.fixture
def calls(team_a, team_b, alice):
    agent = Agent.objects.create(team=team_a, name="Researcher", slug="researcher")
    now = timezone.now()
    rows = [
        ModelCallRecord(
            team=team_a,
            model=MODEL,
            agent=agent,
            input_tokens=1000,
            output_tokens=200,
            cost_usd=Decimal("0.002"),
        ),
        ModelCallRecord(
            team=team_a,
            model="claude-opus-4-8",
            label="grader",
            input_tokens=50,
            output_tokens=10,
            cost_usd=Decimal("0.5"),
        ),
        ModelCallRecord(
            team=team_b,
            model="claude-secret-team-b",
            input_tokens=1,
            output_tokens=1,
            cost_usd=Decimal("9"),
        ),
    ]
    ModelCallRecord.objects.bulk_create(rows)
    ModelCallRecord.objects.filter(label="grader").update(created_at=now - timedelta(days=3))
    return agent


def test_usage_page_totals_chart_and_state(bob_client, calls, sim):
    response = bob_client.get(reverse("llm:usage"))
    assert response.status_code == 200
    content = response.content.decode()
    assert "Researcher" in content and "grader" in content
    assert "claude-secret-team-b" not in content
    assert "$0.5020" in content  # the team's total
    assert "<svg" in content and "<rect" in content
    assert "style=" not in content  # the CSP forbids inline styles
    assert "Rate limits now" in content and "input tokens per minute" in content
    assert "offline simulator" in content


def test_usage_filters(bob_client, calls):
    response = bob_client.get(reverse("llm:usage"), {"model": "claude-opus-4-8"})
    content = response.content.decode()
    assert "grader" in content and "$0.5000" in content and "Researcher</td>" not in content
    response = bob_client.get(reverse("llm:usage"), {"agent": str(calls.pk)})
    assert "$0.0020" in response.content.decode()
    today = timezone.localdate()
    response = bob_client.get(reverse("llm:usage"), {"since": str(today)})
    assert "$0.0020" in response.content.decode()
    response = bob_client.get(
        reverse("llm:usage"), {"since": str(today), "until": str(today - timedelta(days=2))}
    )
    assert b"on or after the start date" in response.content


def test_usage_htmx_returns_the_calls_partial(bob_client, calls):
    response = bob_client.get(reverse("llm:usage"), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b'id="calls"' in response.content and b"<html" not in response.content


def test_usage_empty_state(alice_client):
    response = alice_client.get(reverse("llm:usage"))
    assert b"No model calls in this period" in response.content
    assert b"No calls" in response.content


def test_usage_needs_a_login(client):
    response = client.get(reverse("llm:usage"))
    assert response.status_code == 302


def test_model_call_records_feed_the_usage_page(alice_client, team_a, sim):
    RateLimit.objects.create(team=team_a, model=MODEL, rpm=2, itpm=100_000, otpm=10_000)
    result = services.model_call(
        team=team_a,
        model=MODEL,
        messages=[{"role": "user", "content": "Summarise the week"}],
        max_tokens=128,
        usage_label="weekly summary",
    )
    response = alice_client.get(reverse("llm:usage"))
    assert b"weekly summary" in response.content
    state = services.rate_limit_state(team=team_a, models=[MODEL])[0]
    requests = state["budgets"][0]
    assert (requests["capacity"], requests["available"]) == (2, 1)
    assert requests["server_remaining"] != ""
    assert result.cost_usd > 0


def test_saving_or_deleting_a_limit_forgets_the_cached_call_settings(team_a, alice):
    services.call_settings(team_a, MODEL)
    RateLimit.objects.create(team=team_a, model="", rpm=3, itpm=4, otpm=5)
    row = services.rate_limit_save(team=team_a, actor=alice, model=MODEL, rpm=6, itpm=7, otpm=8)
    assert services.call_settings(team_a, MODEL)[1] == Limits(6, 7, 8)
    services.rate_limit_delete(rate_limit=row, actor=alice)
    assert services.call_settings(team_a, MODEL)[1] == Limits(3, 4, 5)
