"""The SQLite/PostgreSQL dialect the store is written in, made to run on MySQL 8 and MariaDB.

Pure text work, no I/O; the MySQL driver (:mod:`.mysql`) runs what comes out. The store's SQL is
written once, with ``?`` placeholders; on MySQL:

* ``?`` becomes PyMySQL's ``%s`` (and a literal ``%`` becomes ``%%``), outside quoted text;
* ``INSERT ... ON CONFLICT (t) DO UPDATE SET c = excluded.c`` becomes ``ON DUPLICATE KEY UPDATE
  c = VALUES(c)``. A ``WHERE`` on the update becomes ``c = IF(cond, VALUES(c), c)`` on every
  assignment, with the one assigned column the condition reads moved last (MySQL assigns left to
  right and later expressions see earlier assignments; a statement whose meaning would change
  that way is refused rather than run differently);
* ``INSERT ... ON CONFLICT [(t)] DO NOTHING`` becomes ``ON DUPLICATE KEY UPDATE k = k``, which
  writes nothing and counts 0 for a duplicate, as PostgreSQL does;
* ``RETURNING`` (MySQL 8 has none, MariaDB none on ``UPDATE``) becomes a plan the driver runs in
  the same transaction: an ``INSERT`` reads the row back by its conflict target, else its new
  ``AUTO_INCREMENT`` id, else its primary key; an ``UPDATE`` / ``DELETE`` first locks the rows
  it will change (``SELECT ... FOR UPDATE``) and then changes exactly those.

Row counts are PostgreSQL's: an ``UPDATE`` counts the rows it matched (MySQL counts the ones whose
value changed), an unconditional upsert one per row. Two differences are left: an upsert with a
``WHERE`` counts 0 for a row whose condition held but whose values were already those (and then
returns no row), and ``ON CONFLICT`` reacts to a duplicate in any unique key of the table, not
only the named one (the store's tables have one unique key each).

Refused, with a :class:`StoreError` naming the construct: ``ON CONFLICT ON CONSTRAINT``, a
partial-index conflict target, ``DO NOTHING`` without a column list, ``RETURNING`` on a
multi-row ``INSERT`` or one of ``INSERT ... SELECT``, and ``RETURNING`` / ``ON CONFLICT`` in any
other statement. Data definition (:func:`table_ddl`): ``TEXT`` becomes ``LONGTEXT`` (a string
default then needs MySQL 8's expression form, ``DEFAULT ('x')``), and each table is InnoDB,
``utf8mb4``, binary collation. ``{key}`` columns (see :mod:`.schema`) are ``VARCHAR(255)``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from orchestrator_api.store.sqltext import mask, placeholders
from orchestrator_shared.errors import StoreError

TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_FLAGS = re.IGNORECASE | re.DOTALL


def refused(sql: str, reason: str) -> StoreError:
    statement = " ".join(sql.split())
    return StoreError(f"MySQL: cannot run {statement[:120]!r}: {reason}")


@dataclass(frozen=True, slots=True)
class Fragment:
    """SQL text with ``?`` placeholders and, for each, the index of the caller's argument."""

    text: str
    params: tuple[int, ...] = ()

    def __add__(self, other: Fragment | str) -> Fragment:
        if isinstance(other, str):
            return Fragment(self.text + other, self.params)
        return Fragment(self.text + other.text, self.params + other.params)

    def __radd__(self, other: str) -> Fragment:
        return Fragment(other + self.text, self.params)

    def sub(self, pattern: re.Pattern[str], replacement: str) -> Fragment:
        """A replacement outside quoted text that moves no placeholder."""
        return Fragment(_sub_unquoted(pattern, replacement, self.text), self.params)

    @property
    def pyformat(self) -> str:
        """The text as PyMySQL expects it: ``%s`` placeholders, ``%`` doubled."""
        return _pyformat(self.text)

    def args(self, args: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(args[index] for index in self.params)


@lru_cache(maxsize=1024)
def _pyformat(text: str) -> str:
    """:attr:`Fragment.pyformat`, rewritten once per text: every run of a statement (and of
    its ``RETURNING`` plan) asks for it, and ``translate`` caches the fragments, not this."""
    masked = mask(text, nested=False)
    return "".join(
        "%s" if masked[index] == "?" else "%%" if char == "%" else char
        for index, char in enumerate(text)
    )


class _Source:
    """A statement being taken apart: slices of it as fragments."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.marks = placeholders(sql)
        self.top = mask(sql, nested=True)

    def part(self, start: int, end: int) -> Fragment:
        params = tuple(i for i, offset in enumerate(self.marks) if start <= offset < end)
        return Fragment(self.sql[start:end].strip(), params)

    def items(self, start: int, end: int) -> list[Fragment]:
        """The comma-separated items between ``start`` and ``end`` (one level of parentheses
        below the top when ``start`` is just inside a top-level one)."""
        inner = mask(self.sql[start:end], nested=True)
        cuts = [start] + [start + i + 1 for i, char in enumerate(inner) if char == ","] + [end + 1]
        return [self.part(cuts[n], cuts[n + 1] - 1) for n in range(len(cuts) - 1)]

    def find(self, pattern: str, start: int = 0, end: int | None = None) -> re.Match[str] | None:
        """``pattern`` at the top level of the statement."""
        return re.compile(pattern, _FLAGS).search(
            self.top, start, len(self.top) if end is None else end
        )


class Count(enum.Enum):
    """How the driver turns MySQL's row count into PostgreSQL's."""

    AFFECTED = "affected"  # as MySQL says (INSERT, DELETE, DO NOTHING: 1 written, 0 duplicate)
    MATCHED = "matched"  # UPDATE: rows matched, from the server's "Rows matched: N" info
    ROWS = "rows"  # unconditional upsert: one per VALUES row
    AT_MOST_ROWS = "at most rows"  # conditional upsert: 0 where the condition kept the row


@dataclass(frozen=True, slots=True)
class InsertReturning:
    """Read the row an ``INSERT`` wrote: by ``target`` (the conflict target), else by the new
    AUTO_INCREMENT id, else by the table's primary key, each found in ``values``."""

    table: str
    columns: str  # as PyMySQL takes it (% doubled)
    values: dict[str, Fragment]
    target: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChangeReturning:
    """Lock the rows ``where`` selects, change exactly those (``assignments`` for an UPDATE,
    none for a DELETE), answer ``columns`` of them."""

    table: str
    columns: str
    where: Fragment | None
    assignments: Fragment | None


@dataclass(frozen=True, slots=True)
class Translated:
    """A statement for MySQL: ``main`` to run (its ``params`` say which of the caller's
    arguments go where), how to count, and what to run for a ``RETURNING``."""

    main: Fragment
    arity: int
    count: Count = Count.AFFECTED
    rows: int = 1
    returning: InsertReturning | ChangeReturning | None = None
    # aiomysql batches executemany() of an INSERT into one multi-row statement, but only when
    # no placeholder follows VALUES (...)
    bulk: bool = True

    @property
    def sql(self) -> str:
        return self.main.pyformat

    def args(self, args: Sequence[Any]) -> tuple[Any, ...]:
        if len(args) != self.arity:
            raise StoreError(
                f"MySQL: the statement takes {self.arity} arguments, {len(args)} were given"
            )
        return self.main.args(args)


_EXCLUDED = re.compile(rf"\bexcluded\s*\.\s*({_IDENT})", re.IGNORECASE)
_VALUES_CALL = re.compile(rf"\bVALUES\s*\(\s*{_IDENT}\s*\)", re.IGNORECASE)
_LITERAL = re.compile(r"'(?:[^']|'')*'")
_ASSIGNMENT = re.compile(rf"\s*({_IDENT})\s*=\s*(.+)", re.DOTALL)


def _reads(expression: str, column: str) -> bool:
    """Whether ``expression`` reads the stored value of ``column`` (``VALUES(c)`` is the new
    value, not the stored one)."""
    text = _VALUES_CALL.sub(" ", _LITERAL.sub(" ", expression))
    return re.search(rf"\b{re.escape(column)}\b", text, re.IGNORECASE) is not None


@lru_cache(maxsize=512)
def translate(sql: str) -> Translated:
    """``sql`` (SQLite/PostgreSQL dialect, ``?`` placeholders) for MySQL; see the module doc."""
    source = _Source(sql)
    arity = len(source.marks)
    head = re.match(r"\s*(INSERT|UPDATE|DELETE)\b", source.top, re.IGNORECASE)
    verb = head.group(1).upper() if head else ""
    if verb == "INSERT":
        return _insert(source, arity)
    if verb in ("UPDATE", "DELETE"):
        return _change(source, arity, verb)
    if source.find(r"\bRETURNING\b") or source.find(r"\bON\s+CONFLICT\b"):
        raise refused(sql, "RETURNING and ON CONFLICT only go with INSERT, UPDATE, DELETE")
    return Translated(Fragment(sql, tuple(range(arity))), arity)


def _returning(source: _Source) -> tuple[int, str | None]:
    """Where the statement proper ends, and the RETURNING list."""
    found = source.find(r"\bRETURNING\b")
    if found is None:
        return len(source.sql), None
    return found.start(), source.sql[found.end() :].strip().rstrip(";").strip()


_INSERT_HEAD = re.compile(
    rf"\s*INSERT\s+INTO\s+(?P<table>{_IDENT})\s*(?P<columns>\(\s*\))?\s*"
    r"(?:VALUES\s*(?P<rows>\(\s*\)(?:\s*,\s*\(\s*\))*)|(?P<select>SELECT|WITH)\b)",
    _FLAGS,
)


def _insert(source: _Source, arity: int) -> Translated:
    sql = source.sql
    body_end, returning = _returning(source)
    head = _INSERT_HEAD.match(source.top, 0, body_end)
    conflict = source.find(r"\bON\s+CONFLICT\b", 0, body_end)
    if head is None:
        if returning is None and conflict is None:
            return Translated(Fragment(sql, tuple(range(arity))), arity)
        raise refused(sql, "expected INSERT INTO table (columns) VALUES (...)")
    table = head.group("table")
    columns: list[str] = []
    if head.group("columns"):
        start, end = head.span("columns")
        columns = [item.text for item in source.items(start + 1, end - 1)]
    rows = 0
    values: dict[str, Fragment] = {}
    if head.group("rows"):
        rows = source.top.count("(", head.start("rows"), head.end("rows"))
        first = source.find(r"\(", head.start("rows"))
        assert first is not None
        closing = source.top.index(")", first.start())
        if columns and rows == 1:
            values = dict(zip(columns, source.items(first.start() + 1, closing), strict=False))
    statement_end = conflict.start() if conflict else body_end
    main = source.part(0, statement_end)
    count = Count.AFFECTED
    target: tuple[str, ...] = ()
    bulk = True
    if conflict is not None:
        clause, count, target = _on_conflict(source, conflict.end(), body_end, columns)
        main = main + " " + clause
        bulk = not clause.params
    plan = None
    if returning is not None:
        if rows != 1:
            raise refused(sql, "RETURNING needs a single-row INSERT ... VALUES")
        if "?" in mask(returning, nested=False):
            raise refused(sql, "RETURNING cannot take arguments")
        plan = InsertReturning(table, returning.replace("%", "%%"), values, target)
    return Translated(main, arity, count, max(rows, 1), plan, bulk)


def _on_conflict(
    source: _Source, start: int, end: int, columns: list[str]
) -> tuple[Fragment, Count, tuple[str, ...]]:
    sql = source.sql
    clause = re.compile(
        r"\s*(?P<target>\(\s*\))?\s*DO\s+(?:(?P<nothing>NOTHING)\b|(?P<update>UPDATE\s+SET)\b)",
        _FLAGS,
    ).match(source.top, start, end)
    if clause is None:
        raise refused(sql, "expected ON CONFLICT (columns) DO NOTHING | DO UPDATE SET ...")
    target: tuple[str, ...] = ()
    if clause.group("target"):
        t_start, t_end = clause.span("target")
        target = tuple(item.text for item in source.items(t_start + 1, t_end - 1))
        if not all(re.fullmatch(_IDENT, name) for name in target):
            raise refused(sql, "a conflict target must be plain column names")
    if clause.group("nothing"):
        anchor = target[0] if target else columns[0] if columns else None
        if anchor is None:
            raise refused(sql, "DO NOTHING needs the inserted columns named")
        return Fragment(f"ON DUPLICATE KEY UPDATE {anchor} = {anchor}"), Count.AFFECTED, target
    where = source.find(r"\bWHERE\b", clause.end(), end)
    sets_end = where.start() if where else end
    assignments = []
    for item in source.items(clause.end(), sets_end):
        parsed = _ASSIGNMENT.fullmatch(item.text)
        if parsed is None:
            raise refused(sql, f"expected column = expression, got {item.text!r}")
        column = parsed.group(1)
        expression = Fragment(parsed.group(2).strip(), item.params).sub(_EXCLUDED, r"VALUES(\1)")
        assignments.append((column, expression))
    if where is None:
        ordered = assignments
        condition = None
    else:
        condition = source.part(where.end(), end).sub(_EXCLUDED, r"VALUES(\1)")
        read = [pair for pair in assignments if _reads(condition.text, pair[0])]
        if len(read) > 1:
            raise refused(sql, "the upsert's WHERE reads more than one of the columns it sets")
        ordered = [pair for pair in assignments if pair not in read] + read
    for index, (column, expression) in enumerate(ordered):
        for earlier, _ in ordered[:index]:
            if _reads(expression.text, earlier):
                raise refused(
                    sql, f"{column} is computed from {earlier}, which MySQL would assign first"
                )
    parts: list[Fragment] = []
    for column, expression in ordered:
        if condition is None:
            parts.append(f"{column} = " + expression)
        else:
            parts.append(f"{column} = IF((" + condition + "), (" + expression + f"), {column})")
    joined = Fragment("ON DUPLICATE KEY UPDATE ")
    for index, part in enumerate(parts):
        joined = joined + (", " if index else "") + part
    return joined, Count.ROWS if condition is None else Count.AT_MOST_ROWS, target


_CHANGE_HEAD = {
    "UPDATE": re.compile(rf"\s*UPDATE\s+(?P<table>{_IDENT})\s+SET\b", _FLAGS),
    "DELETE": re.compile(rf"\s*DELETE\s+FROM\s+(?P<table>{_IDENT})\b", _FLAGS),
}


def _change(source: _Source, arity: int, verb: str) -> Translated:
    sql = source.sql
    if source.find(r"\bON\s+CONFLICT\b"):
        raise refused(sql, "ON CONFLICT only goes with INSERT")
    body_end, returning = _returning(source)
    count = Count.MATCHED if verb == "UPDATE" else Count.AFFECTED
    main = source.part(0, body_end)
    if returning is None:
        return Translated(main, arity, count)
    head = _CHANGE_HEAD[verb].match(source.top, 0, body_end)
    if head is None:
        raise refused(sql, f"RETURNING needs a plain {verb} of one table")
    if "?" in mask(returning, nested=False):
        raise refused(sql, "RETURNING cannot take arguments")
    where = source.find(r"\bWHERE\b", head.end(), body_end)
    condition = source.part(where.end(), body_end) if where else None
    assignments = None
    if verb == "UPDATE":
        assignments = source.part(head.end(), where.start() if where else body_end)
    columns = returning.replace("%", "%%")
    plan = ChangeReturning(head.group("table"), columns, condition, assignments)
    return Translated(main, arity, count, 1, plan)


# --- data definition --------------------------------------------------------------------------

_TEXT = re.compile(r"\bTEXT\b", re.IGNORECASE)
_TEXT_DEFAULT = re.compile(
    r"(\bLONGTEXT\b[^,()']*?\bDEFAULT\s+)('(?:[^']|'')*'|-?\d+(?:\.\d+)?)", re.IGNORECASE
)


def _sub_unquoted(pattern: re.Pattern[str], replacement: str, text: str) -> str:
    """``pattern.sub`` on the parts of ``text`` outside quoted text."""
    masked = mask(text, nested=False)
    pieces: list[str] = []
    last = 0
    for found in pattern.finditer(masked):
        pieces += [text[last : found.start()], found.expand(replacement)]
        last = found.end()
    return "".join(pieces) + text[last:]


def table_ddl(statement: str) -> str:
    """A rendered ``CREATE TABLE`` / ``ALTER TABLE`` for MySQL (see the module doc); any
    other statement unchanged."""
    kind = re.match(r"\s*(CREATE|ALTER)\s+TABLE\b", statement, re.IGNORECASE)
    if kind is None:
        return statement
    text = _TEXT_DEFAULT.sub(r"\1(\2)", _sub_unquoted(_TEXT, "LONGTEXT", statement))
    if kind.group(1).upper() == "CREATE":
        text = text.rstrip().rstrip(";").rstrip() + f" {TABLE_OPTIONS}"
    return text


_CONSTRAINT_WORDS = frozenset(
    {"PRIMARY", "UNIQUE", "KEY", "INDEX", "CONSTRAINT", "CHECK", "FOREIGN", "FULLTEXT"}
)


def created_columns(statement: str) -> tuple[str, frozenset[str]] | None:
    """The table a ``CREATE TABLE`` statement creates and its column names (lower case), or
    None for any other statement."""
    source = _Source(statement)
    head = re.match(
        rf"\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<table>{_IDENT})\s*\(",
        source.top,
        re.IGNORECASE,
    )
    if head is None:
        return None
    closing = source.top.index(")", head.end() - 1)
    names = set()
    for item in source.items(head.end(), closing):
        word = item.text.split(None, 1)[0] if item.text else ""
        if word.upper() not in _CONSTRAINT_WORDS:
            names.add(word.strip('`"').lower())
    return head.group("table"), frozenset(names)
