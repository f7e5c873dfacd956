from agentops.runs.models import RunStatus
from agentops.workflows.demo import seed_demo_data
from agentops.workflows.models import Schedule, Workflow, WorkflowRun


def test_demo_seeds_a_workflow_a_finished_run_and_a_schedule_once(team_a, alice, bob, sim):
    for _ in range(2):
        seed_demo_data(team=team_a, owner=alice, reviewer=bob)
    workflow = Workflow.objects.get(team=team_a)
    run = WorkflowRun.objects.get(workflow=workflow).run
    assert run.status == RunStatus.SUCCEEDED
    assert run.threads.count() == 4
    schedule = Schedule.objects.get(team=team_a)
    assert schedule.periodic_task.enabled
