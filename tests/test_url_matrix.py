"""Walks every named URL as an anonymous visitor, as each role of team A, and as charlie
(team B) against team A's objects."""

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from agentops.llm.models import RateLimit
from agentops.teams.models import Membership, Role
from tests.outcomes.factories import grade, graded_evaluation, make_rubric

# URLs anyone may open without logging in.
PUBLIC = {"login", "healthz", "logout", "password_reset"}

# How to build the arguments of each URL that takes some, from team A's objects (see the
# `team_a_objects` fixture). A new URL with arguments must be added here or this test fails.
URL_KWARGS = {
    "teams:member-role": lambda objs: {"pk": objs["membership"].pk},
    "teams:member-remove": lambda objs: {"pk": objs["membership"].pk},
    "agents:detail": lambda objs: {"pk": objs["agent"].pk},
    "agents:edit": lambda objs: {"pk": objs["agent"].pk},
    "agents:archive": lambda objs: {"pk": objs["agent"].pk},
    "agents:unarchive": lambda objs: {"pk": objs["agent"].pk},
    "agents:version": lambda objs: {"pk": objs["agent"].pk, "number": 1},
    "agents:webhook-edit": lambda objs: {"pk": objs["webhook_tool"].pk},
    "agents:webhook-delete": lambda objs: {"pk": objs["webhook_tool"].pk},
    "agents:allowlist-remove": lambda objs: {"pk": objs["allowlist_entry"].pk},
    "llm:limit-edit": lambda objs: {"pk": objs["rate_limit"].pk},
    "llm:limit-delete": lambda objs: {"pk": objs["rate_limit"].pk},
    "runs:detail": lambda objs: {"pk": objs["run"].pk},
    "runs:cancel": lambda objs: {"pk": objs["run"].pk},
    "runs:rerun": lambda objs: {"pk": objs["run"].pk},
    "runs:start": lambda objs: {"agent_pk": objs["agent"].pk},
    "runs:approval": lambda objs: {"pk": objs["run"].steps.first().pk},
    "rubrics:detail": lambda objs: {"pk": objs["rubric"].pk},
    "rubrics:edit": lambda objs: {"pk": objs["rubric"].pk},
    "rubrics:archive": lambda objs: {"pk": objs["rubric"].pk},
    "rubrics:version": lambda objs: {"pk": objs["rubric"].pk, "number": 1},
    "review:evaluation": lambda objs: {"pk": objs["evaluation"].pk},
    "review:evaluation-review": lambda objs: {"pk": objs["evaluation"].pk},
    "review:evaluation-assign": lambda objs: {"pk": objs["evaluation"].pk},
    "memory:store": lambda objs: {"pk": objs["store"].pk},
    "memory:store-edit": lambda objs: {"pk": objs["store"].pk},
    "memory:create": lambda objs: {"pk": objs["store"].pk},
    "memory:attach": lambda objs: {"pk": objs["store"].pk},
    "memory:rollback": lambda objs: {"pk": objs["store"].pk},
    "memory:dream-start": lambda objs: {"pk": objs["store"].pk},
    "memory:attachment-edit": lambda objs: {"pk": objs["attachment"].pk},
    "memory:detach": lambda objs: {"pk": objs["attachment"].pk},
    "memory:detail": lambda objs: {"pk": objs["memory"].pk},
    "memory:edit": lambda objs: {"pk": objs["memory"].pk},
    "memory:retire": lambda objs: {"pk": objs["memory"].pk},
    "memory:decide": lambda objs: {"pk": objs["memory"].pk},
    "memory:dream": lambda objs: {"pk": objs["dream"].pk},
    "memory:change-decide": lambda objs: {
        "pk": objs["dream"].pk,
        "change_pk": objs["dream"].changes.first().pk,
    },
    "memory:dream-decide-all": lambda objs: {"pk": objs["dream"].pk},
    "workflows:detail": lambda objs: {"pk": objs["workflow"].pk},
    "workflows:edit": lambda objs: {"pk": objs["workflow"].pk},
    "workflows:archive": lambda objs: {"pk": objs["workflow"].pk},
    "workflows:unarchive": lambda objs: {"pk": objs["workflow"].pk},
    "workflows:run-start": lambda objs: {"pk": objs["workflow"].pk},
    "workflows:version": lambda objs: {"pk": objs["workflow"].pk, "number": 1},
    "workflows:run": lambda objs: {"pk": objs["workflow_run"].pk},
    "workflows:thread": lambda objs: {
        "pk": objs["workflow_run"].pk,
        "thread_pk": objs["workflow_run"].threads.first().pk,
    },
    "workflows:thread-cancel": lambda objs: {
        "pk": objs["workflow_run"].pk,
        "thread_pk": objs["workflow_run"].threads.first().pk,
    },
    "workflows:schedule": lambda objs: {"pk": objs["schedule"].pk},
    "workflows:schedule-edit": lambda objs: {"pk": objs["schedule"].pk},
    "workflows:schedule-pause": lambda objs: {"pk": objs["schedule"].pk},
    "workflows:schedule-resume": lambda objs: {"pk": objs["schedule"].pk},
    "workflows:schedule-delete": lambda objs: {"pk": objs["schedule"].pk},
}


