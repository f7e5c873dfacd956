"""fastsql.save_rows_and_commit: the last writes of a checkpoint and its COMMIT in one round
trip, with transaction.atomic()'s on_commit callbacks unchanged."""

import psycopg
import pytest
from django.db import connection, transaction
from psycopg.pq import TransactionStatus

from agentops import fastsql
from agentops.teams.models import Team


def _name_seen_by_another_connection(team_id):
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"],
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
    ) as other:
        return other.execute("SELECT name FROM teams_team WHERE id = %s", [team_id]).fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_the_outermost_block_commits_with_its_last_writes_and_then_runs_its_callbacks():
    team = Team.objects.create(name="Before", slug="before")
    callbacks = []
    with transaction.atomic():
        team.name = "After"
        transaction.on_commit(lambda: callbacks.append(_name_seen_by_another_connection(team.pk)))
        fastsql.save_rows_and_commit(team)
        # Committed by that round trip: another connection sees it before the block ends.
        assert connection.connection.info.transaction_status == TransactionStatus.IDLE
        assert _name_seen_by_another_connection(team.pk) == "After"
        assert callbacks == []
    assert callbacks == ["After"]
    assert Team.objects.get(pk=team.pk).name == "After"


@pytest.mark.django_db(transaction=True)
def test_a_nested_block_saves_without_committing_its_callers_transaction():
    team = Team.objects.create(name="Before", slug="before")
    with pytest.raises(RuntimeError), transaction.atomic():
        with transaction.atomic():
            team.name = "After"
            fastsql.save_rows_and_commit(team)
        assert connection.connection.info.transaction_status == TransactionStatus.INTRANS
        raise RuntimeError("the caller fails: everything it wrote rolls back")
    assert Team.objects.get(pk=team.pk).name == "Before"


def test_inside_a_test_case_it_only_saves(team_a):
    team_a.name = "Renamed"
    with transaction.atomic():
        fastsql.save_rows_and_commit(team_a)
    assert connection.connection.info.transaction_status == TransactionStatus.INTRANS
    assert Team.objects.get(pk=team_a.pk).name == "Renamed"


@pytest.mark.django_db(transaction=True)
def test_a_block_inside_a_transaction_its_caller_opened_does_not_commit_it():
    team = Team.objects.create(name="Before", slug="before")
    transaction.set_autocommit(False)
    try:
        Team.objects.filter(pk=team.pk).update(slug="caller-wrote")
        with transaction.atomic():  # a savepoint: the caller owns the transaction
            team.name = "After"
            fastsql.save_rows_and_commit(team)
        transaction.rollback()
    finally:
        transaction.set_autocommit(True)
    team.refresh_from_db()
    assert (team.name, team.slug) == ("Before", "before")
