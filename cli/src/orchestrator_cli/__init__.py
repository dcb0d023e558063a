"""The ``orchestrator`` command line.

:mod:`.main` builds the parser and dispatches; each subcommand lives in its own module with a
``register(subcommands: Subcommands) -> None`` that adds its parser and sets ``handler``
(``argparse.Namespace -> int`` exit code). The errors of ``orchestrator -c`` are here too, so
that every module of the client (:mod:`.commands`, :mod:`.compat`, :mod:`.flags`) raises the same
two without importing one another.
"""

from __future__ import annotations

import argparse
from typing import NoReturn, TypeAlias

from orchestrator_shared.errors import OrchestratorError

EXIT_USAGE = 2


class ClientError(OrchestratorError):
    """The API answered with an error, or could not be reached."""


class UsageError(OrchestratorError):
    """The command line is incomplete or wrong."""


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# Typed with the base class so subcommand modules need nothing from here; at run time every
# subparser is a CliParser (argparse makes subparsers of the parent's class).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
