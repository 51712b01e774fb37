"""`invctl import FILE`: batch upsert of categories, products and stock at central."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from invctl.client import ApiClient
from invctl.context import state_of
from invctl.errors import ExitCode, InvalidRequestError, InvctlError, ServerError, UsageError
from invctl.options import JsonFlag
from invctl.output import Output, rows_table

if TYPE_CHECKING:
    from rich.console import RenderableType

    from invctl.importfile import CheckedFile, ErrorLog, Row, RowError

MAX_CHUNK = 1000


class Format(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


@dataclass
class ImportReport:
    file: str
    format: str
    rows: int
    errors: ErrorLog
    dry_run: bool = False
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0

    @property
    def bad_rows(self) -> int:
        return self.errors.bad_lines

    @property
    def applied(self) -> int:
        return self.created + self.updated + self.unchanged

    def count(self, answer: Any) -> None:
        counts = answer if isinstance(answer, dict) else {}
        self.created += _whole(counts, "created")
        self.updated += _whole(counts, "updated")
        self.unchanged += _whole(counts, "unchanged")

    def to_dict(self) -> dict[str, Any]:
        """The summary; `errors` holds the first errors found (by line), `error_count` all."""
        return {
            "file": self.file,
            "format": self.format,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "bad_rows": self.bad_rows,
            "skipped": self.skipped,
            "error_count": self.errors.count,
            "errors_omitted": self.errors.omitted,
            "errors": [error.to_dict() for error in sorted(self.errors.kept, key=_by_line)],
        }


def _whole(counts: dict[str, Any], key: str) -> int:
    value = counts.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ServerError(f"central's import answer has a {key!r} that is not a whole number")
    return value


def register(root: typer.Typer) -> None:
    root.command("import")(import_file)


def import_file(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="A .csv, .jsonl or .ndjson file.", show_default=False),
    ],
    all_or_nothing: Annotated[
        bool, typer.Option("--all-or-nothing", help="Send nothing if any row is bad.")
    ] = False,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, max=MAX_CHUNK, help="Rows per request.")
    ] = 500,
    file_format: Annotated[
        Format | None,
        typer.Option(
            "--format", help="File format (default: from the extension).", show_default=False
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row and send nothing (no central).")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Import categories, products and stock from CSV or JSON Lines (idempotent upsert).

    Every row is checked first and bad rows are reported by line number (the first 100,
    and how many in all); good rows are sent in chunks, each applied atomically. Files of
    any size are read as a stream. Exits 1 if any row was bad.

    Example: invctl import catalog.csv --all-or-nothing
    """
    state = state_of(ctx, json_out)
    central = None if dry_run else state.central()
    from invctl.importfile import checked_file

    chosen = _format_of(file, file_format)
    with checked_file(file, chosen) as checked:
        report = ImportReport(str(file), chosen, checked.rows, checked.errors, dry_run=dry_run)
        if central is None:
            state.out.note(f"--dry-run: {checked.good_rows} good rows; nothing was sent")
        elif checked.errors.count and all_or_nothing:
            report.skipped = checked.good_rows
            state.out.note("--all-or-nothing: bad rows were found, so nothing was sent")
        else:
            send_rows(central, checked, report, chunk_size, all_or_nothing, state.out)
    state.out.emit(report.to_dict(), render=summary_view)
    if report.bad_rows or report.skipped:
        raise typer.Exit(ExitCode.ERROR)


def _format_of(path: Path, chosen: Format | None) -> str:
    from invctl.importfile import detect_format

    found = chosen.value if chosen else detect_format(path)
    if found is None:
        raise UsageError(
            f"cannot tell the format of {path.name} from its extension",
            code="usage.format",
            hint="name it .csv, .jsonl or .ndjson, or pass --format csv|jsonl",
        )
    return found


def send_rows(
    client: ApiClient,
    checked: CheckedFile,
    report: ImportReport,
    chunk_size: int,
    stop_on_reject: bool,
    out: Output,
) -> None:
    """Send the good rows in chunks; a rejected chunk is reported and, if asked, stops."""
    sent = 0
    with out.progress(checked.good_rows, "Importing") as advance:
        for chunk in checked.chunks(chunk_size):
            accepted = _send_chunk(client, chunk, report, out)
            sent += len(chunk)
            advance(len(chunk))
            if not accepted and stop_on_reject:
                report.skipped += checked.good_rows - sent
                out.note("--all-or-nothing: central rejected a chunk; the rest was not sent")
                return


def _send_chunk(client: ApiClient, chunk: list[Row], report: ImportReport, out: Output) -> bool:
    try:
        answer = client.post("/import", json={"rows": chunk})
    except InvalidRequestError as err:
        if err.code != "import.invalid":
            raise
        errors = _rejected_rows(err, chunk)
        report.errors.add(errors)
        report.skipped += len(chunk) - len({e.line for e in errors} & {r["line"] for r in chunk})
        return False
    except InvctlError:
        if report.applied:
            out.note(
                f"{report.applied} rows were applied before this error; "
                "re-running the import is safe"
            )
        raise
    report.count(answer)
    return True


def _rejected_rows(err: InvalidRequestError, chunk: list[Row]) -> list[RowError]:
    from invctl.importfile import RowError

    listed = err.details.get("errors")
    errors = [
        RowError(int(item["line"]), str(item.get("code", err.code)), str(item.get("message", "")))
        for item in (listed if isinstance(listed, list) else [])
        if isinstance(item, dict) and isinstance(item.get("line"), int)
    ]
    return errors or [RowError(chunk[0]["line"], err.code, err.message)]


def summary_view(data: Any) -> Iterable[RenderableType]:
    from rich.table import Table
    from rich.text import Text

    yield Text(f"Import of {data['file']} ({data['format']})", style="bold underline")
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    for key in ("rows", "created", "updated", "unchanged", "bad_rows", "skipped"):
        style = "red" if key in ("bad_rows", "skipped") and data[key] else ""
        summary.add_row(key.replace("_", " "), Text(str(data[key]), style=style))
    yield summary
    errors = data["errors"]
    if errors:
        yield rows_table(errors, ("line", "code", "message"), title="Bad rows")
    if data["errors_omitted"]:
        more, total = data["errors_omitted"], data["error_count"]
        yield Text(f"... and {more:,} more row errors ({total:,} in all)")
    if errors or data["skipped"]:
        yield Text("Fix the bad rows and run the import again; applied rows stay unchanged.")


def _by_line(error: RowError) -> int:
    return error.line
