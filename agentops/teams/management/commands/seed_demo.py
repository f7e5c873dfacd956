from importlib import import_module
from importlib.util import find_spec

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from agentops.teams import services
from agentops.teams.models import Membership, Role, Team

DEMO_PASSWORD = "demo"


class Command(BaseCommand):
    help = "Seed the demo team, users and examples (embedded default only; safe to run twice)."

    def handle(self, *args, **options):
        if not settings.EMBEDDED:
            raise CommandError("seed_demo only runs on the embedded default (no DATABASE_URL).")
        with transaction.atomic():
            alice = self._user("alice", is_superuser=True)
            bob = self._user("bob")
            team = Team.objects.filter(slug="demo").first()
            if team is None:
                team = services.team_create(name="Demo team", slug="demo", owner=alice)
            Membership.objects.get_or_create(team=team, user=bob, defaults={"role": Role.REVIEWER})
        # Each app with demo content has <app>/demo.py with seed_demo_data(); it must be
        # idempotent, as make run calls this command on every start. They run outside one
        # big transaction because the runs demo makes (simulated) model calls, which must
        # never happen inside a transaction.
        for app_config in apps.get_app_configs():
            module = f"{app_config.name}.demo"
            if app_config.name.startswith("agentops.") and find_spec(module):
                import_module(module).seed_demo_data(team=team, owner=alice, reviewer=bob)
        self.stdout.write(self.style.SUCCESS("Demo data ready: log in as alice / demo."))

    def _user(self, username, is_superuser=False):
        user, created = get_user_model().objects.get_or_create(
            username=username,
            defaults={"is_staff": is_superuser, "is_superuser": is_superuser},
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        return user
