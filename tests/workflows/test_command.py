import pytest
from django.core.management import CommandError, call_command

from agentops.runs.models import RunStatus, RunTrigger
from agentops.workflows.models import WorkflowRun


def test_run_workflow_inline_prints_the_tree_and_the_synthesis(make_workflow, sim, capsys):
    workflow = make_workflow()
    call_command("run_workflow", workflow.slug, "--input", "Outline a podcast.", "--inline")
    out = capsys.readouterr().out
    run = WorkflowRun.objects.get(workflow=workflow).run
    assert out.splitlines()[0] == str(run.pk)
    assert RunStatus.SUCCEEDED in out and "researcher: succeeded" in out
    assert run.trigger == RunTrigger.COMMAND


def test_run_workflow_without_wait_only_starts(make_workflow, sim, capsys):
    workflow = make_workflow()
    call_command("run_workflow", workflow.slug, "--input", "Queue me.")
    run = WorkflowRun.objects.get(workflow=workflow).run
    assert capsys.readouterr().out.strip() == str(run.pk)
    assert run.status == RunStatus.QUEUED


def test_run_workflow_unknown_slug_and_empty_input(make_workflow):
    with pytest.raises(CommandError, match="No workflow"):
        call_command("run_workflow", "nope", "--input", "x")
    workflow = make_workflow()
    with pytest.raises(CommandError, match="Give the run some input"):
        call_command("run_workflow", workflow.slug, "--input", " ")
