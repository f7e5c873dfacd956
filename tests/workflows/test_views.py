import pytest
from django.urls import reverse

from agentops.runs.models import RunStatus, Thread, ThreadStatus
from agentops.teams.models import Role
from agentops.workflows.models import Delegation, DelegationStatus, Schedule, Workflow
from agentops.workflows.services import schedule_create, workflow_run_start


def _form_data(lead, roster, **extra):
    data = {
        "name": "Research desk",
        "description": "Answers research questions.",
        "lead_agent": lead.pk,
        "lead_pinned_version": "",
        "mode": "delegate",
        "max_parallel": 5,
        "max_children": 10,
        "max_depth": 1,
        "roster-TOTAL_FORMS": len(roster) + 1,
        "roster-INITIAL_FORMS": 0,
        "roster-MIN_NUM_FORMS": 0,
        "roster-MAX_NUM_FORMS": 1000,
    }
    for i, agent in enumerate(roster):
        data[f"roster-{i}-agent"] = agent.pk
        data[f"roster-{i}-role_description"] = f"Handles {agent.name}."
    data.update(extra)
    return data


def test_list_empty_state_and_filters(alice_client, make_workflow):
    response = alice_client.get(reverse("workflows:list"))
    assert response.status_code == 200 and "No workflows yet" in response.text
    make_workflow()
    response = alice_client.get(reverse("workflows:list"))
    assert "Report team" in response.text
    response = alice_client.get(reverse("workflows:list"), {"q": "nothing-like-it"})
    assert "No workflows match" in response.text
    response = alice_client.get(reverse("workflows:list"), {"mode": "fan_out"})
    assert "Report team" not in response.text


def test_create_through_the_form(alice_client, lead, specialists):
    response = alice_client.post(reverse("workflows:create"), _form_data(lead, specialists[:2]))
    workflow = Workflow.objects.get(name="Research desk")
    assert response.status_code == 302
    assert response["Location"] == reverse("workflows:detail", args=[workflow.pk])
    assert [e.agent for e in workflow.current_version.roster.all()] == specialists[:2]


@pytest.mark.parametrize(
    "extra,message",
    [
        ({"max_parallel": 60}, "Must be between 1 and 50."),
        ({"max_depth": 0}, "Must be between 1 and 5."),
    ],
)
def test_form_field_errors(alice_client, lead, specialists, extra, message):
    response = alice_client.post(
        reverse("workflows:create"), _form_data(lead, specialists[:1], **extra)
    )
    assert response.status_code == 400
    assert message in response.text
    assert not Workflow.objects.exists()


def test_form_roster_errors(alice_client, lead, specialists):
    response = alice_client.post(reverse("workflows:create"), _form_data(lead, []))
    assert response.status_code == 400 and "Add at least one specialist" in response.text
    response = alice_client.post(reverse("workflows:create"), _form_data(lead, [lead]))
    assert response.status_code == 400 and "the lead cannot also be a specialist" in response.text


def test_version_dropdowns_group_versions_by_agent_and_a_mismatch_is_refused(
    alice_client, lead, specialists, alice
):
    from agentops.agents.services import agent_update

    writer = specialists[1]
    current = writer.current_version
    agent_update(
        agent=writer,
        actor=alice,
        name=writer.name,
        model=current.model,
        max_tokens=current.max_tokens,
        system_prompt="You write very clearly.",
    )
    page = alice_client.get(reverse("workflows:create")).text
    versions = page.split('name="roster-0-pinned_version"')[1].split("</select>")[0]
    assert '<option value="" selected>Follow the latest version</option>' in versions
    writer_group = versions.split('<optgroup label="Writer">')[1].split("</optgroup>")[0]
    assert [line.split(">")[1].split("<")[0] for line in writer_group.split("<option")[1:]] == [
        "v2",
        "v1",
    ]
    # The other team's agents are not there; every agent of this team is, once.
    assert versions.count("<optgroup") == 4
    researcher_v1 = specialists[0].versions.get().pk
    response = alice_client.post(
        reverse("workflows:create"),
        _form_data(lead, [writer], **{"roster-0-pinned_version": researcher_v1}),
    )
    assert response.status_code == 400 and "Choose a version of Writer." in response.text
    pinned = writer.versions.get(number=1).pk
    response = alice_client.post(
        reverse("workflows:create"),
        _form_data(lead, [writer], **{"roster-0-pinned_version": pinned}),
    )
    assert response.status_code == 302
    assert Workflow.objects.get().current_version.roster.get().pinned_version_id == pinned


