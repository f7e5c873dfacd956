"""Fixtures every test can use: alice (owner, team A), bob (reviewer, team A), charlie
(owner, team B), and clients logged in as each."""

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
