import pytest
from django.core.exceptions import ValidationError

from agentops.agents.services import agent_archive
from agentops.teams.models import AuditEvent
from agentops.workflows.models import WorkflowMode
from agentops.workflows.services import Specialist, workflow_archive, workflow_update


def _roster(agents):
    return [Specialist(agent=a, role_description=f"does {a.name}") for a in agents]


def test_every_changed_save_is_a_new_version_and_unchanged_saves_none(
    make_workflow, lead, specialists, alice
):
    workflow = make_workflow()
    v1 = workflow.current_version
    assert v1.number == 1 and v1.roster.count() == 3
    same = dict(
        name="Report team",
        description="Writes reports.",
        lead_agent=lead,
        roster=[
            Specialist(agent=a, role_description=f"the {a.name.lower()}.") for a in specialists
        ],
    )
    assert workflow_update(workflow=workflow, actor=alice, **same) is None
    v2 = workflow_update(workflow=workflow, actor=alice, **{**same, "max_parallel": 2})
    assert v2.number == 2 and v2.max_parallel == 2
    workflow.refresh_from_db()
    assert workflow.current_version == v2
    # The old version is untouched: runs that pinned it still see what they ran.
    v1.refresh_from_db()
    assert v1.max_parallel == 5 and v1.roster.count() == 3
    event = AuditEvent.objects.filter(verb="workflow.update").get()
    assert event.before["max_parallel"] == 5 and event.after["max_parallel"] == 2


@pytest.mark.parametrize(
    "change,field",
    [
        ({"roster": []}, "roster"),
        ({"max_parallel": 0}, "max_parallel"),
        ({"max_parallel": 51}, "max_parallel"),
        ({"max_children": 201}, "max_children"),
        ({"max_depth": 6}, "max_depth"),
        ({"name": "  "}, "name"),
    ],
)
def test_invalid_saves_name_the_field(make_workflow, lead, specialists, alice, change, field):
    workflow = make_workflow()
    values = dict(name="Report team", lead_agent=lead, roster=_roster(specialists)) | change
    with pytest.raises(ValidationError) as error:
        workflow_update(workflow=workflow, actor=alice, **values)
    assert field in error.value.message_dict


def test_lead_may_not_be_a_specialist(make_workflow, lead, specialists, alice):
    workflow = make_workflow()
    with pytest.raises(ValidationError) as error:
        workflow_update(
            workflow=workflow, actor=alice, name="x", lead_agent=lead, roster=_roster([lead])
        )
    assert "the lead cannot also be a specialist" in error.value.message_dict["roster"][0]


def test_agents_of_another_team_are_refused(
    make_workflow, make_agent, team_b, charlie, lead, alice
):
    workflow = make_workflow()
    outsider = make_agent("Outsider", team=team_b, actor=charlie)
    with pytest.raises(ValidationError) as error:
        workflow_update(
            workflow=workflow, actor=alice, name="x", lead_agent=lead, roster=_roster([outsider])
        )
    assert "Choose an agent of this team." in error.value.message_dict["roster"]
    with pytest.raises(ValidationError) as error:
        workflow_update(
            workflow=workflow,
            actor=alice,
            name="x",
            lead_agent=outsider,
            roster=_roster([lead]),
        )
    assert "lead_agent" in error.value.message_dict


def test_pinned_version_must_belong_to_its_agent(make_workflow, lead, specialists, alice):
    workflow = make_workflow()
    wrong = Specialist(
        agent=specialists[0],
        role_description="r",
        pinned_version=specialists[1].current_version,
    )
    with pytest.raises(ValidationError) as error:
        workflow_update(workflow=workflow, actor=alice, name="x", lead_agent=lead, roster=[wrong])
    assert "not a version of Researcher" in error.value.message_dict["roster"][0]


def test_fan_out_needs_room_for_every_specialist(make_workflow):
    with pytest.raises(ValidationError) as error:
        make_workflow(mode=WorkflowMode.FAN_OUT, max_children=2)
    assert "max_children" in error.value.message_dict


def test_archived_workflow_cannot_run_and_archived_specialist_is_refused(
    make_workflow, specialists, alice, sim, drain
):
    from agentops.workflows.models import Delegation
    from agentops.workflows.services import workflow_run_start

    workflow = make_workflow()
    agent_archive(agent=specialists[2], actor=alice)
    run = drain(workflow_run_start(workflow=workflow, input="Check archived specialists."))
    critic = run.threads.get(parent__isnull=True).messages[2]["content"][2]
    assert critic["is_error"] and "archived" in critic["content"]
    assert Delegation.objects.filter(run=run).count() == 2
    workflow_archive(workflow=workflow, actor=alice)
    with pytest.raises(ValidationError):
        workflow_run_start(workflow=workflow, input="again")
