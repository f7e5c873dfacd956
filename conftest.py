"""Fixtures every test can use: alice (owner, team A), bob (reviewer, team A), charlie
(owner, team B), and clients logged in as each."""

import os
import shutil

import pytest
from django.test import Client

from agentops.teams.models import Membership, Role, Team

PASSWORD = "correct-horse-battery"


def _user(django_user_model, username):
    return django_user_model.objects.create_user(username=username, password=PASSWORD)


@pytest.fixture
def team_a(db):
    return Team.objects.create(name="Team A", slug="team-a")


@pytest.fixture
def team_b(db):
    return Team.objects.create(name="Team B", slug="team-b")


@pytest.fixture
def alice(django_user_model, team_a):
    user = _user(django_user_model, "alice")
    Membership.objects.create(team=team_a, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def bob(django_user_model, team_a):
    user = _user(django_user_model, "bob")
    Membership.objects.create(team=team_a, user=user, role=Role.REVIEWER)
    return user


@pytest.fixture
def charlie(django_user_model, team_b):
    user = _user(django_user_model, "charlie")
    Membership.objects.create(team=team_b, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def member_of_team_a(django_user_model, team_a):
    """A user of team A with any role: member_of_team_a(Role.EDITOR)."""

    def make(role):
        user = _user(django_user_model, f"{role}-of-a")
        Membership.objects.create(team=team_a, user=user, role=role)
        return user

    return make


def _logged_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice):
    return _logged_in(alice)


@pytest.fixture
def bob_client(bob):
    return _logged_in(bob)


@pytest.fixture
def charlie_client(charlie):
    return _logged_in(charlie)


@pytest.fixture
def login():
    """A client logged in as the given user."""
    return _logged_in


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness buys nothing in tests and costs most of their time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# Playwright's sync API runs an event loop in the test thread; the ORM calls our fixtures make
# there are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    """The system Chromium, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser tab; `page.goto(path)` is relative to the live server."""
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    # A form answered with 400 and its field errors is expected; a script error is not.
    tab.on(
        "console",
        lambda msg: (
            msg.type == "error"
            and not msg.text.startswith("Failed to load resource")
            and errors.append(msg.text)
        ),
    )
    yield tab
    context.close()
    assert not errors, f"browser errors: {errors}"


@pytest.fixture
def browser_login(page):
    """Log a user in through the real login form."""

    def login_as(user):
        page.goto("/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/")
        return page

    return login_as


@pytest.fixture
def generous_rate_limits(settings):
    """The suite shares one simulator key; its default per-minute limits are not under test
    where a directory's conftest uses this (autouse there)."""
    settings.AGENTOPS_RATE_DEFAULT_RPM = 100_000
    settings.AGENTOPS_RATE_DEFAULT_ITPM = 100_000_000
    settings.AGENTOPS_RATE_DEFAULT_OTPM = 100_000_000


@pytest.fixture
def sim():
    """The in-process simulator every model call goes to, emptied of earlier requests."""
    from agentops.llm.client import simulator_transport

    transport = simulator_transport()
    transport.clear()
    yield transport
    transport.clear()


class RoundTrips(list):
    """What reaches PostgreSQL, one entry per round trip: "batch" for each of fastsql's
    pipelines, and "orm" for each ORM query made inside `with trips.counting():`."""

    def counting(self):
        from django.db import connection

        return connection.execute_wrapper(self._orm_query)

    def _orm_query(self, execute, *args):
        self.append("orm")
        return execute(*args)


@pytest.fixture
def round_trips(monkeypatch):
    from django.db import connection

    from agentops import fastsql

    if connection.vendor != "postgresql":
        pytest.skip("statements are batched into round trips on PostgreSQL only")
    trips = RoundTrips()
    batch = fastsql._batch_postgresql

    def counted_batch(*args, **kwargs):
        trips.append("batch")
        return batch(*args, **kwargs)

    monkeypatch.setattr(fastsql, "_batch_postgresql", counted_batch)
    return trips
