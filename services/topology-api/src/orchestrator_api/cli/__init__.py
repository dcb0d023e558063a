"""The ``orchestrator`` command line.

:mod:`.main` builds the parser and dispatches; each subcommand lives in its own module with a
``register(subcommands: Subcommands) -> None`` that adds its parser and sets ``handler``
(``argparse.Namespace -> int`` exit code).
"""

from __future__ import annotations

import argparse
from typing import NoReturn, TypeAlias

EXIT_USAGE = 2


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# Typed with the base class so subcommand modules need nothing from here; at run time every
# subparser is a CliParser (argparse makes subparsers of the parent's class).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
