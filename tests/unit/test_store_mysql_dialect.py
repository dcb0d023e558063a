"""The store's SQL as the MySQL driver sends it (the rewriting is pure; tests/integration/
test_store_drivers.py runs the same statements on MariaDB, SQLite and PostgreSQL)."""

from __future__ import annotations

import re

import pytest

from orchestrator_api.store import rows
from orchestrator_api.store.mysql_dialect import (
    ChangeReturning,
    Count,
    InsertReturning,
    created_columns,
    table_ddl,
    translate,
)
from orchestrator_api.store.postgres import numbered
from orchestrator_shared.errors import StoreError

pytestmark = pytest.mark.unit


def test_placeholders_and_percent_signs_outside_and_inside_quotes() -> None:
    statement = translate("SELECT a FROM t WHERE b LIKE '%?%' AND c = ? AND d = 'it''s ?'")
    assert statement.sql == "SELECT a FROM t WHERE b LIKE '%%?%%' AND c = %s AND d = 'it''s ?'"
    assert statement.args(["x"]) == ("x",)
    with pytest.raises(StoreError, match="takes 1 arguments, 2 were given"):
        statement.args(["x", "y"])
    assert numbered("SELECT ? WHERE a = '?' AND b = ?") == "SELECT $1 WHERE a = '?' AND b = $2"


def test_do_nothing_becomes_a_no_op_duplicate_key_update() -> None:
    statement = translate(
        "INSERT INTO cluster_settings (cluster_name, alias_override, domain) "
        "VALUES (?, '', '') ON CONFLICT (cluster_name) DO NOTHING"
    )
    assert statement.sql.endswith(
        "VALUES (%s, '', '') ON DUPLICATE KEY UPDATE cluster_name = cluster_name"
    )
    assert statement.count is Count.AFFECTED
    without_target = translate("INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT DO NOTHING")
    assert without_target.sql.endswith("ON DUPLICATE KEY UPDATE a = a")


def test_an_upsert_reads_the_new_values_with_values() -> None:
    statement = translate(
        "INSERT INTO instance_tags (instance_key, tag_name, tag_value, updated_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (instance_key, tag_name) DO UPDATE SET "
        "tag_value = excluded.tag_value, updated_at = EXCLUDED.updated_at"
    )
    assert statement.sql.endswith(
        "ON DUPLICATE KEY UPDATE tag_value = VALUES(tag_value), updated_at = VALUES(updated_at)"
    )
    assert (statement.count, statement.bulk) == (Count.ROWS, True)


def test_a_conditional_upsert_assigns_the_column_its_condition_reads_last() -> None:
    statement = translate(rows.UPSERT_INSTANCE)
    update = statement.sql.split("ON DUPLICATE KEY UPDATE ", 1)[1]
    assignments = re.findall(r"(?:^|, )(\w+) = IF\(", update)
    assert len(assignments) == 9
    assert assignments[-1] == "last_checked"
    assert assignments[0] == "cluster_name"
    condition = "(VALUES(last_checked) >= instances.last_checked)"
    assert f"cluster_name = IF({condition}, (VALUES(cluster_name)), cluster_name)" in update
    assert statement.count is Count.AT_MOST_ROWS
    assert statement.main.params == tuple(range(12))


