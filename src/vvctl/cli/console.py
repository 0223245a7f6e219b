"""rich consoles for people: colour off with NO_COLOR or when the stream is not a terminal.

On a terminal, tables fit its width; what a person copies (hashes, paths, timestamps) is folded onto more
lines, never cut with an ellipsis (:func:`copyable_table`). Piped or redirected output is never wrapped at
all: each line is as long as its content, so ``grep`` and scripts see whole records.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

PIPE_WIDTH = 100_000
"""Console width when the output is not a terminal: wide enough that nothing is wrapped or cut."""


def make_console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    no_color = bool(os.environ.get("NO_COLOR")) or not tty
    return Console(
        file=stream,
        no_color=no_color,
        highlight=False,
        soft_wrap=not tty,
        width=None if tty else PIPE_WIDTH,
    )


def copyable_table(*headers: str, **kwargs: Any) -> Table:
    """A table whose cells are folded, never cut: a hash or path stays whole (on a terminal, over lines)."""
    table = Table(**kwargs)
    for header in headers:
        table.add_column(header, overflow="fold")
    return table
