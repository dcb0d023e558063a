"""The Driver port's contract, the same on SQLite, PostgreSQL and MariaDB: the SQL dialect the
store is written in (``?``, ``ON CONFLICT``, ``RETURNING``, ``excluded``, ``||``, ``"name"``)
means the same on each, with PostgreSQL's row counts. Store code that passes here on one
backend runs unchanged on the others."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator_api.store.driver import Driver
from orchestrator_api.store.mysql import MySQLDriver
from orchestrator_api.store.postgres import PostgresDriver
from orchestrator_api.store.schema import render
from orchestrator_api.store.sqlite import SqliteDriver
from orchestrator_shared.errors import StoreError
from tests.harness import MariadbDatabase, PostgresDatabase

pytestmark = pytest.mark.integration

THINGS = """CREATE TABLE things (
    id {id},
    name {key} NOT NULL UNIQUE,
    score {real} NOT NULL,
    note TEXT NOT NULL,
    counter {bigint} NOT NULL
)"""
PAIRS = """CREATE TABLE pairs (
    a {key} NOT NULL,
    b {key} NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (a, b)
)"""
INSERT = "INSERT INTO things (name, score, note, counter) VALUES (?, ?, ?, ?)"
UPSERT = (
    f"{INSERT} ON CONFLICT (name) DO UPDATE SET score = excluded.score, "
    "note = excluded.note, counter = excluded.counter"
)


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def open_driver(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Awaitable[Any]]:
    if request.param == "sqlite":
        return lambda: SqliteDriver.open(tmp_path / "contract.sqlite3")
    if request.param == "postgres":
        postgres: PostgresDatabase = request.getfixturevalue("postgres_db")
        return lambda: PostgresDriver.open(postgres.dsn)
    mariadb: MariadbDatabase = request.getfixturevalue("mariadb_db")
    return lambda: MySQLDriver.open(mariadb.backend())


@pytest.fixture
async def driver(open_driver: Callable[[], Awaitable[Any]]) -> AsyncIterator[Driver]:
    opened = await open_driver()
    try:
        async with opened.transaction() as tx:
            for statement in (THINGS, PAIRS):
                await tx.execute(render(statement, opened.dialect))
        yield opened
    finally:
        await opened.close()


def rows(found: list[Any]) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in found]


async def test_insert_returning_gives_the_new_ids(driver: Driver) -> None:
    async with driver.transaction() as tx:
        first = await tx.fetch(f"{INSERT} RETURNING id", "a", 1.5, "x", 0)
        second = await tx.fetch(f"{INSERT} RETURNING id, name", "b", 2.5, "y", 0)
    assert first[0][0] < second[0][0]
    assert rows(second)[0][1] == "b"
    assert rows(await driver.fetch("SELECT id, name FROM things ORDER BY id")) == [
        (first[0][0], "a"),
        (second[0][0], "b"),
    ]


async def test_do_nothing_counts_and_returns_nothing_for_a_duplicate(driver: Driver) -> None:
    sql = "INSERT INTO pairs (a, b, value) VALUES (?, ?, ?) ON CONFLICT (a, b) DO NOTHING"
    async with driver.transaction() as tx:
        assert await tx.execute(sql, "h1", "t", "first") == 1
        assert await tx.execute(sql, "h1", "t", "second") == 0
        assert rows(await tx.fetch(f"{sql} RETURNING value", "h1", "t", "third")) == []
        assert rows(await tx.fetch(f"{sql} RETURNING value", "h2", "t", "new")) == [("new",)]
        await tx.executemany(sql, [("h1", "t", "again"), ("h3", "t", "bulk")])
    assert rows(await driver.fetch("SELECT a, value FROM pairs ORDER BY a")) == [
        ("h1", "first"),
        ("h2", "new"),
        ("h3", "bulk"),
    ]


async def test_an_upsert_updates_in_place_and_returns_the_same_row(driver: Driver) -> None:
    async with driver.transaction() as tx:
        inserted = await tx.fetch(f"{UPSERT} RETURNING id", "a", 1.0, "x", 1)
        assert await tx.execute(UPSERT, "a", 2.0, "y", 2) == 1
        assert await tx.execute(UPSERT, "a", 2.0, "y", 2) == 1  # the same values: still 1
        updated = await tx.fetch(f"{UPSERT} RETURNING id, note", "a", 3.0, "z", 3)
    assert rows(updated) == [(inserted[0][0], "z")]
    assert rows(await driver.fetch("SELECT name, score, note, counter FROM things")) == [
        ("a", 3.0, "z", 3)
    ]


async def test_a_conditional_upsert_keeps_a_newer_row(driver: Driver) -> None:
    sql = f"{UPSERT} WHERE excluded.score >= things.score"
    async with driver.transaction() as tx:
        await tx.execute(sql, "a", 10.0, "ten", 1)
        assert await tx.execute(sql, "a", 5.0, "older", 2) == 0
        await tx.executemany(sql, [("a", 7.0, "older too", 3), ("b", 1.0, "new", 4)])
    assert rows(
        await driver.fetch("SELECT name, score, note, counter FROM things ORDER BY name")
    ) == [
        ("a", 10.0, "ten", 1),
        ("b", 1.0, "new", 4),
    ]
    async with driver.transaction() as tx:
        await tx.executemany(sql, [("a", 11.0, "newer", 5)])
    assert rows(await driver.fetch("SELECT note, counter FROM things WHERE name = ?", "a")) == [
        ("newer", 5)
    ]


async def test_an_upsert_may_take_arguments_after_values(driver: Driver) -> None:
    sql = f"{INSERT} ON CONFLICT (name) DO UPDATE SET counter = things.counter + ?"
    async with driver.transaction() as tx:
        await tx.executemany(sql, [("a", 1.0, "x", 1, 10), ("a", 1.0, "x", 1, 100)])
        await tx.execute(sql, "a", 1.0, "x", 1, 1000)
    assert rows(await driver.fetch("SELECT counter FROM things")) == [(1101,)]


async def test_update_counts_the_rows_it_matched(driver: Driver) -> None:
    async with driver.transaction() as tx:
        await tx.executemany(INSERT, [("a", 1.0, "x", 0), ("b", 1.0, "x", 0), ("c", 2.0, "y", 0)])
        assert await tx.execute("UPDATE things SET note = ? WHERE score = ?", "x", 1.0) == 2
        assert await tx.execute("UPDATE things SET note = note WHERE name = ?", "c") == 1
        assert await tx.execute("UPDATE things SET note = ? WHERE name = ?", "z", "nobody") == 0
        assert await tx.execute("DELETE FROM things WHERE score = ?", 1.0) == 2


async def test_update_and_delete_returning_answer_exactly_the_rows_changed(
    driver: Driver,
) -> None:
    async with driver.transaction() as tx:
        await tx.executemany(INSERT, [(name, 1.0, "x", n) for n, name in enumerate("abcd")])
        # the WHERE reads the column the UPDATE changes: the rows matched before the change
        bumped = await tx.fetch(
            "UPDATE things SET counter = counter + 10 WHERE counter < ? RETURNING name, counter",
            2,
        )
        assert sorted(rows(bumped)) == [("a", 10), ("b", 11)]
        assert (
            rows(await tx.fetch("UPDATE things SET counter = 0 WHERE name = ? RETURNING id", "z"))
            == []
        )
        state = await tx.fetch("UPDATE things SET note = 'all' RETURNING name")
        assert sorted(rows(state)) == [("a",), ("b",), ("c",), ("d",)]
        gone = await tx.fetch("DELETE FROM things WHERE counter >= ? RETURNING name, note", 3)
        assert sorted(rows(gone)) == [("a", "all"), ("b", "all"), ("d", "all")]
        await tx.executemany(
            "INSERT INTO pairs (a, b, value) VALUES (?, ?, ?)", [("h", "t1", "1"), ("h", "t2", "2")]
        )
        pairs = await tx.fetch("DELETE FROM pairs WHERE a = ? RETURNING b", "h")
        assert sorted(rows(pairs)) == [("t1",), ("t2",)]
    assert rows(await driver.fetch("SELECT name FROM things")) == [("c",)]
    assert rows(await driver.fetch("SELECT count(*) FROM pairs")) == [(0,)]


async def test_text_is_compared_exactly_and_kept_whole(driver: Driver) -> None:
    score = 1764072000.123456
    note = "🐬 naïve % ? '' \\ end"
    async with driver.transaction() as tx:
        await tx.executemany(INSERT, [("Host:3306", score, note, 2**40), ("host:3306", 0.5, "", 0)])
    assert rows(
        await driver.fetch("SELECT score, note, counter FROM things WHERE name = ?", "Host:3306")
    ) == [(score, note, 2**40)]
    assert rows(await driver.fetch("SELECT name FROM things WHERE name = 'host:3306'")) == [
        ("host:3306",)
    ]
    # a literal %, a ? inside quotes, || and double-quoted names mean the same everywhere
    found = await driver.fetch(
        """SELECT "name" || '!' FROM things WHERE note LIKE '%naïve%' AND note <> '?' """
        "AND counter > ?",
        0,
    )
    assert rows(found) == [("Host:3306!",)]


async def test_readers_see_committed_data_only(driver: Driver) -> None:
    async with driver.transaction() as tx:
        await tx.execute(INSERT, "a", 1.0, "x", 0)
        assert rows(await driver.fetch("SELECT name FROM things")) == []
        assert rows(await tx.fetch("SELECT name FROM things")) == [("a",)]
    assert rows(await driver.fetch("SELECT name FROM things")) == [("a",)]

    async def insert_then_fail() -> None:
        async with driver.transaction() as tx:
            await tx.execute(INSERT, "b", 1.0, "x", 0)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await insert_then_fail()
    assert rows(await driver.fetch("SELECT name FROM things")) == [("a",)]


async def test_a_text_column_added_later_gets_its_default(driver: Driver) -> None:
    async with driver.transaction() as tx:
        await tx.execute(INSERT, "a", 1.0, "x", 0)
        await tx.execute(
            render("ALTER TABLE things ADD COLUMN owner TEXT NOT NULL DEFAULT ''", driver.dialect)
        )
        await tx.execute(
            render("ALTER TABLE things ADD COLUMN team TEXT NOT NULL DEFAULT 'dba'", driver.dialect)
        )
    assert rows(await driver.fetch("SELECT owner, team FROM things")) == [("", "dba")]


async def test_a_statement_the_database_refuses_is_a_store_error(driver: Driver) -> None:

    async def insert_twice() -> None:
        async with driver.transaction() as tx:
            await tx.execute(INSERT, "a", 1.0, "x", 0)
            await tx.execute(INSERT, "a", 1.0, "x", 0)  # duplicate name

    with pytest.raises(StoreError):
        await insert_twice()
    with pytest.raises(StoreError):
        await driver.fetch("SELECT nosuchcolumn FROM things")
    assert rows(await driver.fetch("SELECT count(*) FROM things")) == [(0,)]
