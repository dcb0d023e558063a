"""BinlogCoordinates: parsing, log order across rotations, families and the next file."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator_shared.binlog import FIRST_EVENT_POSITION, BinlogCoordinates
from orchestrator_shared.errors import InvalidBinlogCoordinates, OrchestratorError

pytestmark = pytest.mark.unit


def at(text: str) -> BinlogCoordinates:
    return BinlogCoordinates.parse(text)


class TestParse:
    @pytest.mark.parametrize(
        ("text", "file", "position"),
        [
            ("mysql-bin.000123:456", "mysql-bin.000123", 456),
            ("  mysql-bin.000001:4\n", "mysql-bin.000001", 4),
            ("mariadb-bin.000002:0", "mariadb-bin.000002", 0),
            ("relay-bin.1000000:12345678901", "relay-bin.1000000", 12345678901),
            ("db1-relay-bin.000007:389", "db1-relay-bin.000007", 389),
            ("/var/lib/mysql/binlog.000042:157", "/var/lib/mysql/binlog.000042", 157),
            ("my.log.name.000003:4", "my.log.name.000003", 4),
            ("mysql-bin.000123:0004", "mysql-bin.000123", 4),
        ],
    )
    def test_accepts(self, text: str, file: str, position: int) -> None:
        coordinates = at(text)
        assert coordinates == BinlogCoordinates(file=file, position=position)
        assert coordinates.file == file
        assert coordinates.position == position

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("", "empty"),
            ("   ", "empty"),
            ("mysql-bin.000123", "missing ':position'"),
            (":456", "empty file name"),
            ("mysql-bin.000123:", "empty position"),
            ("mysql-bin.000123:abc", "position 'abc' is not a number"),
            ("mysql-bin.000123:-4", "position '-4' is not a number"),
            ("mysql-bin.000123:+4", "position '+4' is not a number"),
            ("mysql-bin.000123:4.5", "position '4.5' is not a number"),
            ("mysql-bin.000123:٤", "is not a number"),
            ("mysql-bin.000123:18446744073709551616", "position must be 0..18446744073709551615"),
            ("mysql-bin.000123:" + "9" * 5000, "position is out of range"),
            ("mysql-bin:456", "file 'mysql-bin' is not basename.number"),
            ("mysql-bin.:456", "is not basename.number"),
            (".000123:456", "is not basename.number"),
            ("mysql-bin.00012a:456", "is not basename.number"),
            ("mysql bin.000123:456", "is not basename.number"),
            ("mysql-bin.000123:456:7", "file 'mysql-bin.000123:456' is not basename.number"),
        ],
    )
    def test_rejects(self, text: str, problem: str) -> None:
        with pytest.raises(InvalidBinlogCoordinates) as caught:
            at(text)
        assert str(caught.value).startswith(f"invalid binlog coordinates {text!r}: ")
        assert problem in str(caught.value)

    def test_errors_belong_to_the_project_tree(self) -> None:
        with pytest.raises(InvalidBinlogCoordinates) as caught:
            at("nope")
        assert isinstance(caught.value, OrchestratorError)
        assert isinstance(caught.value, ValueError)


class TestConstructor:
    @pytest.mark.parametrize(
        ("file", "position", "problem"),
        [
            ("mysql-bin.000001", -1, "position must be 0.."),
            ("mysql-bin.000001", True, "position must be an int, not bool"),
            ("mysql-bin.000001", "4", "position must be an int, not str"),
            ("mysql-bin", 4, "is not basename.number"),
            (None, 0, "file must be a str, not NoneType"),
        ],
    )
    def test_rejects(self, file: object, position: object, problem: str) -> None:
        with pytest.raises(InvalidBinlogCoordinates, match=problem):
            BinlogCoordinates(file, position)  # type: ignore[arg-type]

    def test_is_immutable_and_hashable(self) -> None:
        coordinates = at("mysql-bin.000001:4")
        with pytest.raises(AttributeError):
            coordinates.position = 5  # type: ignore[misc]
        assert {coordinates, at("mysql-bin.000001:4")} == {coordinates}


class TestEmpty:
    def test_empty_value(self) -> None:
        empty = BinlogCoordinates.EMPTY
        assert empty == BinlogCoordinates("", 0)
        assert empty.is_empty
        assert str(empty) == ""
        assert empty.log_basename == ""
        assert empty.file_number == -1
        assert not at("mysql-bin.000001:4").is_empty

    def test_mariadb_replica_before_connecting(self) -> None:
        # SHOW SLAVE STATUS after CHANGE MASTER ... MASTER_USE_GTID: Master_Log_File '', pos 4.
        unconnected = BinlogCoordinates("", 4)
        assert unconnected.is_empty
        assert str(unconnected) == ""
        assert unconnected < at("mysql-bin.000001:4")

    def test_empty_sorts_first_and_belongs_to_no_family(self) -> None:
        first = at("a.000001:0")
        assert first > BinlogCoordinates.EMPTY
        assert not BinlogCoordinates.EMPTY.same_log_family(BinlogCoordinates.EMPTY)
        assert not BinlogCoordinates.EMPTY.same_log_family(first)
        assert not first.same_log_family(BinlogCoordinates.EMPTY)

    def test_empty_has_no_next_file(self) -> None:
        with pytest.raises(InvalidBinlogCoordinates, match="no next file"):
            BinlogCoordinates.EMPTY.next_file()


class TestOrder:
    def test_by_file_number_then_position(self) -> None:
        assert at("mysql-bin.000123:999") < at("mysql-bin.000124:4")
        assert at("mysql-bin.000124:4") < at("mysql-bin.000124:5")
        assert at("mysql-bin.000124:5") >= at("mysql-bin.000124:5")
        assert at("mysql-bin.000124:5") <= at("mysql-bin.000124:5")
        assert at("mysql-bin.000125:4") > at("mysql-bin.000124:99999")

    def test_numeric_not_textual(self) -> None:
        # The server widens the number past 999999; text order would put it first.
        assert at("mysql-bin.999999:500") < at("mysql-bin.1000000:4")
        assert at("mysql-bin.9:4") < at("mysql-bin.000010:4")

    def test_sorting(self) -> None:
        texts = [
            "mysql-bin.1000000:4",
            "mysql-bin.999999:900",
            "mysql-bin.000002:4",
            "mysql-bin.999999:4",
        ]
        assert [str(c) for c in sorted(at(t) for t in texts)] == [
            "mysql-bin.000002:4",
            "mysql-bin.999999:4",
            "mysql-bin.999999:900",
            "mysql-bin.1000000:4",
        ]

    def test_same_number_with_different_padding_is_a_total_order(self) -> None:
        short, padded = at("mysql-bin.7:4"), at("mysql-bin.000007:4")
        assert short != padded
        assert (short < padded) != (padded < short)

    def test_families(self) -> None:
        binlog, relay = at("mysql-bin.000005:4"), at("relay-bin.000001:4")
        assert binlog.log_basename == "mysql-bin"
        assert binlog.file_number == 5
        assert binlog.same_log_family(at("mysql-bin.000900:77"))
        assert not binlog.same_log_family(relay)
        assert not relay.same_log_family(binlog)
        # Different families still sort (by base name) so collections of them can be sorted.
        assert binlog < relay

    def test_comparing_with_other_types_is_a_type_error(self) -> None:
        with pytest.raises(TypeError):
            _ = at("mysql-bin.000001:4") < "mysql-bin.000002:4"  # type: ignore[operator]
        assert at("mysql-bin.000001:4") != "mysql-bin.000001:4"  # type: ignore[comparison-overlap]


class TestNextFile:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("mysql-bin.000123:456", "mysql-bin.000124:4"),
            ("mysql-bin.000009:4", "mysql-bin.000010:4"),
            ("mysql-bin.999999:4", "mysql-bin.1000000:4"),
            ("relay-bin.7:1", "relay-bin.8:4"),
            ("a.b.009:4", "a.b.010:4"),
        ],
    )
    def test_next_file(self, text: str, expected: str) -> None:
        assert str(at(text).next_file()) == expected

    def test_next_file_starts_at_the_first_event(self) -> None:
        following = at("mysql-bin.000123:456").next_file()
        assert following.position == FIRST_EVENT_POSITION == 4
        assert following > at("mysql-bin.000123:456")
        assert following.same_log_family(at("mysql-bin.000123:456"))


_basenames = st.from_regex(r"[a-z][a-z0-9_-]{0,10}(\.[a-z0-9]{1,4})?", fullmatch=True)
_file_numbers = st.integers(min_value=0, max_value=10**7)
_widths = st.integers(min_value=1, max_value=8)
_positions = st.integers(min_value=0, max_value=2**64 - 1)


@st.composite
def coordinates(draw: st.DrawFn) -> BinlogCoordinates:
    number = draw(_file_numbers)
    file = f"{draw(_basenames)}.{number:0{draw(_widths)}d}"
    return BinlogCoordinates(file, draw(_positions))


@given(coordinates())
def test_text_round_trip(c: BinlogCoordinates) -> None:
    assert BinlogCoordinates.parse(str(c)) == c
    assert BinlogCoordinates.parse(f" {c}\n") == c


@given(coordinates())
def test_next_file_is_later_in_the_same_family(c: BinlogCoordinates) -> None:
    following = c.next_file()
    assert following > c
    assert following.same_log_family(c)
    assert following.file_number == c.file_number + 1
    assert len(following.file) >= len(c.file)


@given(coordinates(), coordinates())
def test_order_is_total_and_follows_the_log(a: BinlogCoordinates, b: BinlogCoordinates) -> None:
    assert (a < b) + (a == b) + (a > b) == 1
    assert (a <= b) == (a < b or a == b)
    if a.same_log_family(b) and a.file_number != b.file_number:
        assert (a < b) == (a.file_number < b.file_number)
    if a.file == b.file:
        assert (a < b) == (a.position < b.position)
