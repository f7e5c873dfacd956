from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from agentops.memory.dreaming import dream_execute_inline
from agentops.memory.models import DreamStatus, DreamTrigger, MemoryStore
from agentops.memory.services import dream_start


class Command(BaseCommand):
    help = (
        "Start a dream over a memory store: review the attached agents' sessions since its "
        "last dream and propose memory changes for review."
    )

    def add_arguments(self, parser):
        parser.add_argument("store", help="The store's slug.")
        parser.add_argument("--team", help="The team's slug (needed when several teams use it).")
        parser.add_argument("--model", help="The model to dream with (default: the store's).")
        parser.add_argument("--instructions", default="", help="Extra focus for this dream.")
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Run the dream in this process and wait for its changeset, instead of "
            "queueing it for a worker.",
        )

    def handle(self, *args, **options):
        stores = MemoryStore.objects.filter(slug=options["store"]).select_related("team")
        if options["team"]:
            stores = stores.filter(team__slug=options["team"])
        stores = list(stores)
        if not stores:
            raise CommandError(f"No memory store with the slug {options['store']!r}.")
        if len(stores) > 1:
            teams = ", ".join(store.team.slug for store in stores)
            raise CommandError(
                f"Several teams have a store {options['store']!r}; pass --team ({teams})."
            )
        store = stores[0]
        try:
            dream = dream_start(
                store=store,
                actor=None,
                model=options["model"],
                instructions=options["instructions"],
                trigger=DreamTrigger.COMMAND,
                enqueue=not options["wait"],
            )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        if not options["wait"]:
            self.stdout.write(f"Queued {dream.label} over {store.name}; a worker will run it.")
            return
        self.stdout.write(f"Running {dream.label} over {store.name}…")
        dream = dream_execute_inline(dream_id=dream.pk)
        if dream.status != DreamStatus.SUCCEEDED:
            raise CommandError(f"{dream.label} {dream.get_status_display().lower()}: {dream.error}")
        changes = dream.changes.count()
        self.stdout.write(
            self.style.SUCCESS(
                f"{dream.label} read {len(dream.session_run_ids)} session(s) in "
                f"{dream.progress_total} part(s) and proposed {changes} change(s)."
            )
        )
