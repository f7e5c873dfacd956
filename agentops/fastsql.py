"""Precompiled SQL for hot paths (the run engine's steps, the model call record).

Each model step used to cost about ten ORM statements, and compiling an ORM statement costs
about a millisecond of CPU here, more than PostgreSQL takes to run it; on a busy machine each
round trip to the database costs more again (two context switches). The statements below are
built once per model and database vendor from the models' own field list (so a new field is
read and written without touching this file), executed with the fields' own value
preparation and converters (JSON, datetimes, decimals on SQLite and PostgreSQL alike), and
give ordinary model instances back. On PostgreSQL they are prepared statements (planned once
per connection), and statements that follow each other without Python in between (lock the
run, lock the thread, write the step) go in one round trip (`batch`), in order. Behaviour
is the ORM's: `update` writes every concrete field as Model.save() does, `insert_row` fills
auto_now_add fields as create() does. No signals are sent; the project has no signal
receivers.
"""

# Every identifier in these statements comes from the models' metadata (quoted) and every
# value is a query parameter.
# ruff: noqa: S608

import logging
import threading
import time

import psycopg
from django.db import connection

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_cache = {}


def quote(name):
    return connection.ops.quote_name(name)


def table(model):
    """The model's table name, quoted for a statement."""
    return quote(model._meta.db_table)


def column(model, name):
    """The column of the model's field `name`, quoted for a statement."""
    return quote(model._meta.get_field(name).column)


def cached(key, build):
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
        self.pk_index = self.fields.index(model._meta.pk)
        self.select = ", ".join(f"{alias}.{quote(field.column)}" for field in self.fields)
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
    return cached(("reader", model, alias), lambda: Reader(model, alias))


def instances(row, readers):
    """A row's instances, one per reader (None for a reader whose primary key is NULL: a
    LEFT JOIN that found nothing); None for no row."""
    if row is None:
        return None
    found, start = [], 0
    for read in readers:
        values = row[start : start + read.size]
        start += read.size
        found.append(None if values[read.pk_index] is None else read.build(values))
    return found


def batched():
    # PostgreSQL takes several statements in one round trip (a pipeline, below).
    return connection.vendor == "postgresql"


def _returns_rows(sql):
    # Asking the cursor (its description) would build a column object for each of a wide
    # join's hundred columns.
    return sql.startswith(("SELECT", "WITH")) or " RETURNING " in sql


def _results(cursors, statements):
    return [
        (cursor.fetchone() if _returns_rows(sql) else None, cursor.rowcount)
        for cursor, (sql, _) in zip(cursors, statements, strict=True)
    ]


def _execute_prepared(raw_connection, sql, params):
    # The statements here are a handful of fixed strings executed once or more per step:
    # prepared once per connection, PostgreSQL no longer plans them on every execution
    # (planning the claim's seven-table join cost more than running it). Transaction
    # control cannot be a prepared statement. Django's own cursors bind parameters on the
    # client side, which cannot be prepared.
    cursor = psycopg.Cursor(raw_connection)
    cursor.execute(sql, params, prepare=sql != "COMMIT")
    return cursor


def _committed(cursors, commit_at):
    cursor = cursors[commit_at] if commit_at is not None and commit_at < len(cursors) else None
    result = cursor.pgresult if cursor is not None else None
    # A COMMIT of a failed transaction succeeds too, as a ROLLBACK.
    return (
        result is not None
        and result.status == psycopg.pq.ExecStatus.COMMAND_OK
        and cursor.statusmessage == "COMMIT"
    )


def _batch_postgresql(statements, commit_at=None):
    connection.validate_no_broken_transaction()
    connection.ensure_connection()
    raw_connection = connection.connection
    started = time.monotonic()
    with connection.wrap_database_errors:
        if len(statements) == 1:
            cursors = [_execute_prepared(raw_connection, *statements[0])]
            results = _results(cursors, statements)
        else:
            # Sent together, answered together: one round trip, in order; an error aborts
            # the statements after it (those after a COMMIT form a transaction of their
            # own, which ends with the round trip).
            cursors = []
            try:
                with raw_connection.pipeline():
                    for statement in statements:
                        cursors.append(_execute_prepared(raw_connection, *statement))
                results = _results(cursors, statements)
            except psycopg.Error:
                if not _committed(cursors, commit_at):
                    raise
                # Only what followed the COMMIT failed: the commit stands.
                logger.warning("Statements after a COMMIT failed", exc_info=True)
                done = statements[: commit_at + 1]
                results = _results(cursors[: commit_at + 1], done)
                results += [None] * (len(statements) - len(done))
    if connection.queries_logged:
        # As Django's debug cursor would (tests capture queries this way).
        duration = time.monotonic() - started
        for sql, params in statements:
            connection.queries_log.append(
                {"sql": f"{sql} -- {params!r}", "time": f"{duration:.3f}"}
            )
    return results


def batch(*statements):
    """Execute (sql, params) statements in order, in one round trip where the database
    allows it. Returns (first row or None, rowcount) for each."""
    if batched():
        return _batch_postgresql(statements)
    results = []
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)
            results.append((cursor.fetchone() if _returns_rows(sql) else None, cursor.rowcount))
    return results


