"""What the CLI prints about API objects: rich tables for people, the API's own JSON for scripts.

Every command that shows objects takes ``-o table|wide|json`` (``--json`` is ``-o json``).
JSON is exactly what the API returned — a list command prints the objects of all pages as
one array — so ``jq`` sees the documented fields. Tables are for reading: a few columns per
noun (more with ``-o wide``), times relative to now, colour only on a terminal, free-text
cells cut with an ellipsis to fit a terminal (never in a pipe), and no trailing blanks, so
``grep`` and ``diff`` work on them. ``Progress`` shows a table that changes while a command
runs: redrawn in place on a terminal, one line per change elsewhere. This is the only module
that uses ``rich``.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self

import click
from rich.cells import cell_len
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

MODES = ("table", "wide", "json")
GAP = 2  # blanks between columns
MIN_SHRUNK = 8  # a cut cell keeps at least this many characters (or its header's width)
UNBOUNDED = 10_000  # a width no table reaches: rich cuts nothing


@dataclasses.dataclass(frozen=True)
class Column:
    """One table column: ``value`` picks it from an API object.

    ``wide`` columns appear only with ``-o wide``; ``shrink`` columns (free text) may be cut
    to fit the terminal; ``when`` marks an ISO time shown relative to now ("5m ago",
    "in 2h"); ``empty`` stands for no value; ``styles`` colours a cell by its text.
    """

    header: str
    value: Callable[[dict], Any]
    wide: bool = False
    shrink: bool = False
    when: bool = False
    empty: str = "-"
    styles: Mapping[str, str] = dataclasses.field(default_factory=dict)


def field(name: str) -> Callable[[dict], Any]:
    return lambda obj: obj.get(name)


def output_options(command: Callable) -> Callable:
    """Add ``-o/--output`` and ``--json``; the command gets one ``output`` argument."""
    @functools.wraps(command)
    def wrapper(*args: Any, as_json: bool, output: str, **kwargs: Any) -> Any:
        return command(*args, output="json" if as_json else output, **kwargs)
    wrapper = click.option("--json", "as_json", is_flag=True,
                           help="Print the API's JSON (same as -o json).")(wrapper)
    return click.option("-o", "--output", type=click.Choice(MODES), default="table",
                        show_default=True, help="table, wide (more columns) or json.")(wrapper)


def emit(objects: Iterable[dict], columns: list[Column], output: str, noun: str) -> None:
    """Print a list: the JSON array of ``objects``, or a table (a note on stderr when empty)."""
    objects = list(objects)
    if output == "json":
        print_json(objects)
    elif not objects:
        click.echo(f"No {noun}.", err=True)
    else:
        click.echo(table_text(objects, columns, wide=output == "wide"))


def emit_one(obj: dict, rows: list[Column], output: str) -> None:
    """Print one object: its JSON, or a two-column "field  value" listing."""
    if output == "json":
        print_json(obj)
    else:
        click.echo(detail_text(obj, rows, wide=output == "wide"))


def print_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def table_text(objects: list[dict], columns: list[Column], wide: bool = False,
               width: int | None = None, now: datetime.datetime | None = None) -> str:
    """The table of ``objects`` as text, fitted to ``width`` (default: the terminal's).

    Only ``shrink`` columns (free text) are cut to fit, widest first; identifying columns
    never are, so a very narrow terminal wraps the lines instead. In a pipe and with
    ``wide`` nothing is cut.
    """
    return render(_filled(objects, columns, wide, width or _terminal_width(), now), UNBOUNDED)


def _filled(objects: list[dict], columns: list[Column], wide: bool, width: int | None,
            now: datetime.datetime | None) -> Table:
    """The rich table of ``objects``, its free-text cells cut to fit ``width`` (if any)."""
    shown = [c for c in columns if wide or not c.wide]
    now = now or _now()
    rows = [[_cell(c, obj, now) for c in shown] for obj in objects]
    limits = _fit(shown, rows, width) if width and not wide else {}
    table = _table([c.header for c in shown], limits)
    for row in rows:
        table.add_row(*row)
    return table


def detail_text(obj: dict, rows: list[Column], wide: bool = False, width: int | None = None,
                now: datetime.datetime | None = None) -> str:
    """One object as "field  value" lines; long values fold at the terminal's edge."""
    table = _table(["", ""], wrap=True)
    now = now or _now()
    for row in rows:
        if wide or not row.wide:
            table.add_row(Text(row.header, style="bold"), _cell(row, obj, now, detail=True))
    return render(table, width or _terminal_width() or UNBOUNDED)


class Progress:
    """A table that changes while something runs, such as a command's jobs and steps.

    On a terminal it is redrawn in place (rich ``Live``) under a title and a status line.
    Elsewhere — a pipe, a CI log, a test — nothing is redrawn: the title and each row are
    printed as one line (``line(row)``) when they first appear or change, so a log keeps
    every change once. Rows are told apart by their ``"key"``. ``quiet`` shows nothing.
    """

    def __init__(self, columns: list[Column], line: Callable[[dict], str],
                 wide: bool = False, quiet: bool = False) -> None:
        self.columns = columns
        self.line = line
        self.wide = wide
        self.quiet = quiet
        self.console = Console(highlight=False)
        self.live: Live | None = None
        self.printed: dict[str, str] = {}

    def __enter__(self) -> Self:
        if self.console.is_terminal and not self.quiet:
            self.live = Live(console=self.console, auto_refresh=False, transient=False)
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def show(self, title: str, rows: list[dict], status: str = "") -> None:
        """Draw the latest state; ``status`` ("running for 12s") appears only on a terminal."""
        if self.quiet:
            return
        if self.live is not None:
            table = _filled(rows, self.columns, self.wide, self.console.width, None)
            status_line = [Text(status, style="dim")] if status else []
            self.live.update(Group(Text(title, style="bold"), table, *status_line), refresh=True)
            return
        for key, text in [("", title)] + [(row["key"], self.line(row)) for row in rows]:
            if self.printed.get(key) != text:
                self.printed[key] = text
                click.echo(text)


def render(renderable: Any, width: int) -> str:
    """Render with rich: colour on a terminal (unless NO_COLOR), plain text elsewhere."""
    live = Console()
    colour = live.is_terminal and not live.no_color and live.color_system is not None
    console = Console(file=io.StringIO(), width=width, force_terminal=colour, no_color=not colour,
                      color_system=live.color_system if colour else None, highlight=False)
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines())