def test_form_refuses_another_teams_agent(alice_client, lead, make_agent, team_b, charlie):
    outsider = make_agent("Outsider", team=team_b, actor=charlie)
    response = alice_client.post(reverse("workflows:create"), _form_data(lead, [outsider]))
    assert response.status_code == 400
    assert "Select a valid choice" in response.text
    assert not Workflow.objects.exists()


def test_edit_makes_a_new_version_and_detail_shows_the_diff(alice_client, make_workflow, lead):
    workflow = make_workflow()
    roster = [e.agent for e in workflow.current_version.roster.all()]
    data = _form_data(lead, roster, name="Report team", max_parallel=2)
    data.update(
        {f"roster-{i}-role_description": f"the {a.name.lower()}." for i, a in enumerate(roster)}
    )
    response = alice_client.post(reverse("workflows:edit", args=[workflow.pk]), data)
    assert response.status_code == 302
    workflow.refresh_from_db()
    assert workflow.current_version.number == 2
    page = alice_client.get(reverse("workflows:detail", args=[workflow.pk]))
    assert "Max parallel sub-agents" in page.text and "v2" in page.text
    version = alice_client.get(reverse("workflows:version", args=[workflow.pk, 1]))
    assert version.status_code == 200 and "5 parallel" in version.text


def test_a_thread_whose_first_call_no_worker_has_taken_yet_is_queued_in_the_tree(
    alice_client, make_workflow, sim, drain
):
    from django.utils import timezone

    from agentops.runs.models import Step, StepKind, StepStatus

    workflow = make_workflow()
    run = workflow_run_start(workflow=workflow, input="hi")
    url = reverse("workflows:run", args=[run.pk])

    def lead_status():
        page = alice_client.get(url).text
        row = page.split('class="thread-row depth-0"')[1].split("</tr>")[0]
        return row.split('<span class="badge">')[1].split("<")[0]

    assert lead_status() == "Queued"
    Step.objects.filter(run=run, kind=StepKind.MODEL_CALL).update(
        status=StepStatus.RUNNING, claimed_at=timezone.now()
    )
    assert lead_status() == "Active"
    Step.objects.filter(run=run).update(status=StepStatus.QUEUED, claimed_at=None)
    drain(run)
    assert lead_status() == "Succeeded"


def test_reviewer_may_view_but_not_edit_or_run(bob_client, make_workflow):
    workflow = make_workflow()
    assert bob_client.get(reverse("workflows:detail", args=[workflow.pk])).status_code == 200
    assert bob_client.get(reverse("workflows:create")).status_code == 403
    assert bob_client.get(reverse("workflows:edit", args=[workflow.pk])).status_code == 403
    response = bob_client.post(reverse("workflows:run-start", args=[workflow.pk]), {"input": "x"})
    assert response.status_code == 403
    assert bob_client.post(reverse("workflows:archive", args=[workflow.pk])).status_code == 403


def test_another_team_gets_404(charlie_client, make_workflow, sim):
    workflow = make_workflow()
    run = workflow_run_start(workflow=workflow, input="hi")
    lead = run.threads.get()
    for url in (
        reverse("workflows:detail", args=[workflow.pk]),
        reverse("workflows:edit", args=[workflow.pk]),
        reverse("workflows:version", args=[workflow.pk, 1]),
        reverse("workflows:run", args=[run.pk]),
        reverse("workflows:thread", args=[run.pk, lead.pk]),
    ):
        assert charlie_client.get(url).status_code == 404, url
    response = charlie_client.post(reverse("workflows:thread-cancel", args=[run.pk, lead.pk]))
    assert response.status_code == 404
    assert charlie_client.post(reverse("workflows:archive", args=[workflow.pk])).status_code == 404


