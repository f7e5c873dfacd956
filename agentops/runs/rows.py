"""The run engine's claim in one statement: the conditional update that claims a step and
the load of what executing it reads (see agentops/fastsql.py for why it is not the ORM)."""

# Every identifier in these statements comes from the models' metadata (quoted) and every
# value is a query parameter.
# ruff: noqa: S608

from django.db import connection

from agentops.fastsql import batch, batched, cached, column, instances, reader, table

# --- claiming a step --------------------------------------------------------------------


def _claim_sql():
    from agentops.agents.models import Agent, AgentVersion
    from agentops.teams.models import Team

    from .models import Run, Step, TeamBudget, Thread

    status, attempts = column(Step, "status"), column(Step, "attempts")
    # The run starts when a worker first claims one of its steps (before the claim, whose
    # join then reads it running); at any later claim it matches no row.
    start_run = (
        f"UPDATE {table(Run)} SET {column(Run, 'status')} = %s, "
        f"{column(Run, 'started_at')} = %s WHERE {column(Run, 'id')} = "
        f"(SELECT {column(Step, 'run')} FROM {table(Step)} WHERE {column(Step, 'id')} = %s "
        f"AND {status} = %s) AND {column(Run, 'status')} = %s"
    )
    claim = (
        f"UPDATE {table(Step)} SET {status} = %s, {attempts} = {attempts} + 1, "
        f"{column(Step, 'claimed_at')} = %s, {column(Step, 'deadline')} = %s, "
        f"{column(Step, 'error')} = %s WHERE {column(Step, 'id')} = %s AND {status} = %s"
    )
    parts = [
        reader(Step, "s"),
        reader(Run, "r"),
        reader(Team, "tm"),
        reader(TeamBudget, "b"),
        reader(Thread, "t"),
        reader(AgentVersion, "v"),
        reader(Agent, "a"),
    ]
    context = (
        f"SELECT {', '.join(part.select for part in parts)} FROM {{steps}} s "
        f"JOIN {table(Run)} r ON r.id = s.{column(Step, 'run')} "
        f"JOIN {table(Team)} tm ON tm.id = r.{column(Run, 'team')} "
        f"LEFT JOIN {table(TeamBudget)} b ON b.{column(TeamBudget, 'team')} = tm.id "
        f"JOIN {table(Thread)} t ON t.id = s.{column(Step, 'thread')} "
        f"JOIN {table(AgentVersion)} v ON v.id = t.{column(Thread, 'agent_version')} "
        f"JOIN {table(Agent)} a ON a.id = v.{column(AgentVersion, 'agent')}"
    )
    if batched():
        # One statement: the claim's RETURNING joined to what executing the step reads.
        sql = f"WITH claimed AS ({claim} RETURNING *) " + context.format(steps="claimed")
        return [start_run, sql], parts
    # Elsewhere the claim, then the same SELECT of the claimed step.
    return [start_run, claim, context.format(steps=table(Step)) + " WHERE s.id = %s"], parts


def claim_step(step_id, *, now, deadline):
    """Claim a queued step with a conditional update (RUNNING, one more attempt) and load
    what executing it reads, as select_related("run__team__budget",
    "thread__agent_version__agent__team") would: its run, the run's team and budget, its
    thread (whose run is that run), the thread's agent version and agent. None when the
    step was not queued (another worker has it)."""
    statements = claim_statements(step_id, now=now, deadline=deadline)
    return claimed_step(batch(*statements))


def claim_statements(step_id, *, now, deadline):
    """The statements of claim_step, to run in a batch (on PostgreSQL, in one round trip:
    also after another transaction's COMMIT); claimed_step reads their results."""
    from .models import Run, RunStatus, Step, StepStatus

    statements, _ = cached(("claim",), _claim_sql)
    meta = Step._meta
    start_params = [
        RunStatus.RUNNING,
        Run._meta.get_field("started_at").get_db_prep_value(now, connection),
        step_id,
        StepStatus.QUEUED,
        RunStatus.QUEUED,
    ]
    params = [
        StepStatus.RUNNING,
        meta.get_field("claimed_at").get_db_prep_value(now, connection),
        meta.get_field("deadline").get_db_prep_value(deadline, connection),
        "",
        step_id,
        StepStatus.QUEUED,
    ]
    # PostgreSQL: start the run, claim and read; elsewhere the read is a third statement.
    return list(zip(statements, (start_params, params, [step_id]), strict=False))


def claimed_step(results):
    """The Step claim_statements claimed, with its context, or None."""
    _, parts = cached(("claim",), _claim_sql)
    if len(results) == 2:
        _, (row, _) = results
    else:
        _, (_, claimed), (row, _) = results
        row = row if claimed else None
    found = instances(row, parts)
    if found is None:
        return None
    step, run, team, budget, thread, version, agent = found
    team._state.fields_cache["budget"] = budget  # None: the team has no budget
    if budget is not None:
        budget.team = team
    run.team = team
    if agent.team_id == team.pk:
        agent.team = team
    version.agent = agent
    thread.agent_version = version
    thread.run = run
    step.run = run
    step.thread = thread
    return step