def _named_urls(resolver=None, namespace=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin":
                continue  # the Django admin checks staff status itself; see test_admin.py
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _named_urls(entry, inner)
        elif isinstance(entry, URLPattern) and entry.name:
            yield f"{namespace}{entry.name}", bool(entry.pattern.converters)


ALL_URLS = sorted(set(_named_urls()))


@pytest.fixture
def team_a_objects(alice, bob):
    from agentops.agents.models import HostAllowlistEntry
    from agentops.agents.services import agent_create, webhook_tool_create
    from agentops.memory.models import Dream, DreamChange, DreamStatus
    from agentops.memory.services import attachment_add, memory_create, memory_store_create
    from agentops.runs.services import run_start

    team = alice.memberships.get().team
    agent = agent_create(
        team=team, actor=alice, name="A", model="claude-haiku-4-5", system_prompt="x", max_tokens=10
    )
    entry = HostAllowlistEntry.objects.create(team=team, host="hooks.example.com")
    tool = webhook_tool_create(
        team=team,
        actor=alice,
        name="hook",
        description="d",
        input_schema={"type": "object"},
        url="https://hooks.example.com/x",
        secret="s" * 16,
    )
    rubric = make_rubric(team, alice, max_iterations=1)
    store = memory_store_create(team=team, actor=alice, name="Store")
    dream = Dream.objects.create(team=team, store=store, model="m", status=DreamStatus.SUCCEEDED)
    DreamChange.objects.create(dream=dream, operation="add", title="t", content="c")
    workflow, workflow_run, schedule = _workflow_objects(team, alice, agent)
    return {
        "rate_limit": RateLimit.objects.create(
            team=team, model="claude-haiku-4-5", rpm=50, itpm=30000, otpm=8000
        ),
        "store": store,
        "attachment": attachment_add(store=store, actor=alice, agent=agent, mode="read_only"),
        "memory": memory_create(store=store, actor=alice, title="t", content="c"),
        "dream": dream,
        "workflow": workflow,
        "workflow_run": workflow_run,
        "schedule": schedule,
        "rubric": rubric,
        "evaluation": graded_evaluation(team, rubric, [grade()]),
        "membership": Membership.objects.get(user=bob),
        "agent": agent,
        "webhook_tool": tool,
        "allowlist_entry": entry,
        "run": run_start(agent=agent, input="hello", actor=alice),
    }


def _workflow_objects(team, alice, lead):
    from agentops.agents.services import agent_create
    from agentops.workflows.services import (
        Specialist,
        schedule_create,
        workflow_create,
        workflow_run_start,
    )

    specialist = agent_create(
        team=team, actor=alice, name="B", model="claude-haiku-4-5", system_prompt="x", max_tokens=10
    )
    workflow = workflow_create(
        team=team,
        actor=alice,
        name="W",
        lead_agent=lead,
        roster=[Specialist(agent=specialist, role_description="helps")],
    )
    schedule = schedule_create(
        team=team,
        actor=alice,
        name="S",
        workflow=workflow,
        input="x",
        kind="interval",
        every_minutes=5,
    )
    return workflow, workflow_run_start(workflow=workflow, input="hello", actor=alice), schedule


def _url(name, takes_args, objs):
    if not takes_args:
        return reverse(name)
    assert name in URL_KWARGS, f"add {name} to URL_KWARGS in tests/test_url_matrix.py"
    return reverse(name, kwargs=URL_KWARGS[name](objs))


def test_every_url_with_arguments_is_in_the_matrix():
    missing = [name for name, takes_args in ALL_URLS if takes_args and name not in URL_KWARGS]
    assert not missing


@pytest.mark.parametrize("name,takes_args", ALL_URLS, ids=[n for n, _ in ALL_URLS])
def test_url_matrix(name, takes_args, team_a_objects, member_of_team_a, charlie, login):
    url = _url(name, takes_args, team_a_objects)

    for method in ("get", "post"):
        response = getattr(Client(), method)(url)
        if name.split(":")[-1] in PUBLIC:
            assert response.status_code < 500
        else:
            assert response.status_code == 302, (method, url)
            assert response["Location"].startswith(reverse("login")), (method, url)

    for role in Role.values:
        client = login(member_of_team_a(role))
        response = client.get(url)
        assert response.status_code in {200, 302, 403, 405}, (role, url, response.status_code)

    outsider = login(charlie)
    for method in ("get", "post"):
        response = getattr(outsider, method)(url)
        assert not 200 <= response.status_code < 300 or not takes_args, (method, url)
        if takes_args:
            assert response.status_code in {404, 405}, (method, url, response.status_code)


@pytest.mark.parametrize("name,takes_args", ALL_URLS, ids=[n for n, _ in ALL_URLS])
def test_post_without_csrf_token_is_rejected(name, takes_args, team_a_objects, alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(_url(name, takes_args, team_a_objects), {})
    assert response.status_code == 403
    assert b"This form has expired" in response.content