def test_run_from_the_browser_and_see_the_tree(alice_client, make_workflow, sim, drain):
    workflow = make_workflow()
    response = alice_client.post(
        reverse("workflows:run-start", args=[workflow.pk]), {"input": "Plan a conference."}
    )
    run = workflow.runs.get().run
    assert response["Location"] == reverse("workflows:run", args=[run.pk])
    page = alice_client.get(reverse("workflows:run", args=[run.pk]))
    assert 'hx-trigger="every 1500ms"' in page.text  # polls while active
    drain(run)
    page = alice_client.get(reverse("workflows:run", args=[run.pk]))
    assert page.status_code == 200
    assert page.text.count('class="thread-row') == 4
    assert "every 1500ms" not in page.text
    for name in ("Researcher", "Writer", "Critic", "Lead"):
        assert name in page.text
    partial = alice_client.get(
        reverse("workflows:run", args=[run.pk]), headers={"HX-Request": "true"}
    )
    assert partial.text.lstrip().startswith('<div id="tree"')
    child = run.threads.exclude(parent=None).first()
    thread_page = alice_client.get(reverse("workflows:thread", args=[run.pk, child.pk]))
    assert thread_page.status_code == 200 and "Task from the parent" in thread_page.text


def test_run_with_empty_input_shows_the_error(alice_client, make_workflow):
    workflow = make_workflow()
    response = alice_client.post(reverse("workflows:run-start", args=[workflow.pk]), {"input": ""})
    assert response.status_code == 302
    assert not workflow.runs.exists()


def test_cancel_a_sub_agent_from_the_browser(alice_client, make_workflow, sim):
    from agentops.runs import services as engine
    from agentops.runs.models import Step, StepStatus

    workflow = make_workflow()
    run = workflow_run_start(workflow=workflow, input="Cancel test")
    with engine.inline_execution():
        engine.step_execute(step_id=Step.objects.get(run=run, status=StepStatus.QUEUED).pk)
    child = run.threads.exclude(parent=None).first()
    response = alice_client.post(reverse("workflows:thread-cancel", args=[run.pk, child.pk]))
    assert response.status_code == 302
    child.refresh_from_db()
    assert child.status == "cancelled"
    lead = run.threads.get(parent=None)
    alice_client.post(reverse("workflows:thread-cancel", args=[run.pk, lead.pk]))
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


def test_schedule_pages(alice_client, bob_client, charlie_client, make_workflow, team_a, alice):
    workflow = make_workflow()
    response = alice_client.get(reverse("workflows:schedules"))
    assert "No schedules yet" in response.text
    data = {
        "name": "Nightly",
        "workflow": workflow.pk,
        "agent": "",
        "input": "Nightly report.",
        "kind": "cron",
        "cron": "0 2 * * *",
        "timezone": "Europe/Berlin",
        "overlap": "skip",
    }
    bad = alice_client.post(reverse("workflows:schedule-create"), data | {"cron": "0 25 * * *"})
    assert bad.status_code == 400 and "Not a valid cron expression" in bad.text
    assert bob_client.post(reverse("workflows:schedule-create"), data).status_code == 403
    response = alice_client.post(reverse("workflows:schedule-create"), data)
    schedule = Schedule.objects.get()
    assert response["Location"] == reverse("workflows:schedule", args=[schedule.pk])
    page = alice_client.get(reverse("workflows:schedule", args=[schedule.pk]))
    assert "Next run" in page.text and "<time" in page.text and "not fired yet" in page.text
    assert bob_client.get(reverse("workflows:schedule", args=[schedule.pk])).status_code == 200
    listing = alice_client.get(reverse("workflows:schedules"))
    assert "Nightly" in listing.text
    edit = alice_client.post(
        reverse("workflows:schedule-edit", args=[schedule.pk]), data | {"name": "Nightly 2"}
    )
    assert edit.status_code == 302
    alice_client.post(reverse("workflows:schedule-pause", args=[schedule.pk]))
    schedule.refresh_from_db()
    assert not schedule.enabled and not schedule.periodic_task.enabled
    alice_client.post(reverse("workflows:schedule-resume", args=[schedule.pk]))
    schedule.refresh_from_db()
    assert schedule.enabled
    for name in ("schedule", "schedule-edit"):
        url = reverse(f"workflows:{name}", args=[schedule.pk])
        assert charlie_client.get(url).status_code == 404
    for name in ("schedule-pause", "schedule-resume", "schedule-delete"):
        url = reverse(f"workflows:{name}", args=[schedule.pk])
        assert charlie_client.post(url).status_code == 404
        assert bob_client.post(url).status_code == 403
    alice_client.post(reverse("workflows:schedule-delete", args=[schedule.pk]))
    assert not Schedule.objects.exists()