def test_arguments_follow_their_placeholders_when_the_rewrite_moves_them() -> None:
    statement = translate(
        "INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT (a) "
        "DO UPDATE SET b = ? + excluded.b WHERE t.b < ?"
    )
    assert statement.sql.endswith("ON DUPLICATE KEY UPDATE b = IF((t.b < %s), (%s + VALUES(b)), b)")
    assert statement.args(["a", "b", "plus", "limit"]) == ("a", "b", "limit", "plus")
    assert not statement.bulk  # aiomysql cannot batch it


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        (
            "INSERT INTO t (a, b, c) VALUES (?, ?, ?) ON CONFLICT (a) DO UPDATE SET "
            "b = excluded.b, c = excluded.c WHERE t.b < excluded.b AND t.c < excluded.c",
            "reads more than one",
        ),
        (
            "INSERT INTO t (a, b, c) VALUES (?, ?, ?) ON CONFLICT (a) DO UPDATE SET "
            "b = excluded.b, c = b + 1",
            "c is computed from b",
        ),
        ("INSERT INTO t VALUES (?, ?) ON CONFLICT DO NOTHING", "needs the inserted columns"),
        ("INSERT INTO t (a) VALUES (?) ON CONFLICT ON CONSTRAINT k DO NOTHING", "expected"),
        ("INSERT INTO t (a) VALUES (?), (?) RETURNING id", "single-row"),
        ("INSERT INTO t (a) SELECT a FROM u RETURNING id", "single-row"),
        ("INSERT INTO t (a) VALUES (?) RETURNING id, ?", "cannot take arguments"),
        ("SELECT 1 RETURNING x", "only go with INSERT"),
        ("UPDATE t SET a = 1 ON CONFLICT DO NOTHING", "only goes with INSERT"),
    ],
)
def test_what_cannot_mean_the_same_on_mysql_is_refused(sql: str, reason: str) -> None:
    with pytest.raises(StoreError, match=reason):
        translate(sql)


def test_returning_becomes_a_plan() -> None:
    insert = translate("INSERT INTO failure_detections (a, b) VALUES (?, ?) RETURNING id")
    assert insert.sql == "INSERT INTO failure_detections (a, b) VALUES (%s, %s)"
    assert isinstance(insert.returning, InsertReturning)
    assert (insert.returning.table, insert.returning.columns, insert.returning.target) == (
        "failure_detections",
        "id",
        (),
    )
    upsert = translate(
        "INSERT INTO recoveries (uid, a) VALUES (?, ?) ON CONFLICT (uid) "
        "DO UPDATE SET a = excluded.a RETURNING id"
    )
    assert isinstance(upsert.returning, InsertReturning)
    assert upsert.returning.target == ("uid",)
    assert upsert.returning.values["uid"].params == (0,)
    update = translate(
        "UPDATE store_state SET generation = generation + 1 WHERE id = ? RETURNING generation"
    )
    assert update.sql == "UPDATE store_state SET generation = generation + 1 WHERE id = %s"
    assert update.count is Count.MATCHED
    assert isinstance(update.returning, ChangeReturning)
    assert update.returning.assignments is not None
    assert update.returning.assignments.text == "generation = generation + 1"
    assert update.returning.where is not None
    assert update.returning.where.params == (0,)
    delete = translate("DELETE FROM instance_tags WHERE tag_name = ? RETURNING instance_key")
    assert isinstance(delete.returning, ChangeReturning)
    assert delete.returning.assignments is None
    assert delete.sql == "DELETE FROM instance_tags WHERE tag_name = %s"


def test_other_statements_pass_through() -> None:
    for sql in (
        "SELECT generation, forget_epoch FROM store_state",
        "DELETE FROM instance_tags WHERE instance_key IN "
        "(SELECT instance_key FROM instances WHERE cluster_name = ?)",
        "INSERT INTO store_state VALUES (1, 0, 0, 1, NULL, '')",
    ):
        assert translate(sql).sql == sql.replace("?", "%s")


def test_table_ddl_for_mysql() -> None:
    assert table_ddl("CREATE TABLE t (a VARCHAR(255) PRIMARY KEY, b TEXT NOT NULL)") == (
        "CREATE TABLE t (a VARCHAR(255) PRIMARY KEY, b LONGTEXT NOT NULL) "
        "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    )
    assert table_ddl("ALTER TABLE t ADD COLUMN c TEXT NOT NULL DEFAULT 'a TEXT, ok'") == (
        "ALTER TABLE t ADD COLUMN c LONGTEXT NOT NULL DEFAULT ('a TEXT, ok')"
    )
    assert table_ddl("CREATE INDEX i ON t (a)") == "CREATE INDEX i ON t (a)"


def test_created_columns() -> None:
    assert created_columns(
        "CREATE TABLE IF NOT EXISTS t (\n  a TEXT NOT NULL,\n  B INTEGER CHECK (B > 0),\n"
        "  PRIMARY KEY (a, B)\n)"
    ) == ("t", frozenset({"a", "b"}))
    assert created_columns("CREATE INDEX i ON t (a)") is None
