from agentops.outcomes.models import Evaluation, Verdict
from agentops.runs.models import RunStatus
from agentops.workflows.demo import seed_demo_data
from agentops.workflows.models import Schedule, Workflow, WorkflowRun


def test_demo_seeds_a_workflow_a_finished_run_and_a_schedule_once(team_a, alice, bob, sim):
    for _ in range(2):
        seed_demo_data(team=team_a, owner=alice, reviewer=bob)
    workflow = Workflow.objects.get(team=team_a)
    run = WorkflowRun.objects.get(workflow=workflow).run
    assert run.status == RunStatus.SUCCEEDED
    # The lead, three specialists, and the graders of the risk reviewer's two answers.
    assert run.threads.filter(role="grader").count() == 2
    assert run.threads.count() == 6
    graded = Evaluation.objects.get(thread__run=run)
    assert graded.thread.agent_version.agent.name == "Risk reviewer"
    assert graded.verdict == Verdict.SATISFIED
    schedule = Schedule.objects.get(team=team_a)
    assert schedule.periodic_task.enabled