def test_schedule_form_needs_exactly_one_target(alice_client, make_workflow, specialists):
    workflow = make_workflow()
    data = {
        "name": "Both",
        "workflow": workflow.pk,
        "agent": specialists[0].pk,
        "input": "x",
        "kind": "interval",
        "every_minutes": 5,
        "timezone": "UTC",
        "overlap": "skip",
    }
    response = alice_client.post(reverse("workflows:schedule-create"), data)
    assert response.status_code == 400
    assert "Choose either a workflow or an agent, not both." in response.text
    response = alice_client.post(
        reverse("workflows:schedule-create"), {**data, "workflow": "", "agent": ""}
    )
    assert response.status_code == 400
    assert "Choose the workflow or the agent this schedule runs." in response.text


def test_schedule_form_refuses_the_other_kind_s_field_instead_of_dropping_it(
    alice_client, make_workflow
):
    data = {
        "name": "Mornings",
        "workflow": make_workflow().pk,
        "input": "x",
        "kind": "cron",
        "cron": "0 9 * * *",
        "every_minutes": 15,
        "timezone": "UTC",
        "overlap": "skip",
    }
    url = reverse("workflows:schedule-create")
    response = alice_client.post(url, data)
    assert response.status_code == 400 and "A cron schedule runs on its expression" in response.text
    response = alice_client.post(url, {**data, "kind": "interval"})
    assert response.status_code == 400
    assert "An interval schedule runs every N minutes" in response.text
    assert not Schedule.objects.exists()
    assert alice_client.post(url, {**data, "every_minutes": ""}).status_code == 302
    assert Schedule.objects.get().cron == "0 9 * * *"


def test_viewer_role_can_list(member_of_team_a, login, make_workflow, team_a, alice):
    viewer = login(member_of_team_a(Role.VIEWER))
    make_workflow()
    schedule_create(
        team=team_a,
        actor=alice,
        name="Hourly",
        workflow=Workflow.objects.get(),
        input="x",
        kind="interval",
        every_minutes=60,
    )
    assert viewer.get(reverse("workflows:list")).status_code == 200
    assert "Hourly" in viewer.get(reverse("workflows:schedules")).text
    detail = viewer.get(reverse("workflows:detail", args=[Workflow.objects.get().pk])).text
    assert "editors, admins and owners run it" in detail and "Run this workflow" not in detail
    assert viewer.get(reverse("workflows:schedule-create")).status_code == 403


def schedule_form_data(workflow, **fields):
    """What the schedule form posts for an hourly run of `workflow`, with `fields` changed."""
    return {
        "name": "Hourly digest",
        "workflow": workflow.pk,
        "agent": "",
        "input": "Summarize the last hour.",
        "kind": "interval",
        "every_minutes": 60,
        "timezone": "UTC",
        "overlap": "skip",
        **fields,
    }


def test_an_interval_longer_than_a_year_is_refused_and_nothing_typed_is_lost(
    alice_client, make_workflow
):
    data = schedule_form_data(
        make_workflow(), name="Far apart", input="Summarize the decade.", every_minutes=10**11
    )
    response = alice_client.post(reverse("workflows:schedule-create"), data)
    assert response.status_code == 400
    assert "at most 527,040 minutes" in response.text
    assert "Summarize the decade." in response.text and "Far apart" in response.text
    assert not Schedule.objects.exists()


