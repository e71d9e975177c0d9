"""Checked argparse types and a parser whose errors are one line: shared by `mnist-train` and the benchmark scripts.

Bad arguments end a command with one line of why on stderr and exit code 2, never a usage dump or a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

EXIT_USAGE = 2


def checked(convert: Callable[[str], float], noun: str, ok: Callable[[float], bool], requirement: str):
    """An argparse `type` that converts, then checks, with one line of why for either failure."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} {requirement}")
        return value

    return parse


positive_int = checked(int, "an integer", lambda v: v >= 1, "must be at least 1")
non_negative_int = checked(int, "an integer", lambda v: v >= 0, "must not be negative")
fraction = checked(float, "a number", lambda v: 0.0 <= v <= 1.0, "must be between 0 and 1")
positive_fraction = checked(float, "a number", lambda v: 0.0 < v <= 1.0, "must be above 0 and at most 1")
positive_float = checked(float, "a number", lambda v: v > 0.0, "must be positive")


def choice_list(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """An argparse `type` for a comma-separated list of `choices` (at least one, repeats allowed)."""

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in text.split(","))
        # An empty text, or an empty item between commas, is an item "" that no choice matches.
        if any(item not in choices for item in items):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a comma-separated list of {', '.join(choices)}")
        return items

    return parse


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments are one line of why on stderr (no usage dump) and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")
