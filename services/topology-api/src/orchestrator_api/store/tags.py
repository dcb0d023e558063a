"""Instance tags (orchestrator's ``database_instance_tags``): free-form ``name=value`` metadata
operators attach to instances; orchestrator never acts on them.

A tag string is ``name`` (value ``""``), ``name=value``, ``name=`` (the empty value, stated), and
in searches ``~name`` / ``~name=value`` (negation; ``!`` is read as ``~``); a comma joins strings
of which every one must match. As in orchestrator, a search only sees instances that have at
least one tag (``~role`` answers the tagged instances without ``role``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator_api.store.driver import Driver, Transaction
from orchestrator_shared.errors import InvalidInstanceKey
from orchestrator_shared.instance_key import InstanceKey

_TAG = re.compile(r"^(~?)([^=]+?)\s*(?:(=)(.*))?$")


class TagError(ValueError):
    """A tag string that cannot be read, or a request tags cannot answer."""


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    value: str = ""
    has_value: bool = False  # the value was stated (``name=`` states the empty value)
    negate: bool = False

    def __str__(self) -> str:
        return f"{self.name}={self.value}"

    @property
    def display(self) -> str:
        """``name`` when the value is empty, else ``name=value`` (``topology-tags``)."""
        return self.name if not self.value else str(self)

    def matches(self, tags: Mapping[str, str]) -> bool:
        """Whether an instance's tags (name -> value) satisfy this term."""
        present = self.name in tags
        if not self.has_value:
            return present != self.negate
        if not present:
            return False  # orchestrator: ``~name=value`` needs ``name`` to be there
        return (tags[self.name] == self.value) != self.negate


def parse_tag(text: str) -> Tag:
    """One tag string (see the module doc); TagError when it has no name."""
    cleaned = text.replace("!", "~").strip()
    match = _TAG.match(cleaned)
    if match is None or not match.group(2).strip() or match.group(2).strip().startswith("~"):
        raise TagError(f"Unable to parse tag: {text}")
    return Tag(
        name=match.group(2).strip(),
        value=match.group(4) or "",
        has_value=match.group(3) is not None,
        negate=bool(match.group(1)),
    )


def parse_tags(text: str) -> list[Tag]:
    """Comma-joined tag strings, every one of which must match."""
    if not text.strip():
        raise TagError("no tag given")
    return [parse_tag(part) for part in text.split(",")]


def tagged(
    tags_of: Mapping[InstanceKey, Mapping[str, str]], terms: Iterable[Tag]
) -> list[InstanceKey]:
    """The instances whose tags match every term, by host then port."""
    wanted = list(terms)
    found = [key for key, tags in tags_of.items() if all(t.matches(tags) for t in wanted)]
    return sorted(found, key=lambda key: (key.host, key.port))


def untag_scope(key: InstanceKey | None, tag: Tag) -> None:
    """orchestrator's rules for removing tags; TagError when the request breaks one."""
    if tag.negate:
        raise TagError("untag does not support negation")
    if key is None and not tag.has_value:
        raise TagError(
            "either indicate an instance or a tag value: a tag is not removed from every "
            "instance by its name alone"
        )


class TagStore:
    """The tag methods of :class:`~orchestrator_api.store.sql.SqlStore` (tags are not part of
    the fleet view: changing them does not move the store's generation)."""

    _driver: Driver

    if TYPE_CHECKING:  # provided by the store class that mixes this in

        def _writing(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def put_tag(self, key: InstanceKey, tag: Tag) -> None:
        """Add the tag, or replace its value."""
        async with self._writing() as tx:
            await tx.execute(
                "INSERT INTO instance_tags (instance_key, tag_name, tag_value, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (instance_key, tag_name) DO UPDATE SET "
                "tag_value = excluded.tag_value, updated_at = excluded.updated_at",
                str(key),
                tag.name,
                tag.value,
                time.time(),
            )

    async def instance_tags(self, key: InstanceKey) -> list[Tag]:
        """The tags of an instance, by name."""
        found = await self._driver.fetch(
            "SELECT tag_name, tag_value FROM instance_tags WHERE instance_key = ? "
            "ORDER BY tag_name",
            str(key),
        )
        return [Tag(str(name), str(value), has_value=True) for name, value in found]

    async def tags_by_instance(self) -> dict[InstanceKey, dict[str, str]]:
        """Every tagged instance and its tags."""
        found: dict[InstanceKey, dict[str, str]] = {}
        for key_text, name, value in await self._driver.fetch(
            "SELECT instance_key, tag_name, tag_value FROM instance_tags"
        ):
            try:
                key = InstanceKey.parse(str(key_text))
            except InvalidInstanceKey:
                continue
            found.setdefault(key, {})[str(name)] = str(value)
        return found

    async def untag(self, key: InstanceKey | None, tag: Tag) -> list[InstanceKey]:
        """Remove the tag (only where it has ``tag.value`` when that was stated) from ``key``,
        or from every instance; the instances it was removed from, by host then port."""
        untag_scope(key, tag)
        clause, args = "tag_name = ?", [tag.name]
        if tag.has_value:
            clause, args = clause + " AND tag_value = ?", [*args, tag.value]
        if key is not None:
            clause, args = clause + " AND instance_key = ?", [*args, str(key)]
        async with self._writing() as tx:
            found = await tx.fetch(f"SELECT instance_key FROM instance_tags WHERE {clause}", *args)
            await tx.execute(f"DELETE FROM instance_tags WHERE {clause}", *args)
        keys = []
        for (key_text,) in found:
            try:
                keys.append(InstanceKey.parse(str(key_text)))
            except InvalidInstanceKey:
                continue
        return sorted(keys, key=lambda k: (k.host, k.port))


async def forget_tags(tx: Transaction, keys: Iterable[str], cluster: str | None = None) -> None:
    """Tags of forgotten instances (and of every stored member of ``cluster``) go with them;
    inside the forget's transaction, before the instances' rows go."""
    await tx.executemany("DELETE FROM instance_tags WHERE instance_key = ?", [(k,) for k in keys])
    if cluster is not None:
        await tx.execute(
            "DELETE FROM instance_tags WHERE instance_key IN "
            "(SELECT instance_key FROM instances WHERE cluster_name = ?)",
            cluster,
        )


__all__ = [
    "Tag",
    "TagError",
    "TagStore",
    "forget_tags",
    "parse_tag",
    "parse_tags",
    "tagged",
    "untag_scope",
]
