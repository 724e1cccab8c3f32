"""Command-line parsing that reports a mistake in one line, with the closest valid names.

``argparse`` answers a bad choice or an unknown option with a usage block (20 lines for ``train``)
and then the error, and reports an option misspelt after a command from the top-level parser. Here
every such mistake is one line from the parser of the command it belongs to::

    pyrovae train: argument --model: unknown model 'vea'; did you mean 'vae'? (one of: cvae, gmvae, ...)
    pyrovae train: unknown option --epcohs; did you mean --epochs? (pyrovae train --help lists them)

The closest names come from :func:`difflib.get_close_matches` (Ratcliff-Obershelp similarity).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable, Sequence

#: How many close names a message offers, and how similar (0..1, difflib's ratio) they must be.
SUGGESTIONS = 3
SIMILARITY = 0.6


def closest(word: str, names: Iterable[str]) -> list[str]:
    """The names most like ``word``, best first (at most :data:`SUGGESTIONS`, possibly none)."""
    return difflib.get_close_matches(word, list(names), n=SUGGESTIONS, cutoff=SIMILARITY)


def unknown_name(what: str, word: str, names: Sequence[str]) -> str:
    """``unknown <what> '<word>'; did you mean '<close>'? (one of: ...)``: one line."""
    close = closest(word, names)
    guess = f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""
    return f"unknown {what} {word!r}{guess} (one of: {', '.join(names)})"


class Choice:
    """An argument ``type`` that accepts one of ``names`` and rejects anything else with
    :func:`unknown_name`'s line (``argparse``'s own ``choices`` check prints no suggestion)."""

    def __init__(self, what: str, names: Sequence[str]):
        self.what, self.names = what, list(names)
        self.__name__ = what  # argparse names a type by it in its own messages

    def __call__(self, text: str) -> str:
        if text not in self.names:
            raise argparse.ArgumentTypeError(unknown_name(self.what, text, self.names))
        return text

    @property
    def metavar(self) -> str:
        """The names as ``argparse`` shows choices in ``--help``: ``{a,b,c}``."""
        return "{" + ",".join(self.names) + "}"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``<prog>: <message>``, exit status 2.

    ``--help`` still prints the full usage; a mistake points to it instead of printing it.
    """

    commands: argparse._SubParsersAction | None = None

    def error(self, message: str):
        """Exit with status 2 after printing ``<prog>: <message>`` on one line (not the usage)."""
        self.exit(2, f"{self.prog}: {message}\n")

    def add_subparsers(self, **options):
        """``argparse``'s, keeping the subcommands for :meth:`parse_command`."""
        self.commands = super().add_subparsers(**options)
        return self.commands

    def parse_command(self, argv: list[str]) -> argparse.Namespace:
        """``parse_args`` for a parser with subcommands, where a misspelt command or an unknown option
        of a command is reported by that command's parser, with the closest names."""
        choices = self.commands.choices
        given = next((arg for arg in argv if not arg.startswith("-")), None)
        if given is not None and given not in choices:
            self.error(unknown_name("command", given, list(choices)))
        args, extras = self.parse_known_args(argv)
        if extras:
            command = choices[getattr(args, self.commands.dest)]
            command.error(_unexpected(extras, command))
        return args


def _unexpected(extras: list[str], parser: argparse.ArgumentParser) -> str:
    """The first argument ``parser`` did not recognise, with the closest of its options."""
    options = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
    flag = next((arg.split("=", 1)[0] for arg in extras if arg.startswith("-")), None)
    where = f"({parser.prog} --help lists them)"
    if flag is None:
        return f"unexpected argument {extras[0]!r} {where}"
    close = closest(flag, options)
    guess = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"unknown option {flag}{guess} {where}"
