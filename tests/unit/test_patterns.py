"""User-supplied patterns run through RE2 (orchestrator_shared.patterns) everywhere they are
matched: linear time, a length limit, clear errors for what RE2 does not accept."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator_api.osc import hostname_filters_match
from orchestrator_recovery.operations.moves_many_rules import selected
from orchestrator_shared.config import HOSTNAME_FILTER_SETTINGS, Settings
from orchestrator_shared.errors import OperationRefused
from orchestrator_shared.filters import cluster_matches_filters, matching_hostname_filter
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.patterns import (
    MAX_PATTERN_LENGTH,
    InvalidPattern,
    compile_pattern,
    search,
)

pytestmark = pytest.mark.unit

CATASTROPHIC = "(a+)+$"  # Python's re backtracks for minutes on a few dozen a's and a b
VICTIM = "a" * 60 + "b"  # a legal host name label


def settings(**values: Any) -> Settings:
    return Settings.model_validate(values)


def fast(check: Any) -> Any:
    started = time.perf_counter()
    result = check()
    assert time.perf_counter() - started < 0.5
    return result


def test_search_and_groups() -> None:
    assert search(r"\.example\.com$", "db1.example.com")
    assert not search(r"^db2", "db1.example.com")
    assert compile_pattern(r"^db\d+\.([a-z]+)\.").first_group("db1.east.example.com") == "east"
    assert compile_pattern(r"^db").first_group("db1") == ""  # no group
    assert compile_pattern(r"(x)").first_group("db1") == ""  # no match


def test_a_catastrophic_pattern_is_linear() -> None:
    assert not fast(lambda: search(CATASTROPHIC, VICTIM))
    assert not fast(lambda: search(CATASTROPHIC, "a" * 100_000 + "b"))
    assert fast(lambda: search(CATASTROPHIC, "a" * 100_000))


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "invalid escape sequence"),  # a backreference: RE2 has none
        (r"db(?=1)", "invalid perl operator"),  # look-ahead
        ("db(", "missing"),
        ("x" * (MAX_PATTERN_LENGTH + 1), f"longer than {MAX_PATTERN_LENGTH}"),
    ],
)
def test_what_re2_refuses(pattern: str, reason: str) -> None:
    with pytest.raises(InvalidPattern, match=reason):
        compile_pattern(pattern)
    assert isinstance(InvalidPattern("x"), ValueError)


@pytest.mark.parametrize(
    "name",
    [
        *HOSTNAME_FILTER_SETTINGS,
        "RecoverMasterClusterFilters",
        "RecoverIntermediateMasterClusterFilters",
    ],
)
def test_filter_settings_are_checked(name: str) -> None:
    assert getattr(settings(**{name: [CATASTROPHIC]}), name) == (CATASTROPHIC,)
    for bad in (r"(a)\1", "y" * (MAX_PATTERN_LENGTH + 1)):
        with pytest.raises(ValidationError, match=name):
            settings(**{name: [bad]})


def test_cluster_filters() -> None:
    # "*", alias=NAME are not patterns; alias~=REGEX is
    config = settings(RecoverMasterClusterFilters=["*", "alias=x(", "alias~=^ma"])
    assert config.RecoverMasterClusterFilters == ("*", "alias=x(", "alias~=^ma")
    with pytest.raises(ValidationError, match="RecoverMasterClusterFilters"):
        settings(RecoverMasterClusterFilters=["alias~=(a)\\1"])
    assert fast(
        lambda: not cluster_matches_filters([f"alias~={CATASTROPHIC}"], cluster="c", alias=VICTIM)
    )
    assert fast(lambda: not cluster_matches_filters([CATASTROPHIC], cluster=VICTIM))
    assert cluster_matches_filters(["alias~=^ma"], cluster="c", alias="main")


@pytest.mark.parametrize("name", ["DataCenterPattern", "RegionPattern"])
def test_location_patterns_are_checked(name: str) -> None:
    with pytest.raises(ValidationError, match=name):
        settings(**{name: r"(?<=db)x"})


def test_every_matcher_is_linear() -> None:
    key = InstanceKey(VICTIM, 3306)
    assert fast(lambda: matching_hostname_filter([CATASTROPHIC], VICTIM)) is None
    assert fast(lambda: not hostname_filters_match(key, [CATASTROPHIC]))
    assert fast(lambda: selected([key], CATASTROPHIC)) == []
    assert selected([key, InstanceKey("db2", 3306)], "^db") == [InstanceKey("db2", 3306)]
    with pytest.raises(OperationRefused, match="bad pattern"):
        selected([key], r"(a)\1")
