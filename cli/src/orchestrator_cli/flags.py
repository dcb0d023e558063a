"""``orchestrator -c``'s flags, read the way orchestrator's Go ``flag`` package reads them.

Every flag is a word of its own: ``-name``, ``--name`` (the same flag), ``-name=value`` or
``-name value`` for a flag that takes a value, ``-name`` or ``-name=true|false`` for a switch.
There is no bundling: ``-debug`` is the ``debug`` switch, never ``-d ebug``, and ``-ihost`` is
an unknown flag, not ``-i host``. The single letters of orchestrator-client (``-a``, ``-o``,
``-r``, ``-u``, ``-R``, ``-t``, ``-n``, ``-S``, ``-U``, ``-b``) are flags like any other.

What could be read two ways is refused (:class:`UsageError`, one line), never guessed:

- an unknown flag (with a hint when it looks like a letter glued to its value);
- a flag given twice, and ``-s`` with ``-d`` (orchestrator's synonyms);
- a value that is itself a flag (``-i -d h:p``): write ``-reason=-x`` to pass a value that
  starts with ``-``;
- a flag of orchestrator's that this client does not act on (``-noop`` would be a dry run here
  that changes servers: refused, never ignored);
- a word that is not a flag (orchestrator stops reading flags there; this client refuses it).

Pure: :func:`parse_flags` takes the words and answers :class:`Flags` or raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator_cli import UsageError

__all__ = ["FLAGS", "Flag", "Flags", "is_client_invocation", "parse_flags", "usage"]


@dataclass(frozen=True, slots=True)
class Flag:
    names: tuple[str, ...]  # the first is the name errors use
    dest: str
    help: str
    takes_value: bool = True

    @property
    def name(self) -> str:
        return self.names[0]


FLAGS: tuple[Flag, ...] = (
    Flag(("c", "command"), "command", "the command (required); see the list below"),
    Flag(("i",), "instance", "the instance, host[:port] (default ORCHESTRATOR_INSTANCE)"),
    Flag(("d",), "destination", "the destination or sibling instance, host[:port]"),
    Flag(("s",), "sibling", "the sibling instance (orchestrator's synonym of -d)"),
    Flag(("alias", "a"), "alias", "a cluster alias (commands taking a cluster)"),
    Flag(("owner", "o"), "owner", "owner of a downtime or maintenance (default $USER)"),
    Flag(("reason", "r"), "reason", "reason of a downtime, maintenance or acknowledgement"),
    Flag(("duration", "u"), "duration", "duration of a downtime or maintenance: 30s, 10m, 2h, 1d"),
    Flag(("pattern",), "pattern", "a regular expression (replicas to move; search text)"),
    Flag(("promotion-rule", "R"), "promotion_rule", "prefer, neutral, prefer_not or must_not"),
    Flag(("tag", "t"), "tag", "a tag: name, name=value, ~name; comma-joined for tagged"),
    Flag(("binlog", "n"), "binlog", "a binary log file name (purge-binary-logs)"),
    Flag(("seconds", "S"), "seconds", "seconds (delay-replication)"),
    Flag(("api", "U"), "api", "the API URL (default ORCHESTRATOR_API, or from -config)"),
    Flag(("auth", "b"), "basic", "user:password for HTTP basic authentication"),
    Flag(("config",), "config", "an orchestrator.conf.json: its API address and credentials"),
    Flag(("debug",), "debug", "log each HTTP call (method, URL, status, timing) to stderr", False),
    Flag(("stack",), "stack", "on error, print the whole error chain", False),
    Flag(("ignore-raft-setup",), "ignore_raft_setup", "accepted and ignored", False),
    Flag(("verbose",), "verbose", "accepted; --debug says more", False),
    Flag(("quiet",), "quiet", "accepted (quiet is the default)", False),
    Flag(("version",), "version", "print the version and exit", False),
    Flag(("help", "h"), "help", "print this help and exit", False),
)

_BY_NAME: dict[str, Flag] = {name: flag for flag in FLAGS for name in flag.names}

# orchestrator's (or orchestrator-client's) flags this client does not act on: refused with why
UNSUPPORTED: Mapping[str, str] = {
    "noop": "this client has no dry run: the API would change the servers",
    "strict": "strict mode is not implemented",
    "discovery": "only for orchestrator's http mode",
    "databaseless": "there is no databaseless mode",
    "skip-binlog-search": "there are no Pseudo-GTID matches here",
    "skip-unresolve": "hostname unresolving is not implemented",
    "skip-unresolve-check": "hostname unresolving is not implemented",
    "grab-election": "the recovery workers elect their leader on etcd",
    "skip-continuous-registration": "this client registers nothing",
    "enable-database-update": "this client does not touch the backend database",
    "pool": "pools are not implemented",
    "l": "pools are not implemented",
    "hostname": "no command here takes a hostname",
    "H": "no command here takes a hostname",
    "statement": "no command here takes a statement",
    "query": "restart-replica-statements is not implemented",
    "q": "restart-replica-statements is not implemented",
    "path": "-c api is not implemented",
    "P": "-c api is not implemented",
    "headers-auth": "set ORCHESTRATOR_AUTH_USER_HEADER and ORCHESTRATOR_AUTH_USER instead",
    "e": "set ORCHESTRATOR_AUTH_USER_HEADER and ORCHESTRATOR_AUTH_USER instead",
    "D": "a key without a port gets 3306",
}

_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


@dataclass(frozen=True, slots=True)
class Flags:
    """What the command line gave: the values by ``Flag.dest``, and the switches set."""

    values: Mapping[str, str] = field(default_factory=dict)
    switches: frozenset[str] = frozenset()

    def get(self, dest: str, default: str = "") -> str:
        return self.values.get(dest, default)

    def given(self, dest: str) -> bool:
        return dest in self.values

    def on(self, dest: str) -> bool:
        return dest in self.switches

    @property
    def destination(self) -> str | None:
        """``-d``, or its synonym ``-s`` (None when neither was given)."""
        if "destination" in self.values:
            return self.values["destination"]
        return self.values.get("sibling")


def _split(word: str) -> tuple[str, str, bool, str]:
    """``-name=value`` -> (dashes, name, has a value, value)."""
    dashes = "--" if word.startswith("--") else "-"
    name, equals, value = word[len(dashes) :].partition("=")
    if not name or name.startswith(("-", "=")):
        raise UsageError(f"bad flag syntax: {word}")
    return dashes, name, bool(equals), value


def _unknown(word: str, dashes: str, name: str) -> UsageError:
    if name in UNSUPPORTED:
        return UsageError(f"{dashes}{name} is not supported by this client: {UNSUPPORTED[name]}")
    text = f"unknown flag {word}"
    glued = _BY_NAME.get(name[0])
    if dashes == "-" and glued is not None and glued.takes_value and len(name) > 1:
        text += f"; flags are whole words (-{name[0]} VALUE, not -{name[0]}VALUE)"
    return UsageError(text)


def _switch(name: str, given: bool, value: str) -> bool:
    if not given or value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"invalid boolean value {value!r} for -{name} (true or false)")


def parse_flags(argv: Sequence[str]) -> Flags:
    """The flags of ``argv``; :class:`UsageError` for anything that could be read two ways."""
    values: dict[str, str] = {}
    switches: set[str] = set()
    seen: set[str] = set()
    words = list(argv)
    position = 0
    while position < len(words):
        word = words[position]
        position += 1
        if word == "--" or not word.startswith("-") or word == "-":
            rest = words[position - 1 :] if word != "--" else words[position:]
            raise UsageError(f"unexpected arguments: {' '.join(rest)}")
        dashes, name, has_value, value = _split(word)
        flag = _BY_NAME.get(name)
        if flag is None:
            raise _unknown(word, dashes, name)
        if flag.dest in seen:
            raise UsageError(f"-{flag.name} given twice")
        seen.add(flag.dest)
        if not flag.takes_value:
            if _switch(name, has_value, value):
                switches.add(flag.dest)
            continue
        if not has_value:
            if position >= len(words):
                raise UsageError(f"flag needs an argument: -{name}")
            value = words[position]
            position += 1
            if value.startswith("-") and value != "-":
                raise UsageError(
                    f"-{name} needs a value, got {value!r}; to pass a value that starts with "
                    f"'-', write -{name}=VALUE"
                )
        values[flag.dest] = value
    if "destination" in values and "sibling" in values:
        raise UsageError("-s and -d are synonyms, yet both were specified")
    return Flags(values=values, switches=frozenset(switches))


def is_client_invocation(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is ``orchestrator -c ...`` (the command flag in any of its spellings)
    rather than one of the subcommands (``orchestrator up``, ``orchestrator sandbox``)."""
    for word in argv:
        if word == "--":
            return False
        stripped = word.lstrip("-")
        dashes = len(word) - len(stripped)
        flag = _BY_NAME.get(stripped.partition("=")[0])
        if 1 <= dashes <= 2 and flag is not None and flag.dest == "command":
            return True
    return False


def usage(commands: Sequence[str]) -> str:
    """The help text: the flags, then the commands."""
    lines = ["usage: orchestrator -c <command> [-i host:port] [-d host:port] [flags]", "", "flags:"]
    for flag in FLAGS:
        spelled = ", ".join(f"-{name}" for name in flag.names)
        shown = f"{spelled} VALUE" if flag.takes_value else spelled
        lines.append(f"  {shown:<28} {flag.help}")
    lines += [
        "",
        "Each flag is also --name; values as -name VALUE or -name=VALUE.",
        "",
        "commands:",
    ]
    lines += [f"  {name}" for name in commands]
    return "\n".join(lines)