def _field(meta, name):
    return meta.pk if name == "pk" else meta.get_field(name)


def _update_where_sql(model, names, conditions):
    meta = model._meta
    fields = [meta.get_field(name) for name in names]
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    where = " AND ".join(
        f"{quote(_field(meta, name).column)} = %s"
        if size is None
        else f"{quote(_field(meta, name).column)} IN ({', '.join(['%s'] * size)})"
        for name, size in conditions
    )
    return fields, f"UPDATE {table(model)} SET {assignments} WHERE {where}"


def update_where(model, values, **conditions):
    """The statement of model.objects.filter(**conditions).update(**values), for conditions
    on concrete fields (or pk) by name: `name=value`, or `name=[...]` for IN."""
    names = tuple(values)
    shape = tuple(
        (name, len(value) if isinstance(value, (list, tuple)) else None)
        for name, value in conditions.items()
    )
    fields, sql = cached(
        ("update_where", model, names, shape), lambda: _update_where_sql(model, names, shape)
    )
    meta = model._meta
    params = [
        field.get_db_prep_save(values[name], connection)
        for field, name in zip(fields, names, strict=True)
    ]
    for name, value in conditions.items():
        field = _field(meta, name)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            params.append(field.get_db_prep_value(item, connection))
    return sql, params


def update(instance, *, fields=None, only_if=None):
    """The statement that writes the instance's row with its values (every concrete field,
    or `fields`), as Model.save() does; `only_if` ({field name: value}) makes it
    conditional (its rowcount says whether it wrote)."""
    meta = type(instance)._meta
    columns = (
        [meta.get_field(name) for name in fields]
        if fields
        else [field for field in meta.concrete_fields if not field.primary_key]
    )
    values = {field.name: getattr(instance, field.attname) for field in columns}
    return update_where(type(instance), values, pk=instance.pk, **(only_if or {}))


def save_rows(*instances_to_save):
    """Save each instance's row (every concrete field), in one round trip where possible."""
    batch(*(update(instance) for instance in instances_to_save))


def _outermost_atomic_block():
    """Whether the one open atomic block is the transaction itself: it began it (not a
    savepoint in a transaction someone opened by turning autocommit off) and commits it
    on exit."""
    blocks = connection.atomic_blocks
    return (
        len(blocks) == 1
        and not getattr(blocks[0], "_from_testcase", False)
        and connection.commit_on_exit
        and not connection.savepoint_ids
        and not connection.needs_rollback
    )


def save_rows_and_commit(*instances_to_save, then=()):
    """write_and_commit of the rows' UPDATEs (every concrete field, as Model.save())."""
    return write_and_commit(*(update(instance) for instance in instances_to_save), then=then)


def write_and_commit(*statements, then=()):
    """The last statements of an outermost transaction.atomic() block: run them and, on
    PostgreSQL, COMMIT in the same round trip. The block's own commit then finds the
    connection idle, which psycopg skips, and runs the on_commit callbacks as usual. Inside
    another block (a test case's, a caller's) or elsewhere, only the statements run.

    `then`: statements to run after the COMMIT in the same round trip, as a transaction of
    their own. Returns their results, or None when they did not run (no COMMIT here) or
    failed (the commit stands; the failure is logged)."""
    statements = list(statements)
    if not (batched() and _outermost_atomic_block()):
        batch(*statements)
        return None
    commit_at = len(statements)
    statements += [("COMMIT", []), *then]
    results = _batch_postgresql(statements, commit_at=commit_at)[commit_at + 1 :]
    return None if then and results[0] is None else results


def _insert_sql(model):
    meta = model._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    columns = ", ".join(quote(field.column) for field in fields)
    values = ", ".join(["%s"] * len(fields))
    sql = (
        f"INSERT INTO {table(model)} ({columns}) VALUES ({values}) "
        f"RETURNING {quote(meta.pk.column)}"
    )
    return fields, sql


def insert(instance):
    """The INSERT of a new instance as create() does it (auto_now_add filled), to run in a
    batch; `inserted(instance, result)` then gives the instance its pk."""
    model = type(instance)
    fields, sql = cached(("insert", model), lambda: _insert_sql(model))
    params = [
        field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields
    ]
    return sql, params


def inserted(instance, result):
    row, _ = result
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance


def insert_row(instance):
    """INSERT a new instance as create() does (auto_now_add filled) and set its pk."""
    (result,) = batch(insert(instance))
    return inserted(instance, result)


def _lock_sql(model):
    meta = model._meta
    part = reader(model, table(model))
    sql = f"SELECT {part.select} FROM {table(model)} WHERE {quote(meta.pk.column)} = %s"
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    return sql, part


def lock(model, pk):
    """The SELECT ... FOR UPDATE of one row (a plain SELECT where the database locks whole
    transactions instead, as the ORM's select_for_update() does there), and its reader."""
    sql, part = cached(("lock", model), lambda: _lock_sql(model))
    return (sql, [pk]), part


def locked(result, model, pk, part):
    found = instances(result[0], [part])
    if found is None:
        raise model.DoesNotExist(f"{model.__name__} {pk} does not exist")
    return found[0]


def lock_row(model, pk):
    statement, part = lock(model, pk)
    (result,) = batch(statement)
    return locked(result, model, pk, part)
