"""Precompiled SQL for the run engine's hot path: claiming a step, locking a run and its
thread, recording a result and adding the next step.

Each model step used to cost about ten ORM statements, and compiling an ORM statement costs
about a millisecond of CPU here, more than PostgreSQL takes to run it. The statements below
are built once per model and database vendor from the models' own field list (so a new field
is read and written without touching this file), executed with the fields' own value
preparation and converters (JSON, datetimes, decimals on SQLite and PostgreSQL alike), and
give ordinary model instances back. Behaviour is the ORM's: `save_row` writes every concrete
field as Model.save() does, `insert_row` fills auto_now_add fields as create() does. No
signals are sent; the project has no signal receivers (see docs/architecture.md).
"""

# Every identifier in these statements comes from the models' metadata (quoted) and every
# value is a query parameter.
# ruff: noqa: S608

import threading

from django.db import connection

_lock = threading.Lock()
_cache = {}


def _quote(name):
    return connection.ops.quote_name(name)


def _cached(key, build):
    key = (connection.vendor, *key)
    found = _cache.get(key)
    if found is None:
        found = build()
        with _lock:
            _cache[key] = found
    return found


class Reader:
    """The columns of `model` under a table alias in a SELECT, and the instance a row's
    slice of them makes."""

    def __init__(self, model, alias):
        self.model = model
        self.fields = model._meta.concrete_fields
        self.size = len(self.fields)
        self.select = ", ".join(f"{alias}.{_quote(field.column)}" for field in self.fields)
        self._converters = [
            (col, connection.ops.get_db_converters(col) + col.get_db_converters(connection))
            for col in (field.get_col(alias) for field in self.fields)
        ]

    def build(self, values):
        values = list(values)
        for index, (col, converters) in enumerate(self._converters):
            for convert in converters:
                values[index] = convert(values[index], col, connection)
        return self.model.from_db(connection.alias, None, values)


def reader(model, alias):
    return _cached(("reader", model, alias), lambda: Reader(model, alias))


