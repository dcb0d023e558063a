"""GTIDs: MariaDB positions and their relation, MySQL GTID sets and their algebra."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator_shared.errors import InvalidGtid, OrchestratorError
from orchestrator_shared.gtid import (
    GtidInterval,
    GtidRelation,
    GtidSet,
    GtidSource,
    MariaGtid,
    MariaGtidPosition,
)

pytestmark = pytest.mark.unit

UUID_A = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
UUID_B = "8a94f357-aab4-11df-86ab-c80aa9429562"
UUID_C = "00000000-0000-0000-0000-000000000001"

# What MySQL 8.0 and MariaDB 10.11 print, verbatim.
MYSQL_GTID_EXECUTED = (
    "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5,\n8a94f357-aab4-11df-86ab-c80aa9429562:1-3:11:47-49"
)
MARIADB_GTID_BINLOG_POS = "0-101-2347,1-102-5"


def pos(text: str) -> MariaGtidPosition:
    return MariaGtidPosition.parse(text)


def gset(text: str) -> GtidSet:
    return GtidSet.parse(text)


# ======================================================================================= MariaDB


class TestMariaGtid:
    def test_parse_and_str(self) -> None:
        gtid = MariaGtid.parse(" 0-101-2347 ")
        assert gtid == MariaGtid(domain_id=0, server_id=101, seq_no=2347)
        assert str(gtid) == "0-101-2347"

    def test_accepts_the_extremes(self) -> None:
        text = "4294967295-4294967295-18446744073709551615"
        assert str(MariaGtid.parse(text)) == text

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("", "is not domain-server-seq"),
            ("0-1", "is not domain-server-seq"),
            ("0-1-2-3", "is not domain-server-seq"),
            ("0--1-2", "is not domain-server-seq"),
            ("a-1-2", "is not domain-server-seq"),
            ("0-1-+2", "is not domain-server-seq"),
            ("0 - 1 - 2", "is not domain-server-seq"),
            ("4294967296-1-1", "domain_id must be 0..4294967295"),
            ("0-4294967296-1", "server_id must be 0..4294967295"),
            ("0-1-18446744073709551616", "seq_no must be 0..18446744073709551615"),
            ("0-1-" + "9" * 5000, "is out of range"),
        ],
    )
    def test_parse_rejects(self, text: str, problem: str) -> None:
        with pytest.raises(InvalidGtid) as caught:
            MariaGtid.parse(text)
        assert str(caught.value).startswith(f"invalid MariaDB GTID {text!r}: ")
        assert problem in str(caught.value)

    @pytest.mark.parametrize(
        ("fields", "problem"),
        [
            ((-1, 1, 1), "domain_id must be 0..4294967295"),
            ((0, True, 1), "server_id must be an int, not bool"),
            ((0, 1, "5"), "seq_no must be an int, not str"),
        ],
    )
    def test_constructor_rejects(self, fields: tuple[object, object, object], problem: str) -> None:
        with pytest.raises(InvalidGtid, match=problem):
            MariaGtid(*fields)  # type: ignore[arg-type]


class TestMariaGtidPosition:
    def test_parses_what_mariadb_prints(self) -> None:
        position = pos(MARIADB_GTID_BINLOG_POS)
        assert position.domains == {0, 1}
        assert position[0] == MariaGtid(0, 101, 2347)
        assert position.get(1) == MariaGtid(1, 102, 5)
        assert position.get(2) is None
        assert str(position) == MARIADB_GTID_BINLOG_POS

    def test_tolerates_whitespace_and_newlines_around_commas(self) -> None:
        assert pos(" 1-102-5 ,\n 0-101-2347\n") == pos(MARIADB_GTID_BINLOG_POS)

    def test_str_is_normalized_by_domain(self) -> None:
        assert str(pos("10-1-1,2-1-7,0-3-9")) == "0-3-9,2-1-7,10-1-1"
        assert list(pos("10-1-1,2-1-7,0-3-9")) == [0, 2, 10]

    def test_empty(self) -> None:
        for text in ("", "  ", "\n"):
            position = pos(text)
            assert position == MariaGtidPosition()
            assert len(position) == 0
            assert str(position) == ""
            assert not position

    def test_is_a_read_only_mapping(self) -> None:
        position = pos(MARIADB_GTID_BINLOG_POS)
        assert len(position) == 2
        assert 0 in position
        assert 7 not in position
        assert dict(position) == {0: MariaGtid(0, 101, 2347), 1: MariaGtid(1, 102, 5)}
        with pytest.raises(TypeError):
            position[3] = MariaGtid(3, 1, 1)  # type: ignore[index]
        with pytest.raises(AttributeError):
            position.extra = 1  # type: ignore[attr-defined]

    def test_equality_and_hash(self) -> None:
        assert pos("0-1-5,1-2-3") == pos("1-2-3,0-1-5")
        assert hash(pos("0-1-5,1-2-3")) == hash(pos("1-2-3,0-1-5"))
        assert pos("0-1-5") != pos("0-2-5")
        assert pos("0-1-5") != {0: MariaGtid(0, 1, 5)}

    def test_repr(self) -> None:
        assert repr(pos("1-2-3,0-1-5")) == "MariaGtidPosition('0-1-5,1-2-3')"

    def test_seq_no_of_absent_domain_is_zero(self) -> None:
        assert pos("0-1-5").seq_no(0) == 5
        assert pos("0-1-5").seq_no(1) == 0

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("0-1-100,0-2-101", "domain 0 appears twice (0-1-100, 0-2-101)"),
            ("0-1-100,1-1-1,0-1-100", "domain 0 appears twice"),
            ("0-1-100,", "empty GTID between commas"),
            (",0-1-100", "empty GTID between commas"),
            ("0-1-100,,1-1-1", "empty GTID between commas"),
            ("0-1-100;1-1-1", "is not domain-server-seq"),
            ("0-1-100 1-1-1", "is not domain-server-seq"),
            ("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5", "is not domain-server-seq"),
            ("0-1-18446744073709551616", "seq_no must be"),
        ],
    )
    def test_parse_rejects(self, text: str, problem: str) -> None:
        with pytest.raises(InvalidGtid) as caught:
            pos(text)
        assert str(caught.value).startswith(f"invalid MariaDB GTID position {text!r}: ")
        assert problem in str(caught.value)

    def test_constructor_rejects_two_gtids_of_one_domain(self) -> None:
        with pytest.raises(InvalidGtid, match="domain 0 appears twice"):
            MariaGtidPosition([MariaGtid(0, 1, 1), MariaGtid(0, 1, 2)])

    @pytest.mark.parametrize(
        ("left", "right", "relation"),
        [
            ("", "", GtidRelation.EQUAL),
            ("0-1-5,1-2-3", "1-2-3,0-1-5", GtidRelation.EQUAL),
            ("0-1-6", "0-1-5", GtidRelation.AHEAD),
            ("0-1-5", "0-1-6", GtidRelation.BEHIND),
            # After a failover the new primary continues the domain under its own server_id.
            ("0-2-6", "0-1-5", GtidRelation.AHEAD),
            ("0-1-5,1-1-1", "0-1-5", GtidRelation.AHEAD),
            ("0-1-5", "0-1-5,1-1-1", GtidRelation.BEHIND),
            ("0-1-5", "", GtidRelation.AHEAD),
            ("", "0-1-5", GtidRelation.BEHIND),
            ("0-1-6,1-1-1", "0-1-5,1-1-2", GtidRelation.DIVERGED),
            ("0-1-6", "1-1-1", GtidRelation.DIVERGED),
            # Same seq_no from two servers: two different transactions under one number.
            ("0-1-5", "0-2-5", GtidRelation.DIVERGED),
            ("0-1-5,1-1-9", "0-2-5,1-1-1", GtidRelation.DIVERGED),
            # seq_no 0 is "nothing yet", whoever claims it.
            ("0-1-0", "", GtidRelation.EQUAL),
            ("0-1-0", "0-2-0", GtidRelation.EQUAL),
        ],
    )
    def test_compare(self, left: str, right: str, relation: GtidRelation) -> None:
        assert pos(left).compare(pos(right)) is relation

    def test_contains(self) -> None:
        replica, primary = pos("0-101-2340,1-102-5"), pos(MARIADB_GTID_BINLOG_POS)
        assert primary.contains(replica)
        assert primary.contains(primary)
        assert not replica.contains(primary)
        assert not pos("0-1-5").contains(pos("0-2-5"))
        assert not pos("0-1-9").contains(pos("1-1-1"))

    def test_domains_ahead_of(self) -> None:
        left, right = pos("0-1-10,1-1-3,2-1-7"), pos("0-1-9,1-1-4,3-1-1")
        assert left.domains_ahead_of(right) == {0, 2}
        assert right.domains_ahead_of(left) == {1, 3}
        assert left.domains_ahead_of(left) == set()

    def test_merged_with_takes_the_highest_seq_no_per_domain(self) -> None:
        merged = pos("0-1-10,1-1-3").merged_with(pos("0-2-9,1-2-4,5-3-1"))
        assert merged == pos("0-1-10,1-2-4,5-3-1")

    def test_merged_with_keeps_its_own_gtid_on_a_tie(self) -> None:
        assert pos("0-1-5").merged_with(pos("0-2-5")) == pos("0-1-5")
        assert pos("0-2-5").merged_with(pos("0-1-5")) == pos("0-2-5")

    def test_relation_values(self) -> None:
        assert {relation.value for relation in GtidRelation} == {
            "equal",
            "ahead",
            "behind",
            "diverged",
        }


# ========================================================================================= MySQL


class TestGtidSetParsing:
    def test_parses_what_mysql_prints(self) -> None:
        gtids = gset(MYSQL_GTID_EXECUTED)
        assert gtids.sources == ((UUID_A, ""), (UUID_B, ""))
        assert gtids.intervals(UUID_A) == ((1, 5),)
        assert gtids.intervals(UUID_B.upper()) == ((1, 3), (11, 11), (47, 49))
        assert len(gtids) == 5 + 3 + 1 + 3
        assert str(gtids) == f"{UUID_A}:1-5,{UUID_B}:1-3:11:47-49"

    def test_empty(self) -> None:
        for text in ("", " ", "\n", ",", " ,\n, "):
            gtids = gset(text)
            assert gtids.is_empty
            assert not gtids
            assert len(gtids) == 0
            assert str(gtids) == ""
            assert gtids == GtidSet()

    def test_normalizes_order_overlap_and_adjacency(self) -> None:
        text = f"{UUID_B}:7-9:1-3:4:10-12:11, {UUID_A.upper()}:5-5 ,{UUID_B}:20-22:21:5-6"
        assert str(gset(text)) == f"{UUID_A}:5,{UUID_B}:1-12:20-22"

    def test_tolerates_whitespace_between_tokens(self) -> None:
        assert gset(f"  {UUID_A} : 1 - 5 : 7 ,\n\t{UUID_B}:3\n") == gset(
            f"{UUID_A}:1-5:7,{UUID_B}:3"
        )

    def test_tagged_gtids(self) -> None:
        # MySQL 8.4 prints a uuid once: untagged intervals, then each tag with its intervals.
        text = f"{UUID_A}:Domain_2:8-52, {UUID_A}:1-3, {UUID_A.upper()}:domain_1:1-3:15-21"
        gtids = gset(text)
        assert str(gtids) == f"{UUID_A}:1-3:domain_1:1-3:15-21:domain_2:8-52"
        assert gtids.sources == ((UUID_A, ""), (UUID_A, "domain_1"), (UUID_A, "domain_2"))
        assert gtids.intervals(UUID_A, tag="DOMAIN_1") == ((1, 3), (15, 21))
        assert len(gtids) == 3 + 3 + 7 + 45
        assert gset(str(gtids)) == gtids

    def test_tag_and_untagged_are_different_transactions(self) -> None:
        untagged, tagged = gset(f"{UUID_A}:1-5"), gset(f"{UUID_A}:t:1-5")
        assert (untagged & tagged).is_empty
        assert not untagged.contains(tagged)
        assert len(untagged | tagged) == 10

    def test_several_tags_in_one_entry(self) -> None:
        text = f"{UUID_A}:1-4:aaaa:1:abc:1-3:_x:1,{UUID_B}:1-2"
        assert str(gset(text)) == f"{UUID_A}:1-4:_x:1:aaaa:1:abc:1-3,{UUID_B}:1-2"

    def test_accepts_the_largest_transaction_number(self) -> None:
        text = f"{UUID_A}:9223372036854775807"
        assert str(gset(text)) == text

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("garbage", "'garbage' is not a uuid"),
            ("3e11fa47-71ca-11e1-9e33:1-5", "is not a uuid"),
            ("3e11fa4771ca11e19e33c80aa9429562:1", "is not a uuid"),
            ("0-101-2347", "is not a uuid"),
            (UUID_A, "has no transaction numbers after the uuid"),
            (f"{UUID_A}:", "empty field"),
            (f"{UUID_A}:1::3", "empty field"),
            (f"{UUID_A}:1-5,{UUID_B}", "has no transaction numbers after the uuid"),
            (f"{UUID_A}:5-3", "interval 5-3 has start > end"),
            (f"{UUID_A}:0", "transaction number 0 is out of 1..9223372036854775807"),
            (f"{UUID_A}:0-5", "transaction number 0 is out of"),
            (f"{UUID_A}:9223372036854775808", "out of 1..9223372036854775807"),
            (f"{UUID_A}:1-" + "9" * 5000, "is out of range"),
            (f"{UUID_A}:-5", "is neither an interval nor a tag"),
            (f"{UUID_A}:1-", "is neither an interval nor a tag"),
            (f"{UUID_A}:1-2-3", "is neither an interval nor a tag"),
            (f"{UUID_A}:tag", "tag 'tag' of"),
            (f"{UUID_A}:a:b:1", "tag 'a' of"),
            (f"{UUID_A}:1:tag", "has no transaction numbers"),
            (f"{UUID_A}:9tag:1", "is neither an interval nor a tag"),
            (f"{UUID_A}:t-a-g:1", "is neither an interval nor a tag"),
            (f"{UUID_A}:{'t' * 33}:1", "is neither an interval nor a tag"),
            (f"{UUID_A}:\u212aelvin:1", "is neither an interval nor a tag"),
            (f"{UUID_A}:1;{UUID_B}:1", "is neither an interval nor a tag"),
        ],
    )
    def test_parse_rejects(self, text: str, problem: str) -> None:
        with pytest.raises(InvalidGtid) as caught:
            gset(text)
        assert str(caught.value).startswith(f"invalid GTID set {text!r}: ")
        assert problem in str(caught.value)

    def test_errors_belong_to_the_project_tree(self) -> None:
        with pytest.raises(InvalidGtid) as caught:
            gset("nope")
        assert isinstance(caught.value, OrchestratorError)
        assert isinstance(caught.value, ValueError)


class TestGtidSetConstructor:
    def test_builds_and_normalizes(self) -> None:
        intervals: dict[str | GtidSource, list[GtidInterval]] = {
            UUID_B.upper(): [(5, 9), (1, 4)],
            (UUID_A, "T"): [(3, 3)],
        }
        gtids = GtidSet(intervals)
        assert str(gtids) == f"{UUID_A}:t:3,{UUID_B}:1-9"
        assert GtidSet({UUID_A: []}).is_empty

    def test_merges_keys_that_normalize_to_the_same_source(self) -> None:
        intervals: dict[str | GtidSource, list[GtidInterval]] = {
            UUID_A: [(1, 2)],
            UUID_A.upper(): [(3, 4)],
            (UUID_A, ""): [(9, 9)],
        }
        gtids = GtidSet(intervals)
        assert str(gtids) == f"{UUID_A}:1-4:9"

    @pytest.mark.parametrize(
        ("intervals", "problem"),
        [
            ({"nope": [(1, 2)]}, "'nope' is not a uuid"),
            ({(UUID_A, "1x"): [(1, 2)]}, "neither an interval nor a tag"),
            ({UUID_A: [(2, 1)]}, "interval 2-1 has start > end"),
            ({UUID_A: [(0, 1)]}, "transaction number 0 is out of"),
            ({UUID_A: [(1, True)]}, "must hold ints"),
            ({UUID_A: [[1, 2]]}, "is not a (start, end) pair"),
        ],
    )
    def test_rejects(self, intervals: dict[str | GtidSource, object], problem: str) -> None:
        with pytest.raises(InvalidGtid) as caught:
            GtidSet(intervals)  # type: ignore[arg-type]
        assert problem in str(caught.value)

    def test_intervals_of_an_absent_source(self) -> None:
        assert gset(f"{UUID_A}:1").intervals(UUID_B) == ()
        assert gset(f"{UUID_A}:1").intervals(UUID_A, tag="x") == ()
        with pytest.raises(InvalidGtid, match="is not a uuid"):
            gset(f"{UUID_A}:1").intervals("nope")

    def test_equality_hash_and_repr(self) -> None:
        assert gset(f"{UUID_A}:1-3") == gset(f"{UUID_A.upper()}:3:1-2")
        assert hash(gset(f"{UUID_A}:1-3")) == hash(gset(f"{UUID_A}:3:1-2"))
        assert gset(f"{UUID_A}:1-3") != f"{UUID_A}:1-3"
        assert repr(gset(f"{UUID_A}:1-3")) == f"GtidSet('{UUID_A}:1-3')"

    def test_len_of_huge_sets_needs_transaction_count(self) -> None:
        huge = gset(f"{UUID_A}:1-9223372036854775807,{UUID_B}:1-9223372036854775807")
        assert huge.transaction_count == 2 * (2**63 - 1)
        assert huge
        with pytest.raises(OverflowError):
            len(huge)


class TestGtidSetAlgebra:
    executed = gset(f"{UUID_A}:1-10:20-30,{UUID_B}:1-5,{UUID_A}:tag:1-3")
    other = gset(f"{UUID_A}:5-25,{UUID_C}:1")

    def test_union(self) -> None:
        expected = f"{UUID_C}:1,{UUID_A}:1-30:tag:1-3,{UUID_B}:1-5"
        assert self.executed | self.other == gset(expected)
        assert self.executed.union(self.other) == gset(expected)

    def test_subtract(self) -> None:
        expected = gset(f"{UUID_A}:1-4:26-30:tag:1-3,{UUID_B}:1-5")
        assert self.executed - self.other == expected
        assert self.executed.subtract(self.other) == expected
        assert self.other - self.executed == gset(f"{UUID_A}:11-19,{UUID_C}:1")

    def test_subtract_splits_intervals(self) -> None:
        whole = gset(f"{UUID_A}:1-100")
        holes = gset(f"{UUID_A}:1:5-6:50:99-120")
        assert str(whole - holes) == f"{UUID_A}:2-4:7-49:51-98"

    def test_intersection(self) -> None:
        expected = gset(f"{UUID_A}:5-10:20-25")
        assert self.executed & self.other == expected
        assert self.executed.intersection(self.other) == expected

    def test_contains(self) -> None:
        assert self.executed.contains(gset(f"{UUID_A}:2-9:tag:2"))
        assert self.executed.contains(self.executed)
        assert self.executed.contains(GtidSet())
        assert not self.executed.contains(gset(f"{UUID_A}:10-11"))
        assert not self.executed.contains(gset(f"{UUID_A}:tag:4"))
        assert not GtidSet().contains(self.executed)

    def test_errant_transactions_on_a_replica(self) -> None:
        primary = gset(f"{UUID_A}:1-100")
        replica = gset(f"{UUID_A}:1-90,{UUID_B}:1-2")
        assert str(replica - primary) == f"{UUID_B}:1-2"
        assert str(primary - replica) == f"{UUID_A}:91-100"


# ==================================================================================== properties

_uuids = st.sampled_from([UUID_A, UUID_B, UUID_C])
_tags = st.sampled_from(["", "", "alpha", "b_2"])
_sources = st.tuples(_uuids, _tags)
_numbers = st.integers(min_value=1, max_value=40)
_intervals = st.tuples(_numbers, st.integers(min_value=0, max_value=6)).map(
    lambda pair: (pair[0], pair[0] + pair[1])
)
gtid_sets = st.dictionaries(_sources, st.lists(_intervals, max_size=4), max_size=4).map(GtidSet)


def as_python_set(gtids: GtidSet) -> set[tuple[str, str, int]]:
    return {
        (uuid, tag, number)
        for uuid, tag in gtids.sources
        for start, end in gtids.intervals(uuid, tag=tag)
        for number in range(start, end + 1)
    }


@given(gtid_sets)
def test_gtid_set_text_round_trip(a: GtidSet) -> None:
    assert GtidSet.parse(str(a)) == a
    assert str(GtidSet.parse(str(a))) == str(a)
    assert GtidSet.parse(str(a).upper()) == a
    assert GtidSet.parse(str(a).replace(",", ",\n")) == a


@given(gtid_sets)
def test_gtid_set_is_normalized(a: GtidSet) -> None:
    for uuid, tag in a.sources:
        intervals = a.intervals(uuid, tag=tag)
        assert intervals
        for (_, end), (next_start, _) in itertools.pairwise(intervals):
            assert next_start > end + 1
    assert list(a.sources) == sorted(a.sources)


@given(gtid_sets, gtid_sets)
def test_gtid_set_operations_match_python_sets(a: GtidSet, b: GtidSet) -> None:
    assert as_python_set(a | b) == as_python_set(a) | as_python_set(b)
    assert as_python_set(a - b) == as_python_set(a) - as_python_set(b)
    assert as_python_set(a & b) == as_python_set(a) & as_python_set(b)
    assert a.contains(b) == (as_python_set(a) >= as_python_set(b))
    assert len(a) == len(as_python_set(a))
    assert (a == b) == (as_python_set(a) == as_python_set(b))


@given(gtid_sets, gtid_sets, gtid_sets)
def test_union_is_commutative_associative_idempotent(a: GtidSet, b: GtidSet, c: GtidSet) -> None:
    assert a | b == b | a
    assert (a | b) | c == a | (b | c)
    assert a | a == a
    assert a | GtidSet() == a


@given(gtid_sets, gtid_sets)
def test_difference_and_intersection_laws(a: GtidSet, b: GtidSet) -> None:
    assert ((a - b) & b).is_empty
    assert (a - b) | (a & b) == a
    assert a & b == b & a
    assert a - a == GtidSet()
    assert len(a - b) + len(a & b) == len(a)


@given(gtid_sets, gtid_sets)
def test_contains_iff_nothing_missing(a: GtidSet, b: GtidSet) -> None:
    assert a.contains(b) == (b - a).is_empty
    assert (a | b).contains(a)
    assert (a | b).contains(b)
    assert a.contains(a & b)


@given(gtid_sets, gtid_sets)
def test_len_is_additive_over_disjoint_union(a: GtidSet, b: GtidSet) -> None:
    disjoint = b - a
    assert len(a | disjoint) == len(a) + len(disjoint)
    assert len(a | b) == len(a) + len(b) - len(a & b)


# MariaDB positions. A domain's seq_no names a transaction; in one consistent history the
# server_id of that transaction is fixed, which `consistent_positions` models.
_domains = st.integers(min_value=0, max_value=3)
_seq_nos = st.integers(min_value=1, max_value=8)


def _position(entries: dict[int, tuple[int, int]]) -> MariaGtidPosition:
    return MariaGtidPosition(
        MariaGtid(domain, server_id, seq_no) for domain, (server_id, seq_no) in entries.items()
    )


positions = st.dictionaries(
    _domains, st.tuples(st.integers(min_value=1, max_value=3), _seq_nos), max_size=4
).map(_position)
consistent_positions = st.dictionaries(_domains, _seq_nos, max_size=4).map(
    lambda entries: MariaGtidPosition(
        MariaGtid(domain, 100 + (domain * 7 + seq_no) % 3, seq_no)
        for domain, seq_no in entries.items()
    )
)

_CONVERSE = {
    GtidRelation.EQUAL: GtidRelation.EQUAL,
    GtidRelation.AHEAD: GtidRelation.BEHIND,
    GtidRelation.BEHIND: GtidRelation.AHEAD,
    GtidRelation.DIVERGED: GtidRelation.DIVERGED,
}


@given(positions)
def test_position_text_round_trip(a: MariaGtidPosition) -> None:
    assert MariaGtidPosition.parse(str(a)) == a
    assert MariaGtidPosition.parse(str(a).replace(",", " ,\n ")) == a
    assert hash(MariaGtidPosition.parse(str(a))) == hash(a)


@given(positions, positions)
def test_compare_is_antisymmetric(a: MariaGtidPosition, b: MariaGtidPosition) -> None:
    assert b.compare(a) is _CONVERSE[a.compare(b)]


@given(positions, positions)
def test_compare_equal_iff_equal(a: MariaGtidPosition, b: MariaGtidPosition) -> None:
    assert (a.compare(b) is GtidRelation.EQUAL) == (a == b)
    assert a.compare(a) is GtidRelation.EQUAL


@given(positions, positions)
def test_domains_ahead_decide_ahead_and_behind(a: MariaGtidPosition, b: MariaGtidPosition) -> None:
    ahead, behind = a.domains_ahead_of(b), b.domains_ahead_of(a)
    relation = a.compare(b)
    if ahead and behind:
        assert relation is GtidRelation.DIVERGED
    if relation is GtidRelation.AHEAD:
        assert ahead
        assert not behind
    if relation is GtidRelation.BEHIND:
        assert behind
        assert not ahead


@given(consistent_positions, consistent_positions)
def test_merged_with_contains_both(a: MariaGtidPosition, b: MariaGtidPosition) -> None:
    merged = a.merged_with(b)
    assert merged.contains(a)
    assert merged.contains(b)
    assert merged == b.merged_with(a)
    assert merged.domains == a.domains | b.domains
    assert a.merged_with(a) == a


@given(consistent_positions, consistent_positions)
def test_consistent_histories_never_diverge_on_one_domain(
    a: MariaGtidPosition, b: MariaGtidPosition
) -> None:
    relation = a.compare(b)
    assert (relation is GtidRelation.DIVERGED) == bool(
        a.domains_ahead_of(b) and b.domains_ahead_of(a)
    )
    assert a.contains(b) == (not b.domains_ahead_of(a))
