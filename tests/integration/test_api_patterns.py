"""A request's ``?pattern=`` is checked by the API before anything is sent to a worker: a
pattern RE2 refuses, or one too long, is answered 400 (real uvicorn, SQLite store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_api_request_guard import MASTER, api

pytestmark = pytest.mark.integration

BELOW = f"/api/relocate-replicas/{MASTER.replace(':', '/')}/{MASTER.replace(':', '/')}"


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (
            r"(db)\1",
            "expected a regular expression, '(db)\\\\1' is not one: invalid escape sequence: \\1",
        ),
        ("d" * 513, "a pattern of 513 characters is longer than 512"),
    ],
)
async def test_a_bad_pattern_is_a_400(tmp_path: Path, pattern: str, reason: str) -> None:
    async with api(tmp_path) as (_, client):
        for method in ("GET", "POST"):
            answer = await client.request(method, BELOW, params={"pattern": pattern})
            assert answer.status_code == 400, answer.text
            assert answer.json() == {
                "Code": "ERROR",
                "Message": f"bad pattern: {reason}",
                "Details": None,
            }
