import contextlib
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from agentops.agents.models import Agent
from agentops.runs import services
from agentops.runs.commands import one_by_slug, rubric_by_slug, verdict_line, wait_for_end
from agentops.runs.models import RunStatus, RunTrigger


class Command(BaseCommand):
    help = (
        "Start a run of an agent and print its id. With --wait, wait for it to end, print "
        "its status and output, and exit 0 only if it succeeded. With --rubric, the output is "
        "graded (and revised) against that rubric; --wait then prints the verdict and exits 3 "
        "when the run succeeded but the verdict is not satisfied."
    )

    def add_arguments(self, parser):
        parser.add_argument("agent_slug")
        parser.add_argument("--input", required=True, help="The run's input text.")
        parser.add_argument("--team", help="Team slug, when several teams have the agent.")
        parser.add_argument("--wait", action="store_true", help="Wait for the run to end.")
        parser.add_argument(
            "--inline",
            action="store_true",
            help="Execute the run in this process instead of on a Celery worker (implies --wait).",
        )
        parser.add_argument("--timeout", type=float, default=600, help="Seconds to wait at most.")
        parser.add_argument("--budget-tokens", type=int)
        parser.add_argument("--max-turns", type=int)
        parser.add_argument("--rubric", help="Slug of a rubric of the agent's team to grade by.")

    def handle(self, *args, agent_slug, input, team, wait, inline, timeout, **options):  # noqa: A002
        agent = one_by_slug(Agent.objects.all(), slug=agent_slug, team=team, noun="agent")
        rubric = rubric_by_slug(agent.team, options["rubric"]) if options.get("rubric") else None
        start_inline = services.inline_execution() if inline else contextlib.nullcontext()
        try:
            with start_inline:
                start_kwargs = {
                    "agent": agent,
                    "input": input,
                    "actor": None,
                    "trigger": RunTrigger.COMMAND,
                    "budget_tokens": options["budget_tokens"],
                    "max_turns": options["max_turns"],
                }
                if rubric is not None:
                    from agentops.outcomes.loop import run_start_graded

                    run = run_start_graded(rubric=rubric, **start_kwargs)
                else:
                    run = services.run_start(**start_kwargs)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(str(run.pk))
        self.stdout.flush()
        if not (wait or inline):
            return
        run = wait_for_end(
            run,
            inline=inline,
            timeout=timeout,
            max_steps=500,
            on_awaiting_approval=lambda: self.stderr.write(
                "The run is waiting for a tool approval in the browser."
            ),
        )
        if run.is_active:
            self.stdout.write(f"{run.status} (still active after {timeout:g} s)")
            sys.exit(2)
        self.stdout.write(run.status)
        if run.output:
            self.stdout.write(run.output)
        if run.error:
            self.stderr.write(run.error)
        if run.status != RunStatus.SUCCEEDED:
            sys.exit(1)
        if rubric is not None:
            evaluation = run.evaluation
            self.stdout.write(verdict_line(evaluation))
            if evaluation.verdict != "satisfied":
                sys.exit(3)
