"""How the CLI answers: tables for people (rich), JSON for scripts, notes on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table


class Output:
    def __init__(self, fmt: str = "table", stream: TextIO | None = None) -> None:
        self.format = fmt
        self.stream = stream if stream is not None else sys.stdout
        # highlight=False: rich would colour numbers and quoted words in plain cells. Output
        # that is not a terminal gets tables at their natural width, never wrapped.
        width = None if self.stream.isatty() else 100_000
        self.console = Console(file=self.stream, highlight=False, soft_wrap=False, width=width)
        self.err = Console(file=sys.stderr, highlight=False, soft_wrap=True)

    @property
    def json(self) -> bool:
        return self.format == "json"

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        title: str | None = None,
        right: Sequence[str] = (),
    ) -> None:
        table = Table(
            *[],
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            show_edge=False,
        )
        for column in columns:
            table.add_column(column, justify="right" if column in right else "left")
        for row in rows:
            table.add_row(*("" if cell is None else str(cell) for cell in row))
        # Rendered to text first: rich pads every cell to its column's width, and trailing
        # spaces only get in the way of people copying and of scripts comparing lines.
        with self.console.capture() as captured:
            self.console.print(table)
        text = "\n".join(line.rstrip() for line in captured.get().splitlines())
        self.stream.write(text + "\n")
        self.stream.flush()

    def line(self, text: str = "") -> None:
        self.console.print(text, markup=False)

    def emit_json(self, value: Any) -> None:
        self.stream.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
        self.stream.flush()

    def failures(self, messages: Sequence[str | None]) -> None:
        """One line per failure on stderr, as `strom: <what>: <error>`."""
        for message in messages:
            if message:
                print(f"strom: {message}", file=sys.stderr)

    def note(self, text: str) -> None:
        """A message for the person at the terminal (stderr), never mixed into the data."""
        self.err.print(text, markup=False)
