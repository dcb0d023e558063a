"""``orchestrator -c``'s flags as orchestrator's Go ``flag`` package reads them; anything that
could be read two ways is refused, never guessed."""

from __future__ import annotations

import io

import httpx
import pytest

from orchestrator_cli.client import run_client
from orchestrator_cli.commands import UsageError
from orchestrator_cli.flags import FLAGS, UNSUPPORTED, is_client_invocation, parse_flags
from orchestrator_cli.main import main

pytestmark = pytest.mark.unit


def values(*argv: str) -> dict[str, str]:
    return dict(parse_flags(argv).values)


def refused(*argv: str) -> str:
    with pytest.raises(UsageError) as error:
        parse_flags(argv)
    return str(error.value)


@pytest.mark.parametrize(
    "argv",
    [
        ("-c", "topology", "-i", "db1:3306"),
        ("--c", "topology", "--i", "db1:3306"),
        ("-c=topology", "-i=db1:3306"),
        ("--c=topology", "--i=db1:3306"),
        ("-command", "topology", "-i", "db1:3306"),
        ("--command=topology", "-i", "db1:3306"),
    ],
)
def test_every_spelling_of_a_value_flag(argv: tuple[str, ...]) -> None:
    assert values(*argv) == {"command": "topology", "instance": "db1:3306"}


def test_go_style_long_flags_are_whole_words() -> None:
    flags = parse_flags(
        ["-c", "topology", "-debug", "-stack", "-config", "/etc/o.json", "-ignore-raft-setup"]
    )
    assert flags.on("debug")
    assert flags.on("stack")
    assert flags.on("ignore_raft_setup")
    assert flags.get("config") == "/etc/o.json"
    assert "destination" not in flags.values  # -debug is not "-d ebug"
    assert flags.get("command") == "topology"  # -config is not "-c onfig"
    assert parse_flags(["--debug", "--stack", "--config=/x"]).get("config") == "/x"


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (("-alias", "sb"), "alias", "sb"),
        (("--alias", "sb"), "alias", "sb"),
        (("-a", "sb"), "alias", "sb"),
        (("-owner", "ops"), "owner", "ops"),
        (("-o", "ops"), "owner", "ops"),
        (("-reason", "disk swap"), "reason", "disk swap"),
        (("-r", "x"), "reason", "x"),
        (("-duration", "1h"), "duration", "1h"),
        (("-u", "1h"), "duration", "1h"),
        (("-promotion-rule", "must_not"), "promotion_rule", "must_not"),
        (("--promotion-rule=prefer",), "promotion_rule", "prefer"),
        (("-R", "neutral"), "promotion_rule", "neutral"),
        (("-tag", "role=db"), "tag", "role=db"),
        (("-t", "role"), "tag", "role"),
        (("-binlog", "mariadb-bin.000002"), "binlog", "mariadb-bin.000002"),
        (("-n", "b.1"), "binlog", "b.1"),
        (("-pattern", "2230[89]"), "pattern", "2230[89]"),
        (("-seconds", "60"), "seconds", "60"),
        (("-S", "60"), "seconds", "60"),
        (("-api", "http://h:3000"), "api", "http://h:3000"),
        (("-U", "http://h:3000"), "api", "http://h:3000"),
        (("-b", "u:p"), "basic", "u:p"),
        (("-auth", "u:p"), "basic", "u:p"),
        (("-d", "db2"), "destination", "db2"),
        (("-s", "db2"), "sibling", "db2"),
    ],
)
def test_long_and_short_forms(argv: tuple[str, ...], dest: str, value: str) -> None:
    assert values(*argv) == {dest: value}


def test_values_may_hold_equals_signs_and_be_empty() -> None:
    assert values("-tag=role=db") == {"tag": "role=db"}
    assert values("-tag", "a=b,c") == {"tag": "a=b,c"}
    assert values("-reason=") == {"reason": ""}
    assert values("-reason=-x") == {"reason": "-x"}  # a value starting with '-' needs '='


def test_switches_take_gos_booleans() -> None:
    for word in ("-debug", "-debug=true", "-debug=1", "-debug=t", "-debug=TRUE", "--debug=True"):
        assert parse_flags([word]).on("debug"), word
    for word in ("-debug=false", "-debug=0", "-debug=f", "-debug=FALSE"):
        assert not parse_flags([word]).on("debug"), word
    assert "invalid boolean value 'yes' for -debug" in refused("-debug=yes")
    # as in Go, a switch never takes the next word: "false" is a stray argument here
    assert "unexpected arguments: false" in refused("-debug", "false")


