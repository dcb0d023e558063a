"""``orchestrator``: the command line entry point.

``main`` builds one argparse parser; every subcommand lives in its own module, which adds its
parser in a ``register(subcommands)`` function and sets ``handler`` (``Namespace -> int``).
Errors the project raises on purpose (:class:`OrchestratorError`) and bad arguments are one
line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import cast

from orchestrator_cli import CliParser, Subcommands, client, sandbox_command, up
from orchestrator_cli.flags import is_client_invocation
from orchestrator_shared.errors import OrchestratorError

PROG = "orchestrator"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

# A subcommand module's ``register``: adds its parser to the ``orchestrator`` subcommands.
Register = Callable[[Subcommands], None]

SUBCOMMANDS: tuple[Register, ...] = (sandbox_command.register, up.register)


def build_parser() -> CliParser:
    parser = CliParser(prog=PROG, description="Orchestrator: MySQL/MariaDB topology management.")
    subcommands = cast(
        Subcommands,
        parser.add_subparsers(title="commands", dest="command", metavar="COMMAND"),
    )
    subcommands.required = True
    for register in SUBCOMMANDS:
        register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if is_client_invocation(arguments) or arguments[:1] == ["-help"]:
        return client.run_client(arguments)  # orchestrator's style: orchestrator -c <command> ...
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except SystemExit as exit_:  # argparse: --help, usage errors
        if exit_.code is None:
            return 0
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    except OrchestratorError as error:
        message = " ".join(str(error).split())
        sys.stderr.write(f"{PROG}: error: {message}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `orchestrator ... | head`: the reader left, say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
