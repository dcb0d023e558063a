"""Seeded fuzzed bus messages for tests/integration/test_bus_fuzzing.py: garbage bytes, broken
JSON, and well-formed messages with one value swapped for a hostile one (huge or negative
numbers, wrong types, bad instance keys, unknown enum values) or a field removed or added.

A seeded :class:`random.Random` rather than hypothesis: every run sends the same messages, so
a failure is reproduced by running the test again, and the count stays small enough for a run
under a minute against real servers.
"""

from __future__ import annotations

import json
import random
from typing import Any

HOSTILE: tuple[Any, ...] = (
    None,
    "",
    "::::",
    "not a key!",
    "db:99999999",
    "x" * 5000,
    "\u0000\u202e\udcff",
    -1,
    0,
    2**63,
    2**70,
    -(2**70),
    1e308,
    float("nan"),
    True,
    [],
    {},
    [1, "two", None],
    {"nested": {"deeper": [2**80]}},
    "2026-13-45T99:99:99Z",
    "9999-12-31T23:59:59Z",
    "io.orchestrator.recovery.exploded",
)


class Fuzzer:
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def garbage(self) -> bytes:
        """Bytes that are no message at all: random, empty, broken or non-object JSON."""
        size = self.random.randrange(0, 300)
        return self.random.choice(
            [
                bytes(self.random.randrange(256) for _ in range(size)),
                b"",
                b"{",
                b"null",
                b"[]",
                b'"a string"',
                b"12345678901234567890123456789",
                b'{"schema": 1}',
                b"{" * 5000,  # deep nesting
            ]
        )

    def mutated(self, document: dict[str, Any]) -> bytes:
        """``document`` with one value somewhere replaced by a hostile one, or a key removed or
        added; now and then two mutations."""
        copy = json.loads(json.dumps(document))
        for _ in range(self.random.choice((1, 1, 1, 2))):
            self._mutate(copy)
        return json.dumps(copy, allow_nan=True).encode()

    def _mutate(self, document: dict[str, Any]) -> None:
        container: Any = document
        while True:  # walk down to a random container
            keys = list(container) if isinstance(container, dict) else list(range(len(container)))
            if not keys:
                break
            key = self.random.choice(keys)
            if isinstance(container[key], (dict, list)) and self.random.random() < 0.6:
                container = container[key]
                continue
            action = self.random.random()
            if isinstance(container, dict) and action < 0.15:
                del container[key]
            elif isinstance(container, dict) and action < 0.25:
                container[f"extra{self.random.randrange(100)}"] = self.random.choice(HOSTILE)
            else:
                container[key] = self.random.choice(HOSTILE)
            return

    def message(self, samples: list[dict[str, Any]]) -> bytes:
        """One fuzzed message: mostly a mutated sample, sometimes garbage."""
        if self.random.random() < 0.2:
            return self.garbage()
        return self.mutated(self.random.choice(samples))

    def token(self) -> str:
        """A subject token as messages carry them (instance keys, cluster names)."""
        return self.random.choice(("db1_3306", "127_0_0_1_1", "x", "shop", "_", "a" * 200))