def test_a_sub_agent_waiting_for_approval_keeps_the_pages_live_and_links_the_decision(
    alice_client, alice, make_agent, make_workflow, specialists, sim
):
    from agentops.runs import services as engine
    from agentops.runs.models import StepStatus
    from agentops.workflows.models import WorkflowMode

    fetcher = make_agent("Fetcher", tools=[{"name": "http_fetch", "permission": "ask"}])
    workflow = make_workflow(roster=[fetcher, specialists[1]], mode=WorkflowMode.FAN_OUT)
    run = workflow_run_start(workflow=workflow, input="Use http_fetch for https://example.com/")
    run = engine.run_execute_inline(run=run)
    assert run.status == RunStatus.AWAITING_APPROVAL, run.error
    [waiting] = run.steps.filter(status=StepStatus.AWAITING_APPROVAL)
    approval = reverse("runs:approval", args=[waiting.pk])

    tree = alice_client.get(reverse("workflows:run", args=[run.pk])).text
    assert 'hx-trigger="every 1500ms"' in tree  # it did stop polling here
    assert "Waiting for your approval" in tree and approval in tree
    assert "Fetcher wants to call <code>http_fetch</code>" in tree
    assert "Awaiting approval</span>" in tree
    assert "· Fan-out</span>" in tree  # the mode's name, not a cut-off sentence

    thread_page = alice_client.get(
        reverse("workflows:thread", args=[run.pk, waiting.thread_id])
    ).text
    assert 'hx-select="#thread-live"' in thread_page and approval in thread_page

    engine.step_decide(step=waiting, actor=alice, approve=False)
    run = engine.run_execute_inline(run=run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    tree = alice_client.get(reverse("workflows:run", args=[run.pk])).text
    assert "hx-trigger" not in tree and "Waiting for your approval" not in tree


def test_archiving_an_agent_a_workflow_uses_warns_and_the_workflow_page_says_so(
    alice_client, make_agent, make_workflow, specialists
):
    workflow = make_workflow(name="Launch review")
    researcher = specialists[0]
    response = alice_client.post(reverse("agents:archive", args=[researcher.pk]), follow=True)
    page = response.content.decode()
    assert "is in the workflow Launch review" in page and "comes back refused" in page
    detail = alice_client.get(reverse("workflows:detail", args=[workflow.pk])).content.decode()
    assert "Delegations to it come back refused" in detail
    # An agent no workflow uses is archived without the warning.
    loner = make_agent("Loner")
    page = alice_client.post(reverse("agents:archive", args=[loner.pk]), follow=True).text
    assert "Archived Loner" in page and "is in the workflow" not in page


def test_a_workflow_run_is_listed_and_linked_as_the_workflow_s(alice_client, make_workflow, sim):
    from agentops.runs import services as engine

    workflow = make_workflow(name="Launch review")
    run = engine.run_execute_inline(run=workflow_run_start(workflow=workflow, input="Go."))
    tree = reverse("workflows:run", args=[run.pk])
    listing = alice_client.get(reverse("runs:list")).text
    assert tree in listing and "Launch review</a>" in listing and "lead Lead" in listing
    page = alice_client.get(reverse("runs:detail", args=[run.pk])).text
    assert tree in page and reverse("workflows:detail", args=[workflow.pk]) in page
    assert reverse("agents:detail", args=[run.agent_id]) in page


def test_an_interval_of_zero_gets_one_error(alice_client, make_workflow):
    data = schedule_form_data(make_workflow(), every_minutes=0)
    response = alice_client.post(reverse("workflows:schedule-create"), data)
    assert response.status_code == 400
    assert "Give an interval of at least one minute." not in response.text
    assert response.text.count("greater than or equal to 1") == 1


def test_the_budget_line_reads_cleanly_with_only_a_sub_agent_budget(alice_client, make_workflow):
    workflow = make_workflow(child_budget_tokens=700)
    page = alice_client.get(reverse("workflows:detail", args=[workflow.pk])).text
    assert "<dd>700 tokens per sub-agent</dd>" in page


def test_a_sub_agent_waiting_for_its_own_sub_agents_says_so_in_the_tree(
    alice_client, make_workflow, sim, drain
):
    workflow = make_workflow(max_depth=2, max_children=20)
    run = drain(workflow_run_start(workflow=workflow, input="Audit a website."))
    middle = Delegation.objects.filter(run=run, depth=1, child__children__isnull=False).first()
    Thread.objects.filter(pk=middle.child_id).update(status=ThreadStatus.WAITING_CHILDREN)
    Delegation.objects.filter(pk=middle.pk).update(status=DelegationStatus.RUNNING)
    page = alice_client.get(reverse("workflows:run", args=[run.pk])).text
    row = page[page.index(f'data-thread="{middle.child_id}"') :]
    row = row[: row.index("</tr>")]
    assert "Waiting for sub-agents" in row and ">Running<" not in row