def fetch(sql, params, readers):
    """Run a SELECT (or ... RETURNING) whose columns are the readers' in order; the first
    row's instances (None for a reader whose primary key came back NULL, i.e. a LEFT JOIN
    that found nothing), or None when there is no row."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    instances, start = [], 0
    for read in readers:
        values = row[start : start + read.size]
        start += read.size
        pk_index = read.fields.index(read.model._meta.pk)
        instances.append(None if values[pk_index] is None else read.build(values))
    return instances


def prepared(instance, field):
    return field.get_db_prep_save(getattr(instance, field.attname), connection)


def _update_sql(model, names, conditions):
    meta = model._meta
    fields = (
        [meta.get_field(name) for name in names]
        if names
        else [field for field in meta.concrete_fields if not field.primary_key]
    )
    assignments = ", ".join(f"{_quote(field.column)} = %s" for field in fields)
    where = " AND ".join(
        [f"{_quote(meta.pk.column)} = %s"]
        + [f"{_quote(meta.get_field(name).column)} = %s" for name in conditions]
    )
    return fields, f"UPDATE {_quote(meta.db_table)} SET {assignments} WHERE {where}"


def save_row(instance, *, fields=None, only_if=None):
    """UPDATE the instance's row with its values (every concrete field, or `fields`), as
    Model.save() does; `only_if` ({field name: value}) makes it conditional. Returns the
    number of rows written (0 or 1)."""
    model = type(instance)
    conditions = tuple(sorted(only_if or {}))
    names = tuple(fields or ())
    columns, sql = _cached(
        ("update", model, names, conditions), lambda: _update_sql(model, names, conditions)
    )
    params = [prepared(instance, field) for field in columns]
    params.append(instance.pk)
    meta = model._meta
    params += [
        meta.get_field(name).get_db_prep_value(only_if[name], connection, prepared=False)
        for name in conditions
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _insert_sql(model):
    meta = model._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    columns = ", ".join(_quote(field.column) for field in fields)
    values = ", ".join(["%s"] * len(fields))
    sql = (
        f"INSERT INTO {_quote(meta.db_table)} ({columns}) VALUES ({values}) "
        f"RETURNING {_quote(meta.pk.column)}"
    )
    return fields, sql


def insert_row(instance):
    """INSERT a new instance as create() does (auto_now_add filled) and set its pk."""
    model = type(instance)
    fields, sql = _cached(("insert", model), lambda: _insert_sql(model))
    params = []
    for field in fields:
        value = field.pre_save(instance, True)
        params.append(field.get_db_prep_save(value, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        instance.pk = cursor.fetchone()[0]
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance


# --- the engine's statements ------------------------------------------------------------


def _claim_sql():
    from .models import Step

    meta = Step._meta
    table = _quote(meta.db_table)
    col = {
        name: _quote(meta.get_field(name).column)
        for name in ("status", "attempts", "claimed_at", "deadline", "error", "id")
    }
    step = reader(Step, table)
    return (
        f"UPDATE {table} SET {col['status']} = %s, {col['attempts']} = {col['attempts']} + 1, "
        f"{col['claimed_at']} = %s, {col['deadline']} = %s, {col['error']} = %s "
        f"WHERE {col['id']} = %s AND {col['status']} = %s RETURNING {step.select}"
    ), step


def claim_step(step_id, *, now, deadline):
    """The conditional update that claims a queued step (RUNNING, one more attempt), giving
    the claimed Step back, or None when the step was not queued (another worker has it)."""
    from .models import Step, StepStatus

    sql, step = _cached(("claim",), _claim_sql)
    meta = Step._meta
    params = [
        StepStatus.RUNNING,
        meta.get_field("claimed_at").get_db_prep_value(now, connection),
        meta.get_field("deadline").get_db_prep_value(deadline, connection),
        "",
        step_id,
        StepStatus.QUEUED,
    ]
    found = fetch(sql, params, [step])
    return found[0] if found else None


def _context_sql():
    from agentops.agents.models import Agent, AgentVersion
    from agentops.teams.models import Team

    from .models import Run, TeamBudget, Thread

    parts = [
        reader(Run, "r"),
        reader(Team, "tm"),
        reader(TeamBudget, "b"),
        reader(Thread, "t"),
        reader(AgentVersion, "v"),
        reader(Agent, "a"),
    ]
    fk = {
        "run_team": _quote(Run._meta.get_field("team").column),
        "budget_team": _quote(TeamBudget._meta.get_field("team").column),
        "version": _quote(Thread._meta.get_field("agent_version").column),
        "agent": _quote(AgentVersion._meta.get_field("agent").column),
    }
    sql = (
        f"SELECT {', '.join(part.select for part in parts)} "
        f"FROM {_quote(Run._meta.db_table)} r "
        f"JOIN {_quote(Team._meta.db_table)} tm ON tm.id = r.{fk['run_team']} "
        f"LEFT JOIN {_quote(TeamBudget._meta.db_table)} b ON b.{fk['budget_team']} = tm.id "
        f"JOIN {_quote(Thread._meta.db_table)} t ON t.id = %s "
        f"JOIN {_quote(AgentVersion._meta.db_table)} v ON v.id = t.{fk['version']} "
        f"JOIN {_quote(Agent._meta.db_table)} a ON a.id = v.{fk['agent']} "
        "WHERE r.id = %s"
    )
    return sql, parts


def attach_context(step):
    """Load what executing `step` reads in one statement, as the ORM's
    select_related("run__team__budget", "thread__agent_version__agent__team") would: the
    run, its team and budget, the thread, its agent version and agent."""
    sql, parts = _cached(("context",), _context_sql)
    run, team, budget, thread, version, agent = fetch(sql, [step.thread_id, step.run_id], parts)
    team._state.fields_cache["budget"] = budget  # None: the team has no budget
    if budget is not None:
        budget.team = team
    run.team = team
    if agent.team_id == team.pk:
        agent.team = team
    version.agent = agent
    thread.agent_version = version
    step.run = run
    step.thread = thread
    return step


def _lock_sql(model):
    meta = model._meta
    part = reader(model, _quote(meta.db_table))
    sql = f"SELECT {part.select} FROM {_quote(meta.db_table)} WHERE {_quote(meta.pk.column)} = %s"
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    return sql, part


def lock_row(model, pk):
    """SELECT ... FOR UPDATE of one row (a plain SELECT where the database locks whole
    transactions instead, as the ORM's select_for_update() does there)."""
    sql, part = _cached(("lock", model), lambda: _lock_sql(model))
    found = fetch(sql, [pk], [part])
    if found is None:
        raise model.DoesNotExist(f"{model.__name__} {pk} does not exist")
    return found[0]
