"""InstanceKey: parsing, canonical text, ordering and the NATS subject token."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator_shared.errors import InvalidInstanceKey, OrchestratorError
from orchestrator_shared.instance_key import DEFAULT_PORT, InstanceKey

pytestmark = pytest.mark.unit

_FORBIDDEN_IN_TOKEN = re.compile(r"[.*>$\s]")


# ------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("db1", "db1", 3306),
        ("db1:3307", "db1", 3307),
        ("DB1.Example.COM:3306", "db1.example.com", 3306),
        ("  db1:3306\n", "db1", 3306),
        ("127.0.0.1:3306", "127.0.0.1", 3306),
        ("10.0.0.5", "10.0.0.5", 3306),
        ("my_host.x:33060", "my_host.x", 33060),
        ("db-1:1", "db-1", 1),
        ("db1:65535", "db1", 65535),
        ("db1:03306", "db1", 3306),
        ("[::1]:3306", "::1", 3306),
        ("[::1]", "::1", 3306),
        ("::1", "::1", 3306),
        ("[2001:DB8::1]:3307", "2001:db8::1", 3307),
        ("[0:0:0:0:0:0:0:1]:3306", "::1", 3306),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1", 3306),
        ("[2001:db8:0:0:1:0:0:1]:1", "2001:db8::1:0:0:1", 1),
        ("[fe80:0:0:0:0:0:0:0]", "fe80::", 3306),
        # A bare IPv6 address never carries a port: the last group is part of the address.
        ("fe80::1:3306", "fe80::1:3306", 3306),
    ],
)
def test_parse_accepts(text: str, host: str, port: int) -> None:
    assert InstanceKey.parse(text) == InstanceKey(host, port)


def test_parse_default_port_applies_only_without_a_port() -> None:
    assert InstanceKey.parse("db1", default_port=3307) == InstanceKey("db1", 3307)
    assert InstanceKey.parse("[::1]", default_port=3307) == InstanceKey("::1", 3307)
    assert InstanceKey.parse("::1", default_port=3307) == InstanceKey("::1", 3307)
    assert InstanceKey.parse("db1:3306", default_port=3307) == InstanceKey("db1", 3306)
    assert DEFAULT_PORT == 3306


def test_parse_rejects_bad_default_port() -> None:
    with pytest.raises(InvalidInstanceKey, match=r"port must be 1\.\.65535"):
        InstanceKey.parse("db1", default_port=0)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   \t", "empty"),
        (":3306", "empty host"),
        ("db1:", "empty port"),
        ("db1:abc", "port 'abc' is not a number"),
        ("db1:+3306", "port '+3306' is not a number"),
        ("db1:-1", "port '-1' is not a number"),
        ("db1:٣٣٠٦", "is not a number"),
        ("db1:0", "port must be 1..65535"),
        ("db1:70000", "port must be 1..65535"),
        ("db1:99999999999999999999999999", "port must be 1..65535"),
        ("db1:3306:x", "too many ':'"),
        ("a:b:c", "too many ':'"),
        ("db 1:3306", "contains whitespace"),
        ("db1:33 06", "contains whitespace"),
        ("[::1", "unbalanced brackets"),
        ("::1]", "unbalanced brackets"),
        ("[::1]]:3306", "unbalanced brackets"),
        ("[[::1]:3306", "unbalanced brackets"),
        ("db1]", "unbalanced brackets"),
        ("[]:3306", "empty host"),
        ("[::1]:", "empty port"),
        ("[::1]3306", "unexpected '3306' after ']'"),
        ("[db1]:3306", "brackets are only for IPv6 addresses"),
        ("[1::2::3]:3306", "is not an IPv6 address"),
        ("fe80::1%eth0", "zone ids are not supported"),
        ("[fe80::1%eth0]:3306", "zone ids are not supported"),
        ("mysql://db1:3306", "URL scheme"),
        ("tcp://[::1]:3306", "URL scheme"),
        ("db1/x:3306", "host contains '/'"),
        ("user@db1:3306", "host contains '@'"),
        ("dbé:3306", "host contains 'é'"),
        ("\u212aey:3306", "host contains"),  # KELVIN SIGN lowercases to an ASCII 'k'
    ],
)
def test_parse_rejects(text: str, problem: str) -> None:
    with pytest.raises(InvalidInstanceKey) as caught:
        InstanceKey.parse(text)
    message = str(caught.value)
    assert message.startswith(f"invalid instance key {text!r}: ")
    assert problem in message


def test_error_message_quotes_the_input() -> None:
    with pytest.raises(InvalidInstanceKey) as caught:
        InstanceKey.parse("db1:70000")
    assert str(caught.value) == "invalid instance key 'db1:70000': port must be 1..65535"


def test_errors_belong_to_the_project_tree_and_to_value_error() -> None:
    with pytest.raises(InvalidInstanceKey) as caught:
        InstanceKey.parse("db1:x")
    assert isinstance(caught.value, OrchestratorError)
    assert isinstance(caught.value, ValueError)


# -------------------------------------------------------------------------------- constructor


def test_constructor_normalizes_like_parse() -> None:
    assert InstanceKey("DB1", 3306).host == "db1"
    assert InstanceKey("0:0:0:0:0:0:0:1", 3306).host == "::1"
    assert InstanceKey("DB1", 3306) == InstanceKey.parse("db1:3306")


@pytest.mark.parametrize(
    ("host", "port", "problem"),
    [
        ("", 3306, "empty host"),
        ("db1", 0, "port must be 1..65535"),
        ("db1", 65536, "port must be 1..65535"),
        ("db1", True, "port must be an int, not bool"),
        ("db1", "3306", "port must be an int, not str"),
        ("db 1", 3306, "contains whitespace"),
        ("db1:3306", 3306, "is not an IPv6 address"),
        ("[::1]", 3306, "host '[::1]' is not an IPv6 address"),
        ("db[1]", 3306, "host contains '['"),
    ],
)
def test_constructor_rejects(host: object, port: object, problem: str) -> None:
    with pytest.raises(InvalidInstanceKey, match=re.escape(problem)):
        InstanceKey(host, port)  # type: ignore[arg-type]


def test_key_is_immutable_and_hashable() -> None:
    key = InstanceKey("db1", 3306)
    with pytest.raises(AttributeError):
        key.port = 3307  # type: ignore[misc]
    assert {key, InstanceKey.parse("DB1")} == {key}


def test_order_is_by_host_then_port() -> None:
    keys = [InstanceKey("db2", 1), InstanceKey("db1", 3307), InstanceKey("db1", 3306)]
    assert sorted(keys) == [
        InstanceKey("db1", 3306),
        InstanceKey("db1", 3307),
        InstanceKey("db2", 1),
    ]


# ------------------------------------------------------------------------------------ text form


@pytest.mark.parametrize(
    ("key", "text"),
    [
        (InstanceKey("db1", 3306), "db1:3306"),
        (InstanceKey("127.0.0.1", 3307), "127.0.0.1:3307"),
        (InstanceKey("::1", 3306), "[::1]:3306"),
        (InstanceKey("2001:db8::1", 13306), "[2001:db8::1]:13306"),
    ],
)
def test_str(key: InstanceKey, text: str) -> None:
    assert str(key) == text
    assert InstanceKey.parse(text) == key


def test_is_ipv6() -> None:
    assert InstanceKey.parse("[::1]:3306").is_ipv6
    assert not InstanceKey.parse("127.0.0.1:3306").is_ipv6


# -------------------------------------------------------------------------------- subject token


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("127.0.0.1:3306", "127_0_0_1:3306"),
        ("my_host.x:3306", "my~5fhost_x:3306"),
        ("db1:3306", "db1:3306"),
        ("db-1.prod.example.com:3307", "db-1_prod_example_com:3307"),
        ("[::1]:3306", "[::1]:3306"),
        ("[2001:db8::1]:3306", "[2001:db8::1]:3306"),
    ],
)
def test_subject_token(text: str, token: str) -> None:
    key = InstanceKey.parse(text)
    assert key.subject_token == token
    assert InstanceKey.from_subject_token(token) == key


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("", "empty"),
        ("db1.x:3306", "contains '.'"),
        ("db1*:3306", "contains '*' unescaped"),
        ("db1>:3306", "contains '>' unescaped"),
        ("db$1:3306", "contains '$' unescaped"),
        ("db 1:3306", "contains ' ' unescaped"),
        ("dbé:3306", "contains 'é' unescaped"),
        ("db1~", "'~' at offset 3 must be followed by two lowercase hex digits"),
        ("db1~5", "'~' at offset 3"),
        ("db1~zz:3306", "'~' at offset 3"),
        ("my~5Fhost:3306", "'~' at offset 2"),
        ("~ff:3306", "not valid UTF-8"),
        ("db1~2a:3306", "host contains '*'"),
        ("db1:70000", "port must be 1..65535"),
        # Decodable, but not the token the key produces: one key, one subject.
        ("DB1:3306", "not the canonical token of 'db1:3306'"),
        ("db~31:3306", "not the canonical token of 'db1:3306'"),
        ("db1", "not the canonical token of 'db1:3306'"),
        ("::1", "not the canonical token of '[::1]:3306'"),
    ],
)
def test_from_subject_token_rejects(token: str, problem: str) -> None:
    with pytest.raises(InvalidInstanceKey) as caught:
        InstanceKey.from_subject_token(token)
    message = str(caught.value)
    assert message.startswith(f"invalid instance key subject token {token!r}: ")
    assert problem in message


# ------------------------------------------------------------------------------------ properties

_label = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
hostnames = st.lists(_label, min_size=1, max_size=4).map(".".join)
ipv4_hosts = st.ip_addresses(v=4).map(str)
ipv6_hosts = st.ip_addresses(v=6).map(str)
hosts = st.one_of(hostnames, ipv4_hosts, ipv6_hosts)
ports = st.integers(min_value=1, max_value=65535)
keys = st.builds(InstanceKey, hosts, ports)


@given(keys)
def test_text_round_trip(key: InstanceKey) -> None:
    assert InstanceKey.parse(str(key)) == key
    assert InstanceKey.parse(f"  {key}  ") == key


@given(keys)
def test_subject_token_round_trip_and_is_nats_safe(key: InstanceKey) -> None:
    token = key.subject_token
    assert token
    assert not _FORBIDDEN_IN_TOKEN.search(token)
    assert token.isascii()
    assert InstanceKey.from_subject_token(token) == key


@given(keys, keys)
def test_distinct_keys_have_distinct_tokens(first: InstanceKey, second: InstanceKey) -> None:
    assert (first.subject_token == second.subject_token) == (first == second)


@given(hostnames, ports)
def test_parse_lowercases_and_keeps_port(host: str, port: int) -> None:
    key = InstanceKey.parse(f"{host.upper()}:{port}")
    assert key.host == host.lower()
    assert key.port == port


@given(ipv6_hosts, ports)
def test_ipv6_forms_agree(host: str, port: int) -> None:
    exploded = ipaddress.IPv6Address(host).exploded
    bracketed = InstanceKey.parse(f"[{exploded.upper()}]:{port}")
    assert bracketed == InstanceKey.parse(f"[{host}]:{port}")
    assert InstanceKey.parse(exploded) == InstanceKey(host, DEFAULT_PORT)
    assert ipaddress.IPv6Address(bracketed.host) == ipaddress.IPv6Address(host)


@given(st.text(max_size=30))
def test_parse_never_fails_with_anything_but_invalid_instance_key(text: str) -> None:
    try:
        key = InstanceKey.parse(text)
    except InvalidInstanceKey:
        return
    assert InstanceKey.parse(str(key)) == key


@given(st.text(max_size=30))
def test_from_subject_token_never_fails_otherwise(token: str) -> None:
    try:
        key = InstanceKey.from_subject_token(token)
    except InvalidInstanceKey:
        return
    assert key.subject_token == token
