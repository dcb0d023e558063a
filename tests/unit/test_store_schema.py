"""The store's schema as each backend gets it: released migrations never change on SQLite and
PostgreSQL, and on MySQL every key is indexable and no name is a reserved word."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator_api.store.schema import (
    MIGRATIONS,
    SCHEMA_VERSION_TABLE,
    Dialect,
    render,
)
from orchestrator_api.store.sqltext import mask

pytestmark = pytest.mark.unit

RELEASED = Path(__file__).parents[1] / "fixtures" / "store" / "released_migrations.json"

# Reserved in MySQL 8.0 / 8.4 and accepted as names by MariaDB 10.11 (or new there), so the
# integration run on MariaDB would not catch them. A name here breaks the MySQL 8 backend.
MYSQL_ONLY_RESERVED = frozenset(
    [
        "cube",
        "cume_dist",
        "dense_rank",
        "empty",
        "first_value",
        "function",
        "generated",
        "get",
        "grouping",
        "groups",
        "io_after_gtids",
        "io_before_gtids",
        "json_table",
        "lag",
        "last_value",
        "lateral",
        "lead",
        "manual",
        "master_bind",
        "nth_value",
        "ntile",
        "of",
        "optimizer_costs",
        "over",
        "parallel",
        "percent_rank",
        "persist",
        "persist_only",
        "qualify",
        "rank",
        "recursive",
        "row",
        "rows",
        "row_number",
        "stored",
        "system",
        "tablesample",
        "virtual",
        "window",
    ]
)


def test_released_migrations_render_as_they_always_did_on_sqlite_and_postgres() -> None:
    released = json.loads(RELEASED.read_text())
    for dialect in (Dialect.SQLITE, Dialect.POSTGRES):
        expected = released[dialect.value]
        assert render(SCHEMA_VERSION_TABLE, dialect) == expected["schema_version"]
        for migration in MIGRATIONS:
            if str(migration.version) in expected:
                rendered = [render(statement, dialect) for statement in migration.statements]
                assert rendered == expected[str(migration.version)], (dialect, migration.version)
    assert {"1", "2"} <= set(released["sqlite"])


def _columns(body: str) -> dict[str, str]:
    """Column name -> type word, from the inside of a CREATE TABLE (...)."""
    top = mask(body, nested=True)
    cuts = [0] + [i + 1 for i, char in enumerate(top) if char == ","] + [len(body) + 1]
    found = {}
    for n in range(len(cuts) - 1):
        words = body[cuts[n] : cuts[n + 1] - 1].split()
        if words and words[0].upper() not in {"PRIMARY", "UNIQUE", "CONSTRAINT", "CHECK"}:
            found[words[0]] = words[1].upper()
    return found


def _mysql_schema() -> tuple[dict[str, dict[str, str]], list[tuple[str, list[str]]], list[str]]:
    """From every migration rendered for MySQL: table -> column -> type, the indexed column
    lists (primary keys, unique ones, indexes), and every name (tables, columns, indexes)."""
    tables: dict[str, dict[str, str]] = {}
    keys: list[tuple[str, list[str]]] = []
    names: list[str] = []
    statements = [SCHEMA_VERSION_TABLE] + [s for m in MIGRATIONS for s in m.statements]
    for statement in statements:
        sql = render(statement, Dialect.MYSQL)
        create = re.match(r"\s*CREATE TABLE (?:IF NOT EXISTS )?(\w+) \((.*)\)", sql, re.DOTALL)
        if create:
            table, body = create.groups()
            tables[table] = _columns(body)
            names += [table, *tables[table]]
            for column, _ in tables[table].items():
                line = re.search(rf"\b{column}\b[^,]*", body)
                if line and re.search(r"PRIMARY KEY|UNIQUE", line.group(0)):
                    keys.append((table, [column]))
            for listed in re.findall(r"(?:PRIMARY KEY|UNIQUE) \(([^)]*)\)", body):
                keys.append((table, [c.strip() for c in listed.split(",")]))
            continue
        index = re.match(r"\s*CREATE (?:UNIQUE )?INDEX (\w+) ON (\w+) \(([^)]*)\)", sql)
        if index:
            name, table, listed = index.groups()
            names.append(name)
            keys.append((table, [c.strip() for c in listed.split(",")]))
        added = re.match(r"\s*ALTER TABLE (\w+) ADD (?:COLUMN )?(\w+) (\w+)", sql)
        if added:
            tables[added.group(1)][added.group(2)] = added.group(3).upper()
            names.append(added.group(2))
    return tables, keys, names


def test_on_mysql_every_key_and_index_is_on_an_indexable_column() -> None:
    tables, keys, _ = _mysql_schema()
    assert keys
    for table, columns in keys:
        for column in columns:
            kind = tables[table][column]
            assert not kind.endswith("TEXT"), (
                f"{table}.{column} is a key or indexed: declare it {{key}}, not TEXT "
                "(MySQL cannot index TEXT; {key} is VARCHAR(255) there)"
            )


def test_on_mysql_no_table_column_or_index_name_is_a_reserved_word() -> None:
    _, _, names = _mysql_schema()
    assert "instances" in names
    clashes = sorted({name for name in names if name.lower() in MYSQL_ONLY_RESERVED})
    assert not clashes, f"reserved words in MySQL 8: {clashes}"


def test_mysql_types_and_table_options() -> None:
    tables, _, _ = _mysql_schema()
    assert tables["instances"]["instance_key"] == "VARCHAR(255)"
    assert tables["instances"]["snapshot"] == "LONGTEXT"
    assert tables["instances"]["last_checked"] == "DOUBLE"
    assert tables["audit"]["id"] == "BIGINT"
    for migration in MIGRATIONS:
        for statement in migration.statements:
            sql = render(statement, Dialect.MYSQL)
            if sql.lstrip().startswith("CREATE TABLE"):
                assert sql.endswith(
                    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
                ), sql
    assert "AUTO_INCREMENT PRIMARY KEY" in render("{id}", Dialect.MYSQL)


def test_key_columns_are_text_on_sqlite_and_postgres() -> None:
    for dialect in (Dialect.SQLITE, Dialect.POSTGRES):
        assert render("a {key} NOT NULL", dialect) == "a TEXT NOT NULL"