def age(value: str | None, now: datetime.datetime | None = None) -> str:
    """An ISO time relative to ``now``: "45s ago", "in 2h", "-" when unset."""
    if not value:
        return "-"
    try:
        moment = datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return str(value)
    if moment.tzinfo is None:  # the API's times are UTC
        moment = moment.replace(tzinfo=datetime.UTC)
    seconds = ((now or _now()) - moment).total_seconds()
    span = _span(abs(seconds))
    return f"{span} ago" if seconds >= 0 else f"in {span}"


def text(value: Any) -> str:
    """A cell's text: yes/no for booleans, comma-joined lists, "-" for nothing."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list):
        return ", ".join(text(v) for v in value)
    return str(value)


def _span(seconds: float) -> str:
    """Rounded to the nearest unit: a token made to last 10m shows "in 10m", not "in 9m"."""
    for unit, size in (("s", 1), ("m", 60), ("h", 3600)):
        count = round(seconds / size)
        if count < (48 if unit == "h" else 60):
            return f"{count}{unit}"
    return f"{round(seconds / 86400)}d"


def _fit(columns: list[Column], rows: list[list[Text]], width: int) -> dict[int, int]:
    """Column index → width, taken from the widest ``shrink`` columns until the table fits."""
    widths = [max([cell_len(c.header)] + [row[i].cell_len for row in rows])
              for i, c in enumerate(columns)]
    natural = list(widths)
    excess = sum(widths) + GAP * (len(columns) - 1) - width
    while excess > 0:
        cuttable = [i for i, c in enumerate(columns)
                    if c.shrink and widths[i] > max(cell_len(c.header), MIN_SHRUNK)]
        if not cuttable:
            break
        widest = max(cuttable, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return {i: w for i, w in enumerate(widths) if w < natural[i]}


def _table(headers: list[str], limits: Mapping[int, int] | None = None,
           wrap: bool = False) -> Table:
    """A borderless table, columns ``GAP`` apart; ``limits`` cut cells with an ellipsis."""
    table = Table(box=None, pad_edge=False, show_edge=False, show_header=any(headers),
                  header_style="bold", padding=(0, GAP // 2))
    for i, header in enumerate(headers):
        table.add_column(header, no_wrap=not wrap, overflow="fold" if wrap else "ellipsis",
                         max_width=(limits or {}).get(i))
    return table


def _terminal_width() -> int | None:
    live = Console()
    return live.width if live.is_terminal else None


def _cell(column: Column, obj: dict, now: datetime.datetime, detail: bool = False) -> Text:
    """A cell; a time shows as "5m ago", or "2026-01-05T10:00:00 (5m ago)" in ``detail``."""
    value = column.value(obj)
    shown = text(value) if value not in (None, "", []) else column.empty
    if column.when and value:
        shown = f"{value} ({age(value, now)})" if detail else age(value, now)
    return Text(shown, style=column.styles.get(shown, ""))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
