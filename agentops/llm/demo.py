"""Demo data for the model layer: a team-wide rate limit, so the usage page has buckets."""

from agentops.llm.models import RateLimit
from agentops.llm.services import SIMULATOR_LIMITS


def seed_demo_data(*, team, owner, reviewer):
    # The demo talks to the simulator; its limits are generous and visible on the page.
    RateLimit.objects.get_or_create(
        team=team,
        model="",
        defaults={
            "rpm": SIMULATOR_LIMITS.rpm,
            "itpm": SIMULATOR_LIMITS.itpm,
            "otpm": SIMULATOR_LIMITS.otpm,
        },
    )