def test_s_is_the_sibling_and_a_synonym_of_d() -> None:
    assert parse_flags(["-s", "db2:3306"]).destination == "db2:3306"
    assert parse_flags(["-d", "db3:3306"]).destination == "db3:3306"
    assert parse_flags([]).destination is None
    assert refused("-d", "a", "-s", "b") == "-s and -d are synonyms, yet both were specified"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("-ebug",), "unknown flag -ebug"),
        (("-ihost:3306",), "unknown flag -ihost:3306; flags are whole words (-i VALUE"),
        (("-dfoo",), "unknown flag -dfoo; flags are whole words (-d VALUE"),
        (("-configfile",), "unknown flag -configfile"),
        (("--no-such",), "unknown flag --no-such"),
        (("-Debug",), "unknown flag -Debug"),  # Go's flags are case-sensitive
        (("---c", "x"), "bad flag syntax: ---c"),
        (("-=x",), "bad flag syntax: -=x"),
        (("-i",), "flag needs an argument: -i"),
        (("-c", "topology", "-config"), "flag needs an argument: -config"),
        (("-i", "-d", "h:1"), "-i needs a value, got '-d'"),
        (("-c", "-debug"), "-c needs a value, got '-debug'"),
        (("-reason", "-x"), "write -reason=VALUE"),
        (("-i", "a", "-i", "b"), "-i given twice"),
        (("-c", "a", "-command", "b"), "-c given twice"),
        (("-alias", "a", "-a", "b"), "-alias given twice"),
        (("-debug", "-debug"), "-debug given twice"),
        (("-c", "topology", "extra"), "unexpected arguments: extra"),
        (("-c", "topology", "--", "-i", "x"), "unexpected arguments: -i x"),
        (("-c", "topology", "-", "x"), "unexpected arguments: - x"),
        (("-noop",), "-noop is not supported by this client: this client has no dry run"),
        (("-pool", "p"), "-pool is not supported by this client"),
        (("--strict",), "--strict is not supported by this client"),
    ],
)
def test_anything_ambiguous_is_refused(argv: tuple[str, ...], message: str) -> None:
    assert message in refused(*argv)


def test_the_tables_are_consistent() -> None:
    names = [name for flag in FLAGS for name in flag.names]
    assert len(names) == len(set(names))
    assert not set(names) & set(UNSUPPORTED)
    for name in names:  # every flag parses in its long spelling
        flag = next(f for f in FLAGS if name in f.names)
        argv = [f"--{name}=1"] if flag.takes_value else [f"--{name}"]
        assert parse_flags(argv).given(flag.dest) or parse_flags(argv).on(flag.dest)


@pytest.mark.parametrize(
    ("argv", "client"),
    [
        (["-c", "clusters"], True),
        (["--c=clusters"], True),
        (["-command", "clusters"], True),
        (["--command=clusters"], True),
        (["-debug", "-c", "clusters"], True),
        (["-config", "x.json", "-c", "clusters"], True),
        (["up", "--config", "x.json"], False),
        (["sandbox", "up", "--nodes", "3"], False),
        (["---c", "x"], False),
        (["--", "-c", "x"], False),
        ([], False),
    ],
)
def test_which_invocations_go_to_the_client(argv: list[str], client: bool) -> None:
    assert is_client_invocation(argv) is client


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()

    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no call was to be made: {request.url}")

    code = run_client(argv, out=out, err=err, transport=httpx.MockTransport(never), environ={})
    return code, out.getvalue(), err.getvalue()


def test_the_client_refuses_in_one_line_with_exit_code_2() -> None:
    for argv in (
        ("-c", "topology", "-debug=maybe"),
        ("-c", "relocate", "-ihost:3306", "-d", "h:1"),
        ("-c", "relocate", "-i", "h:1", "-d", "h:2", "-s", "h:3"),
        ("-c", "move-below", "-i", "h:1", "-s", "h:x"),
        ("-i", "h:1"),
        ("-c", "topology", "-noop", "-alias", "sb"),
    ):
        code, out, err = run(*argv)
        assert (code, out) == (2, ""), argv
        assert err.startswith("orchestrator: ")
        assert err.count("\n") == 1, err
    assert "-s: invalid instance key" in run("-c", "move-below", "-i", "h:1", "-s", "h:x")[2]
    assert "orchestrator -c <command>" in run("-i", "h:1")[2]


def test_help_and_version() -> None:
    code, out, err = run("-help")
    assert (code, err) == (0, "")
    assert "-debug" in out
    assert "  move-below" in out
    assert "  dump-config" in out
    assert run("-c", "help")[:2] == (0, out)
    code, version, _ = run("--version")
    assert code == 0
    assert version.strip()


def test_the_entry_point_sends_orchestrators_style_to_the_client(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["-help"]) == 0
    assert "-ignore-raft-setup" in capsys.readouterr().out
    assert main(["-c", "topology", "-config"]) == 2
    assert capsys.readouterr().err == "orchestrator: flag needs an argument: -config\n"
