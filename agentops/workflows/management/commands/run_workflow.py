import contextlib
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from agentops.runs.commands import one_by_slug, rubric_by_slug, verdict_line, wait_for_end
from agentops.runs.models import RunStatus, RunTrigger
from agentops.runs.services import inline_execution
from agentops.workflows.models import Delegation, Workflow
from agentops.workflows.services import workflow_run_start


class Command(BaseCommand):
    help = (
        "Start a run of a workflow and print its id. With --wait, wait for it to end, print "
        "its status, each sub-agent's status (and verdict, when its answers are graded) and the "
        "synthesis, and exit 0 only if it succeeded. When the final result is graded (the "
        "workflow's rubric, or --rubric), --wait also prints the verdict and exits 3 when the "
        "run succeeded but the verdict is not satisfied."
    )

    def add_arguments(self, parser):
        parser.add_argument("workflow_slug")
        parser.add_argument("--input", required=True, help="The run's input text.")
        parser.add_argument("--team", help="Team slug, when several teams have the workflow.")
        parser.add_argument("--wait", action="store_true", help="Wait for the run to end.")
        parser.add_argument(
            "--inline",
            action="store_true",
            help="Execute the run in this process instead of on Celery workers (implies --wait).",
        )
        parser.add_argument("--timeout", type=float, default=600, help="Seconds to wait at most.")
        parser.add_argument(
            "--rubric",
            help="Slug of a rubric of the workflow's team to grade the final result by, instead "
            "of the workflow's own.",
        )

    def handle(self, *args, workflow_slug, input, team, wait, inline, timeout, **options):  # noqa: A002
        workflow = one_by_slug(
            Workflow.objects.all(), slug=workflow_slug, team=team, noun="workflow"
        )
        rubric = rubric_by_slug(workflow.team, options["rubric"]) if options["rubric"] else None
        start_inline = inline_execution() if inline else contextlib.nullcontext()
        try:
            with start_inline:
                run = workflow_run_start(
                    workflow=workflow, input=input, trigger=RunTrigger.COMMAND, rubric=rubric
                )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(str(run.pk))
        self.stdout.flush()
        if not (wait or inline):
            return
        run = wait_for_end(run, inline=inline, timeout=timeout, max_steps=5000)
        if run.is_active:
            self.stdout.write(f"{run.status} (still active after {timeout:g} s)")
            sys.exit(2)
        self.stdout.write(run.status)
        delegations = Delegation.objects.filter(run=run).select_related(
            "roster_entry__agent", "child__evaluation"
        )
        for delegation in delegations:
            graded = getattr(delegation.child, "evaluation", None)
            shown = f" ({verdict_line(graded)})" if graded else ""
            self.stdout.write(f"  {delegation.roster_entry.key}: {delegation.status}{shown}")
        if run.output:
            self.stdout.write(run.output)
        if run.error:
            self.stderr.write(run.error)
        if run.status != RunStatus.SUCCEEDED:
            sys.exit(1)
        evaluation = getattr(run, "evaluation", None)
        if evaluation is not None:
            self.stdout.write(verdict_line(evaluation))
            if evaluation.verdict != "satisfied":
                sys.exit(3)
