"""fastsql: the engine's statements, prepared on each connection and sent together in one
round trip; save_rows_and_commit, a checkpoint's last writes and its COMMIT in one round trip,
with transaction.atomic()'s on_commit callbacks unchanged."""

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
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


@pytest.mark.django_db(transaction=True)
def test_statements_after_the_commit_run_in_its_round_trip_and_cannot_undo_it():
    team = Team.objects.create(name="Before", slug="before")
    select = "SELECT name FROM teams_team WHERE id = %s"
    with transaction.atomic():
        team.name = "After"
        (((name,), _),) = fastsql.save_rows_and_commit(team, then=[(select, [team.pk])])
    assert name == "After"  # it ran after the commit, seeing it
    with transaction.atomic():
        team.name = "Again"
        callbacks = []
        transaction.on_commit(lambda: callbacks.append("sent"))
        assert fastsql.save_rows_and_commit(team, then=[("SELECT 1/0", [])]) is None
    # Their failure is logged, not raised: the commit and its callbacks stand.
    assert callbacks == ["sent"] and Team.objects.get(pk=team.pk).name == "Again"
    assert connection.connection.info.transaction_status == TransactionStatus.IDLE


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


def _prepared_statements():
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def _numbered(sql):
    # As PostgreSQL keeps a prepared statement: its parameters numbered.
    parts = sql.split("%s")
    return "".join(part + f"${index}" for index, part in enumerate(parts[:-1], 1)) + parts[-1]


@pytest.mark.django_db(transaction=True)
def test_statements_are_prepared_once_per_connection_and_answer_in_order():
    first = Team.objects.create(name="First", slug="first")
    second = Team.objects.create(name="Second", slug="second")
    lock_first, part = fastsql.lock(Team, first.pk)
    lock_second, _ = fastsql.lock(Team, second.pk)
    first.name = "First, renamed"
    with transaction.atomic():
        results = fastsql.batch(fastsql.update(first), lock_second, lock_first)
    assert [rowcount for _, rowcount in results] == [1, 1, 1]
    assert fastsql.locked(results[1], Team, second.pk, part).name == "Second"
    # The lock after the update reads the update's write: the statements ran in order.
    assert fastsql.locked(results[2], Team, first.pk, part).name == "First, renamed"
    prepared = _prepared_statements()
    assert _numbered(lock_first[0]) in prepared
    assert _numbered(fastsql.update(first)[0]) in prepared
    with transaction.atomic():
        fastsql.batch(lock_first)
    assert len(_prepared_statements()) == len(prepared)  # reused, not prepared again


@pytest.mark.django_db(transaction=True)
def test_an_error_in_a_batch_is_djangos_error_and_undoes_the_statements_before_it():
    Team.objects.create(name="Taken", slug="taken")
    team = Team.objects.create(name="Before", slug="before")
    other = Team.objects.create(name="Other", slug="other")
    team.name = "After"
    other.slug = "taken"
    with pytest.raises(IntegrityError), transaction.atomic():
        fastsql.batch(fastsql.update(team), fastsql.update(other))
    assert Team.objects.get(pk=team.pk).name == "Before"
    assert Team.objects.get(pk=other.pk).slug == "other"
    # The connection is usable again.
    assert fastsql.lock_row(Team, team.pk).name == "Before"


@pytest.mark.django_db
def test_update_where_writes_what_filter_update_would():
    teams = [Team.objects.create(name=f"T{n}", slug=f"t{n}") for n in range(4)]
    matched = [teams[0].pk, teams[2].pk, teams[3].pk]
    statement = fastsql.update_where(Team, {"name": "Renamed"}, pk=matched, slug="t2")
    ((_, rowcount),) = fastsql.batch(statement)
    assert rowcount == 1
    names = dict(Team.objects.filter(pk__in=[t.pk for t in teams]).values_list("slug", "name"))
    assert names == {"t0": "T0", "t1": "T1", "t2": "Renamed", "t3": "T3"}
    # Both kinds of condition, and a list of another length, build their own statement.
    ((_, rowcount),) = fastsql.batch(fastsql.update_where(Team, {"name": "All"}, pk=matched[:2]))
    assert rowcount == 2
